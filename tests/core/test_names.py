from engine.core.names import did_you_mean, nearest, unknown_name_message


def test_nearest_finds_a_typo_and_nothing_for_a_stranger() -> None:
    assert nearest("stop_los_hit", ["stop_loss_hit", "take_profit_hit"]) == "stop_loss_hit"
    assert nearest("zzzz", ["stop_loss_hit"]) is None


def test_nearest_finds_a_name_written_in_another_case() -> None:
    """difflib weighs case as any letter: 'active' was close to none of the account's statuses."""
    assert nearest("active", ["ACTIVE", "INACTIVE", "ACTION_REQUIRED"]) == "ACTIVE"
    assert nearest("Active", ["ACTIVE", "INACTIVE"]) == "ACTIVE"


def test_did_you_mean_lists_the_known_names_only_when_asked() -> None:
    assert did_you_mean("armd", ["armed", "idle"]) == " (did you mean 'armed'?)"
    assert did_you_mean("qqq", ["b", "a"]) == ""
    assert did_you_mean("qqq", ["b", "a"], list_when_none=True) == " (known: a, b)"


def test_unknown_name_message_has_one_wording() -> None:
    assert unknown_name_message("guard", "in_trade_windw", ["in_trade_window"]) == (
        "unknown guard 'in_trade_windw' (did you mean 'in_trade_window'?)"
    )

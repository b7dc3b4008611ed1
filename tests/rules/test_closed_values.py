"""A text fact compared with a value it can never take: `account_status == 'ACTVE'` type-checked (two strings) and
passed `--validate`; as the preflight check account_active it blocked every entry for ever, and `!=` always holds
(as a kill condition, a halt at every tick). Facts whose values are a closed set carry it (`facts.Fact.values`)."""

from __future__ import annotations

import pytest

from engine.brokers import alpaca
from engine.brokers.base import ACCOUNT_STATUSES
from engine.rules import bounds
from engine.rules.book import fact_domains, fact_types, fact_values
from engine.rules.errors import ExpressionError
from engine.rules.expressions import check_values, parse
from engine.validate import validate
from tests.conftest import ProjectCopy


def test_the_account_statuses_are_the_ones_the_adapter_reads() -> None:
    """One set: the adapter refuses any other status as a bad answer, so the fact never holds another."""
    assert alpaca.ACCOUNT_STATUSES is ACCOUNT_STATUSES
    assert fact_values("system")["account_status"] == ACCOUNT_STATUSES == fact_values("crypto")["crypto_status"]
    assert fact_values("crypto")["execution_tif"] == frozenset({"gtc", "ioc"})  # a config choice: the schema's enum


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("account_status == 'ACTVE'", "'account_status' is never 'ACTVE', so '==' never holds (did you mean 'ACTIVE'?)"),
        ("'active' != account_status", "'account_status' is never 'active', so '!=' always holds (did you mean 'ACTIVE'?)"),
        ("not trades_crypto or crypto_status == 'ENABLED'", "'crypto_status' is never 'ENABLED'"),
        ("execution_order_type == 'limt'", "'execution_order_type' is never 'limt', so '==' never holds (did you mean 'limit'?)"),
        ("execution_tif == 'day'", "(known: gtc, ioc)"),
    ],
)
def test_a_value_outside_the_set_is_refused_at_the_string(text: str, says: str) -> None:
    node = parse(text, fact_types("crypto"))
    with pytest.raises(ExpressionError) as caught:
        check_values(node, fact_values("crypto"))
    assert says in caught.value.message
    assert caught.value.column == text.index("'"), caught.value.column  # at the string, where the typo is


def test_two_facts_that_share_no_value_are_refused_at_the_comparison() -> None:
    text = "trades_crypto and account_status == execution_tif"
    with pytest.raises(ExpressionError) as caught:
        check_values(parse(text, fact_types("crypto")), fact_values("crypto"))
    assert "'account_status' and 'execution_tif' share no value, so '==' never holds" in caught.value.message
    assert caught.value.column == text.index("==")


@pytest.mark.parametrize(
    "text",
    ["account_status == 'ACTIVE'", "account_status != 'INACTIVE'", "crypto_status == account_status",
     "bot_id == 'anything'", "account_status > 'ACTVE'", "execution_tif == 'ioc'"],
)  # fmt: skip
def test_a_value_the_fact_can_take_or_an_open_text_is_left_alone(text: str) -> None:
    check_values(parse(text, fact_types("crypto")), fact_values("crypto"))


def test_asked_to_be_none_of_its_values_never_holds() -> None:
    """Every status ruled out at once: nothing is left (the set is closed)."""
    text = " and ".join(f"account_status != '{status}'" for status in sorted(ACCOUNT_STATUSES))
    reason = bounds.never_holds(parse(text, fact_types("system")), fact_domains("system"))
    assert reason == "'account_status' is asked to be none of the values it can take"
    one_left = " and ".join(f"account_status != '{status}'" for status in sorted(ACCOUNT_STATUSES - {"ACTIVE"}))
    assert bounds.never_holds(parse(one_left, fact_types("system")), fact_domains("system")) is None


@pytest.mark.parametrize(
    ("file", "old", "new", "path"),
    [
        ("rules/preflight.yaml", "expr: account_status == 'ACTIVE'", "expr: account_status == 'ACTVE'",
         "preflight.account_active.expr"),
        ("rules/kill_conditions.yaml", "expr: anomalies > 0", "expr: \"anomalies > 0 or account_status != 'Active'\"",
         "kill_conditions.anomaly_halt.expr"),
        ("rules/guards.yaml", "expr: broker_ok and account_ok", "expr: broker_ok and account_status == 'ACTVE' and account_ok",
         "guards.system_ready.expr"),
    ],
)  # fmt: skip
def test_validate_refuses_it_in_a_check_a_kill_condition_and_a_guard(
    project: ProjectCopy, file: str, old: str, new: str, path: str
) -> None:
    project.replace(file, old, new)
    (problem,) = validate(project.config, project.machines, project.rules).problems
    assert problem.path == path and "did you mean 'ACTIVE'?" in problem.message, problem
    line = project.line_of(file, new.split("expr: ")[1][:20])
    assert problem.line == line
    written = (project.root / file).read_text(encoding="utf-8").splitlines()[line - 1]
    assert written[problem.col - 1 :].startswith(("'ACTVE'", "'Active'")), (written, problem.col)

"""Cost of one guard evaluation, and of importing the rule book.

Guards are evaluated for every bot on every tick, so their cost multiplies by bots x transitions tried; the
import is paid by every command, `python -m engine --validate` included. Prints, for typical guards of the
shipped rules compiled for the momentum machine, the time of one evaluation called directly (what a compiled
`when:` calls) and through `CompiledRules.guard_holds` (which names a failure), then the import time of
engine.rules.book and engine.rules.expressions, each in a fresh interpreter.

    .venv/bin/python bench/guards.py [--number 200000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.rules.book import compile_rules, fact_types, load_rules  # noqa: E402

# name -> what kind of guard it is, from rules/guards.yaml
GUARDS = {
    "in_trade_window": "a simple fact",
    "under_trade_cap": "a comparison with a config fact",
    "flat": "an and/not of three facts",
    "stop_loss_hit": "arithmetic: a fact against a negated config fact",
    "may_open": "a composition (when: all of four guards)",
}
_QUIET: dict[str, Any] = {"bool": False, "int": 0, "float": 0.0, "str": ""}


def facts() -> dict[str, Any]:
    """Facts under which every part of may_open is evaluated (all hold), so nothing short-circuits early."""
    values = {name: _QUIET[kind] for name, kind in fact_types("momentum").items()}
    values.update(
        in_trade_window=True,
        preflight_ok=True,
        trades_today=1,
        risk_max_trades_per_day=5,
        open_positions=0,
        risk_max_concurrent_positions=1,
        position_pnl_pct=-0.1,
        exits_stop_loss_pct=0.5,
    )
    return values


def per_call(statement: str, names: dict[str, Any], number: int) -> float:
    """Best of seven runs of `statement`, in microseconds per run."""
    return min(timeit.repeat(statement, globals=names, number=number, repeat=7)) / number * 1e6


def import_seconds(module: str) -> float:
    """Import time of `module` in a fresh interpreter (best of five), excluding the interpreter's start-up."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = [
        float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
        for _ in range(5)
    ]
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000, help="evaluations per timing run")
    args = parser.parse_args()
    compiled, problems = compile_rules(load_rules(ROOT / "rules"), "momentum", needed=list(GUARDS))
    if problems:
        raise SystemExit("\n".join(map(str, problems)))
    values = facts()
    print(f"{'guard':<18} {'direct µs':>10} {'guard_holds µs':>15}  kind")
    for name, what in GUARDS.items():
        assert compiled.guards[name](values) is (name != "stop_loss_hit"), name
        direct = per_call("guard(facts)", {"guard": compiled.guards[name], "facts": values}, args.number)
        named = per_call("holds(name, facts)", {"holds": compiled.guard_holds, "name": name, "facts": values}, args.number)
        print(f"{name:<18} {direct:>10.3f} {named:>15.3f}  {what}")
    print()
    for module in ("engine.rules.expressions", "engine.rules.book"):
        print(f"import {module:<26} {import_seconds(module) * 1000:7.1f} ms")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("(PYTHONDONTWRITEBYTECODE is set: the import times include compiling every module from source)")


if __name__ == "__main__":
    main()

"""Print how the netblock walker fares on the RFC 7208 test suite.

    python -m tests.rfc7208.summary            # the table
    python -m tests.rfc7208.summary --failures # also every applicable test that fails
    python -m tests.rfc7208.summary --all      # also every test, with its prediction

Runs the same walks as tests/rfc7208/test_rfc7208_suite.py, without pytest (the repo's
pytest configuration puts plugins/module_utils on the path; this entry point does it
itself). Exits 1 when an applicable test fails or the suite file is missing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from tests.rfc7208 import harness  # noqa: E402  (needs the path above)

LABEL = 28


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failures", action="store_true", help="list the applicable tests that fail")
    parser.add_argument("--all", action="store_true", help="list every test with its prediction")
    args = parser.parse_args(argv)

    try:
        scenarios = harness.load_suite()
    except harness.SuiteMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    not_applicable = harness.load_not_applicable()
    started = time.monotonic()
    outcomes = harness.evaluate(scenarios, not_applicable)
    elapsed = time.monotonic() - started

    applicable = [o for o in outcomes if o.reason is None]
    passed = [o for o in applicable if o.agrees]
    failed = [o for o in applicable if not o.agrees]
    # Passed although the walk met pass terms it cannot resolve (ptr, exists, macros): the
    # walker whitelists nothing for those, and SPF did not pass this client either.
    conservative = [o for o in passed if o.root is not None and o.root.unresolvable]
    per_reason = Counter(o.reason for o in outcomes if o.reason is not None)
    # Listed as not applicable, yet the walker's prediction agrees: worth a second look.
    agree_anyway = [o for o in outcomes if o.reason is not None and o.agrees]

    print(f"RFC 7208 test suite ({_shown(harness.suite_path())}), {len(scenarios)} scenarios")
    _row("tests", len(outcomes))
    _row("applicable", len(applicable))
    _row("  passed", len(passed))
    _row("    with unresolvable terms", len(conservative), "the walker whitelists nothing for ptr/exists/macros")
    _row("  failed", len(failed))
    _row("not applicable (skipped)", len(outcomes) - len(applicable))
    for reason, text in not_applicable.reasons.items():
        _row(f"  {reason}", per_reason[reason], text)
    for reason in sorted(set(per_reason) - set(not_applicable.reasons)):
        _row(f"  {reason}", per_reason[reason], "UNDEFINED reason key")
    if agree_anyway:
        _row("  walker agrees anyway", len(agree_anyway), ", ".join(o.case.id for o in agree_anyway))
    print(f"walk time {elapsed:.1f} s")

    if args.failures or args.all:
        for outcome in failed:
            print()
            print("FAILED " + _detail(outcome))
    if args.all:
        print()
        for outcome in outcomes:
            mark = f"n/a {outcome.reason}" if outcome.reason else ("ok" if outcome.agrees else "FAILED")
            status = outcome.root.status if outcome.root else repr(outcome.error)
            print(f"{mark:<24} {outcome.case.id:<70} expected {'/'.join(outcome.case.results):<18} "
                  f"predicted {outcome.prediction} ({status})")
    return 1 if failed else 0


def _row(label: str, count: int, note: str = "") -> None:
    print(f"{label:<{LABEL}}{count:>5}" + (f"  {note}" if note else ""))


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(harness.REPO_ROOT))
    except ValueError:
        return str(path)


def _detail(outcome: harness.Outcome) -> str:
    if outcome.error is not None:
        return f"{outcome.case.id}: walker raised {outcome.error!r}"
    return harness.describe(outcome.case, outcome.root, outcome.prediction)


if __name__ == "__main__":
    sys.exit(main())

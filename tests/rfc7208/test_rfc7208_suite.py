"""The RFC 7208 test suite against the netblock walker (see harness.py for the mapping).

Every test of the suite is one pytest test, with id ``<scenario>::<test id>``. Tests
listed in not_applicable.yml are skipped with their reason, so the counts stay visible;
``python -m tests.rfc7208.summary`` prints the table.
"""

from __future__ import annotations

import ipaddress

import pytest

from spfwalk.model import PERMERROR, RootResult
from spfwalk.record import SpfSyntaxError, parse_record
from tests.rfc7208 import harness

try:
    SCENARIOS = harness.load_suite()
    MISSING = None
except harness.SuiteMissingError as exc:
    SCENARIOS = []
    MISSING = str(exc)

NOT_APPLICABLE = harness.load_not_applicable()


def _cases():
    if MISSING:
        # One failing test instead of an empty (silently skipped) parametrization.
        return [pytest.param(None, id="rfc7208-suite-missing")]
    return [pytest.param(case, id=case.id) for scenario in SCENARIOS for case in scenario.cases]


@pytest.fixture(scope="session")
def scenario_walks():
    return harness.ScenarioWalks(SCENARIOS)


@pytest.mark.parametrize("case", _cases())
def test_rfc7208(case, scenario_walks):
    if case is None:
        pytest.fail(MISSING)
    reason = NOT_APPLICABLE.tests.get(case.id)
    if reason is not None:
        pytest.skip(f"not applicable to a netblock walker [{reason}]: {NOT_APPLICABLE.reasons.get(reason)}")
    root = scenario_walks.root(case)
    prediction = harness.predict(root, case.host)
    assert prediction in case.accepted, harness.describe(case, root, prediction)


def test_not_applicable_list_is_consistent():
    if MISSING:
        pytest.fail(MISSING)
    known_ids = {case.id for scenario in SCENARIOS for case in scenario.cases}
    unknown_ids = sorted(set(NOT_APPLICABLE.tests) - known_ids)
    assert not unknown_ids, f"not_applicable.yml names tests the suite does not have: {unknown_ids}"
    undefined = sorted({f"{test_id}: {reason}" for test_id, reason in NOT_APPLICABLE.tests.items()
                        if reason not in NOT_APPLICABLE.reasons})
    assert not undefined, f"not_applicable.yml uses undefined reason keys: {undefined}"
    unused = sorted(set(NOT_APPLICABLE.reasons) - set(NOT_APPLICABLE.tests.values()))
    assert not unused, f"not_applicable.yml defines reasons no test uses: {unused}"
    bad_text = sorted(key for key, text in NOT_APPLICABLE.reasons.items()
                      if not isinstance(text, str) or not text.strip() or "\n" in text.strip())
    assert not bad_text, f"reasons need a one-line explanation: {bad_text}"


def test_case_ids_are_unique():
    if MISSING:
        pytest.fail(MISSING)
    ids = [case.id for scenario in SCENARIOS for case in scenario.cases]
    assert len(ids) == len(set(ids))


# -- the harness's own rules, checked on hand-made data ----------------------------------


def test_zone_conversion_follows_the_reference_driver():
    zone = harness.zone_from_zonedata({
        "spf-only.example": [{"SPF": "v=spf1 -all"}],
        "both.example": [{"SPF": "v=spf1 +all"}, {"TXT": "v=spf1 -all"}],
        "no-txt.example": [{"SPF": "v=spf1 -all"}, {"TXT": "NONE"}],
        "split.example": [{"SPF": ["v=spf1 ip4:", "192.0.2.5 -all"]}, {"SPF": []}],
        "gone.example": ["TIMEOUT"],
        "half.example": [{"TXT": "v=spf1 -all"}, "TIMEOUT"],
        "mx.example": [{"MX": [0, "mail.example"]}, {"A": "192.0.2.1"}],
    })
    records, faults = zone["records"], zone["faults"]
    assert records["spf-only.example"] == {"SPF": ["v=spf1 -all"], "TXT": ["v=spf1 -all"]}
    assert records["both.example"] == {"SPF": ["v=spf1 +all"], "TXT": ["v=spf1 -all"]}
    assert records["no-txt.example"] == {"SPF": ["v=spf1 -all"]}
    assert records["split.example"]["TXT"] == [["v=spf1 ip4:", "192.0.2.5 -all"], [""]]
    assert records["mx.example"] == {"MX": [[0, "mail.example"]], "A": ["192.0.2.1"]}
    assert faults["gone.example"] == {"drop": True}
    assert faults["half.example"]["drop"] is True
    assert "TXT" not in faults["half.example"]["types"]
    assert "SPF" in faults["half.example"]["types"]
    assert set(faults) == {"gone.example", "half.example"}


@pytest.mark.parametrize(("mailfrom", "helo", "domain"), [
    ("foo@example.com", "mail.example.net", "example.com"),
    ("@example.net", "mail.example.net", "example.net"),
    ("", "mail.example.net", "mail.example.net"),
    ("foo@", "helo.example.net", "helo.example.net"),
    ("Macro Error@e8.example.com", "x", "e8.example.com"),
])
def test_identity_domain(mailfrom, helo, domain):
    assert harness.identity_domain(mailfrom, helo) == domain


@pytest.mark.parametrize("text", [
    "v=spf1 ip4:192.0.2.5\n -all",  # control character (suite: badip4 hides it behind an include)
    "v=spf1 a:\u00efgarbage.example.net -all",  # non-ASCII (suite: non-ascii-policy)
    "v=spf1 -all exp=%{r}.example.com",  # c, r, t only in explanation text (exp-only-macro-char)
    "v=spf1 a:%{c}.example.com -all",
    "v=spf1 foo=%{t} -all",
])
def test_record_syntax_errors_found_by_the_suite(text):
    # Regressions for the two record.py fixes this suite led to (RFC 7208 3.1/4.6.1, 7.1).
    with pytest.raises(SpfSyntaxError):
        parse_record(text)


def test_prediction_treats_ipv4_mapped_clients_as_ipv4():
    root = RootResult("example.com")
    root.networks = [ipaddress.ip_network("1.2.3.0/24")]
    assert harness.predict(root, "::FFFF:1.2.3.4") == harness.PASS
    assert harness.predict(root, "1.2.4.1") == harness.NOT_PASS
    root.status = PERMERROR
    assert harness.predict(root, "1.2.3.4") == PERMERROR

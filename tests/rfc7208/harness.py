"""Apply the RFC 7208 test suite to the netblock walker.

The suite (openspf.org release 2014.04, shipped in pyspf's sdist as
test/rfc7208-tests.yml) is a multi-document YAML file; each document is a scenario with
``zonedata`` (the DNS it runs against) and ``tests`` (an SPF check each: client ``host``,
``mailfrom``, ``helo`` and the expected ``result``).

A netblock walker does not run check_host() for one client; it lists the networks SPF
would pass for a domain. So a test is applied like this:

* the identity domain is the domain of ``mailfrom``, or ``helo`` when mailfrom is empty
  or has no domain (RFC 7208 2.3, 2.4, 4.3);
* that domain is walked as a root against a lab DNS server serving the scenario's zone;
* the prediction is the root's status when it is temperror, permerror or none, and
  otherwise "pass" when ``host`` lies in one of the root's networks, else "not-pass";
* the expected result maps to the same vocabulary: pass -> pass; fail, softfail and
  neutral -> not-pass (none of them puts the host on a whitelist); none, permerror and
  temperror stay. An expected list (the RFC allows several results) accepts any member.

Shared by test_rfc7208_suite.py (pytest) and summary.py (``python -m tests.rfc7208.summary``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spfwalk.model import NONE, OK, PERMERROR, TEMPERROR, RootResult
from spfwalk.walker import WalkerOptions, walk
from tests.support.dns_lab import start_dns_server

REPO_ROOT = Path(__file__).resolve().parents[2]
SUITE_ENV = "RFC7208_TESTS"
DEFAULT_SUITE_PATH = REPO_ROOT / ".cache" / "rfc7208-tests.yml"
NOT_APPLICABLE_PATH = Path(__file__).with_name("not_applicable.yml")

PASS = "pass"
NOT_PASS = "not-pass"
# RFC 7208 result -> what a netblock walker can predict for the test's client.
PREDICTION_FOR_RESULT = {
    "pass": PASS,
    "fail": NOT_PASS,
    "softfail": NOT_PASS,
    "neutral": NOT_PASS,
    "none": NONE,
    "permerror": PERMERROR,
    "temperror": TEMPERROR,
}

# TIMEOUT names never answer, so every TIMEOUT test costs one query lifetime: keep it short.
QUERY_LIFETIME = 0.5
RETRY_INTERVAL = 0.2
WALK_DEADLINE = 5.0

# The query types a walk may ask. A TIMEOUT entry drops the ones the name lists no data for.
_QUERY_TYPES = ("TXT", "SPF", "A", "AAAA", "MX", "PTR", "CNAME")


class SuiteMissingError(RuntimeError):
    """The suite file is not there: the tests must fail, not skip."""


@dataclass(frozen=True)
class Case:
    id: str  # "<scenario-slug>::<test id>"
    scenario: str  # the scenario's slug
    name: str  # the test id inside the suite
    spec: str
    description: str
    helo: str
    host: str
    mailfrom: str
    results: tuple[str, ...]  # expected RFC 7208 results (any one will do)

    @property
    def domain(self) -> str:
        return identity_domain(self.mailfrom, self.helo)

    @property
    def accepted(self) -> frozenset[str]:
        """The walker predictions that agree with the expected result."""
        return frozenset(PREDICTION_FOR_RESULT[result] for result in self.results)


@dataclass
class Scenario:
    slug: str
    description: str
    zonedata: dict
    cases: list[Case] = field(default_factory=list)

    def zone(self) -> dict:
        return zone_from_zonedata(self.zonedata)

    def domains(self) -> list[str]:
        return sorted({case.domain for case in self.cases})


# -- loading -----------------------------------------------------------------------


def suite_path() -> Path:
    override = os.environ.get(SUITE_ENV)
    return Path(override) if override else DEFAULT_SUITE_PATH


def load_suite(path: Path | None = None) -> list[Scenario]:
    path = path or suite_path()
    if not path.is_file():
        raise SuiteMissingError(
            f"RFC 7208 test suite not found at {path}. Run scripts/setup (it fetches pyspf 2.0.14's "
            f"sdist and copies test/rfc7208-tests.yml to .cache/), or point {SUITE_ENV} at a copy."
        )
    with open(path, "rb") as stream:
        documents = [doc for doc in yaml.safe_load_all(stream) if doc]
    scenarios: list[Scenario] = []
    seen: set[str] = set()
    for document in documents:
        slug = slugify(document["description"])
        if slug in seen:
            raise ValueError(f"{path}: two scenarios are both called {slug!r}")
        seen.add(slug)
        scenario = Scenario(slug, document["description"], document.get("zonedata") or {})
        for name, test in document["tests"].items():
            result = test["result"]
            results = tuple(result) if isinstance(result, list) else (result,)
            unknown = [r for r in results if r not in PREDICTION_FOR_RESULT]
            if unknown:
                raise ValueError(f"{slug}::{name}: unknown result {unknown}")
            scenario.cases.append(Case(
                id=f"{slug}::{name}",
                scenario=slug,
                name=name,
                spec=str(test.get("spec", "")),
                description=" ".join(str(test.get("description") or "").split()),
                helo=str(test.get("helo") or ""),
                host=str(test["host"]),
                mailfrom=str(test.get("mailfrom") or ""),
                results=results,
            ))
        scenarios.append(scenario)
    return scenarios


def slugify(text: str) -> str:
    """'Include mechanism semantics and syntax' -> 'include-mechanism-semantics-and-syntax'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass
class NotApplicable:
    reasons: dict[str, str]  # reason key -> one-line explanation
    tests: dict[str, str]  # test id -> reason key


def load_not_applicable(path: Path = NOT_APPLICABLE_PATH) -> NotApplicable:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return NotApplicable(reasons=dict(data.get("reasons") or {}), tests=dict(data.get("not_applicable") or {}))


# -- applying a test to the walker ---------------------------------------------------


def identity_domain(mailfrom: str, helo: str) -> str:
    """The domain check_host() would be given (RFC 7208 2.3, 2.4 and 4.3).

    An empty local-part ("@example.net") still names a domain; an empty MAIL FROM (a
    bounce) or one without a domain leaves the HELO identity.
    """
    _local, at, domain = mailfrom.rpartition("@")
    if at and domain:
        return domain
    return helo


def client_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The client IP; an IPv4-mapped IPv6 address is an IPv4 client (RFC 7208 5, 9/2)."""
    address = ipaddress.ip_address(host)
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def predict(root: RootResult, host: str) -> str:
    if root.status != OK:
        return root.status
    address = client_address(host)
    covered = any(address in network for network in root.networks if network.version == address.version)
    return PASS if covered else NOT_PASS


def describe(case: Case, root: RootResult | None, prediction: str | None) -> str:
    """A failure message with everything needed to judge the test by hand."""
    lines = [
        f"{case.id} (RFC 7208 {case.spec}): {case.description}",
        f"  identity {case.domain!r} (mailfrom {case.mailfrom!r}, helo {case.helo!r}), client {case.host}",
        f"  expected {list(case.results)} -> accepted predictions {sorted(case.accepted)}",
        f"  walker predicted {prediction!r}",
    ]
    if root is not None:
        lines += [
            f"  status {root.status}; networks {[str(n) for n in root.networks]}",
            f"  errors {root.errors}",
            f"  warnings {root.warnings}",
            f"  unresolvable {root.unresolvable}; dns_lookups {root.dns_lookups}; "
            f"void_lookups {root.void_lookups}",
        ]
    return "\n".join(lines)


# -- the scenario's DNS ----------------------------------------------------------------


def zone_from_zonedata(zonedata: dict) -> dict:
    """The lab server's zone (tests/support/dns_server.py) for a scenario's zonedata.

    Follows the suite's reference driver (pyspf test/testspf.py, getrdata/DNSLookup):

    * ``SPF`` records are served as type SPF (99), which the walker never asks for (RFC
      7208 3.1, 4.4); they are also served as TXT, unless the name lists a TXT entry of
      its own: the suite header says the non-"Selecting records" sections "rely on
      auto-magic duplication of SPF to TXT records (by test suite drivers)".
    * ``TXT: NONE`` means "no TXT records here" (and stops that duplication).
    * ``TIMEOUT`` makes every query type that the name has no record for (before the
      TIMEOUT entry) go unanswered: a ``drop`` fault, limited to those types.
    * A TXT/SPF record given as a list is one RR with several character-strings, joined
      without separator by the walker (RFC 7208 3.3). The empty list (a record with no
      string at all, illegal on the wire) is served as one empty string: dnspython
      rejects the whole DNS message otherwise, so the other TXT records at the name
      would be lost too, which is not what "null-text" is about.
    """
    records: dict[str, dict[str, list]] = {}
    faults: dict[str, dict] = {}
    for name, entries in zonedata.items():
        rrsets: dict[str, list] = {}
        lists_txt = False
        answered: set[str] = set()
        timeout = False
        for entry in entries or []:
            if entry == "TIMEOUT":
                timeout = True
                continue
            if not isinstance(entry, dict):
                raise ValueError(f"{name}: unexpected zonedata entry {entry!r}")
            if timeout:
                raise ValueError(f"{name}: records after TIMEOUT are not supported")
            for rtype, value in entry.items():
                rtype = rtype.upper()
                if rtype == "TXT":
                    lists_txt = True
                if rtype in ("TXT", "SPF") and value == "NONE":
                    continue
                answered.add(rtype)
                rrsets.setdefault(rtype, []).append(_rdata(rtype, value))
        if "SPF" in rrsets and not lists_txt:
            rrsets["TXT"] = list(rrsets["SPF"])
            if not timeout:
                answered.add("TXT")
        if "CNAME" in rrsets:
            if len(rrsets["CNAME"]) != 1 or len(rrsets) != 1:
                raise ValueError(f"{name}: a CNAME must be alone")
            rrsets["CNAME"] = rrsets["CNAME"][0]
        records[name] = rrsets
        if timeout:
            unanswered = [qtype for qtype in _QUERY_TYPES if qtype not in answered]
            faults[name] = {"drop": True} if not answered else {"drop": True, "types": unanswered}
    return {"records": records, "faults": faults}


def _rdata(rtype: str, value):
    if rtype in ("TXT", "SPF"):
        if isinstance(value, list):
            return [str(part) for part in value] or [""]
        return str(value)
    if rtype == "MX":
        preference, exchange = value
        return [int(preference), str(exchange)]
    if rtype in ("A", "AAAA", "PTR", "CNAME"):
        return str(value)
    raise ValueError(f"unsupported zonedata record type {rtype}")


# -- walking ---------------------------------------------------------------------------


def walker_options(server) -> WalkerOptions:
    return WalkerOptions(
        nameservers=[server.address],
        port=server.port,
        query_lifetime=QUERY_LIFETIME,
        retry_interval=RETRY_INTERVAL,
        deadline=WALK_DEADLINE,
    )


def walk_scenario(scenario: Scenario, domains: list[str] | None = None,
                  tmp_path: Path | None = None) -> dict[str, RootResult | BaseException]:
    """Serve the scenario's zone and walk each domain as a root of its own walk.

    Separate walks (run concurrently) keep the roots fully independent: no shared DNS
    cache, no shared deadline. An exception raised by a walk is returned, not raised,
    so that one walker crash fails only the tests of that domain.
    """
    domains = scenario.domains() if domains is None else domains
    with start_dns_server(scenario.zone(), tmp_path=tmp_path) as server:
        options = walker_options(server)

        async def walk_all():
            return await asyncio.gather(*(walk([domain], options) for domain in domains),
                                        return_exceptions=True)

        reports = asyncio.run(walk_all())
        stderr = server.stderr()
    if stderr.strip():
        raise RuntimeError(f"lab DNS server for {scenario.slug} reported errors:\n{stderr}")
    results: dict[str, RootResult | BaseException] = {}
    for domain, report in zip(domains, reports, strict=True):
        if isinstance(report, BaseException):
            results[domain] = report
        else:
            (root,) = report.roots.values()
            results[domain] = root
    return results


class ScenarioWalks:
    """Walk each scenario once, on first use, and keep the roots for its tests."""

    def __init__(self, scenarios: list[Scenario]):
        self.scenarios = {scenario.slug: scenario for scenario in scenarios}
        self._results: dict[str, dict[str, RootResult | BaseException]] = {}

    def root(self, case: Case) -> RootResult:
        if case.scenario not in self._results:
            self._results[case.scenario] = walk_scenario(self.scenarios[case.scenario])
        result = self._results[case.scenario][case.domain]
        if isinstance(result, BaseException):
            raise result
        return result


@dataclass
class Outcome:
    case: Case
    reason: str | None  # the not-applicable reason key, None when the test applies
    prediction: str | None
    root: RootResult | None
    error: BaseException | None = None

    @property
    def agrees(self) -> bool:
        return self.error is None and self.prediction in self.case.accepted


def evaluate(scenarios: list[Scenario], not_applicable: NotApplicable) -> list[Outcome]:
    """Every test's outcome, not-applicable ones included (their prediction is informative)."""
    walks = ScenarioWalks(scenarios)
    outcomes: list[Outcome] = []
    for scenario in scenarios:
        for case in scenario.cases:
            reason = not_applicable.tests.get(case.id)
            try:
                root = walks.root(case)
            except Exception as exc:  # a walker crash is a failed test, reported as such
                outcomes.append(Outcome(case, reason, None, None, exc))
                continue
            outcomes.append(Outcome(case, reason, predict(root, case.host), root))
    return outcomes

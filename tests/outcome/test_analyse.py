"""molecule/outcome/sim/analyse.py on a small crafted run: figures, checks, report, plots, greylist-report.

The run is built here, message by message, so that every figure has a value known in advance;
each check is then broken on purpose to see it FAIL. The greylist-report comparison gets a
journalctl short-iso Postfix + postgrey log written from the same crafted attempts.
"""

from __future__ import annotations

import copy
import gzip
import importlib.util
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Loaded by path: the installed Molecule package owns the name "molecule".
_SPEC = importlib.util.spec_from_file_location("outcome_analyse", REPO / "molecule/outcome/sim/analyse.py")
analyse = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(analyse)

# Not on a whole second: the log's short-iso stamps drop the fraction, as they do in a real run.
T0 = datetime(2026, 12, 5, 8, 0, 0, 700000, tzinfo=UTC).timestamp()
SESSION = 0.2  # lab seconds one delivering SMTP session takes: part of the driver's delay
RECIPIENT = "alice@lab.test"
GREY_TEXT = "4.2.0 <alice@lab.test>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/"
CONFIGS = [
    {"name": "no-greylisting", "title": "No greylisting", "mx": [{"name": "open-mx", "address": "198.18.0.31"}]},
    {"name": "greylisting-stock", "title": "Stock", "mx": [{"name": "stock-mx", "address": "198.18.0.32"}]},
    {"name": "greylisting-whitelist", "title": "Whitelist, postgrey per MX",
     "mx": [{"name": "grey-mx1", "address": "198.18.0.33"}, {"name": "grey-mx2", "address": "198.18.0.34"}]},
    {"name": "shared-greylist", "title": "Whitelist, shared sqlgrey",
     "mx": [{"name": "shared-mx1", "address": "198.18.0.35"}, {"name": "shared-mx2", "address": "198.18.0.36"}]},
]
CLASSES = [
    {"name": "pool-whitelisted", "title": "Pool in the whitelist", "kind": "legitimate"},
    {"name": "pool-not-whitelisted", "title": "Pool not in the whitelist", "kind": "legitimate"},
    {"name": "mta-postfix", "title": "New MTAs, Postfix", "kind": "legitimate"},
    {"name": "mta-exim", "title": "New MTAs, Exim", "kind": "legitimate"},
    {"name": "mta-other-mx", "title": "MTAs retrying on the other MX", "kind": "legitimate"},
    {"name": "bot-no-retry", "title": "Bots that never retry", "kind": "bot"},
]
GREYLISTING = [c["name"] for c in CONFIGS[1:]]
PRIMARY = {c["name"]: c["mx"][0]["address"] for c in CONFIGS}
SECOND = {c["name"]: c["mx"][-1]["address"] for c in CONFIGS}
ADDRESSES = {
    "198.18.96.10": "pool-whitelisted", "198.18.97.10": "pool-whitelisted",
    "198.18.112.20": "pool-not-whitelisted", "198.18.113.20": "pool-not-whitelisted",
    "198.18.114.20": "pool-not-whitelisted",
    "198.18.50.1": "mta-postfix", "198.18.50.2": "mta-postfix", "198.18.51.1": "mta-exim",
    "198.18.52.1": "mta-other-mx", "198.18.200.1": "bot-no-retry", "198.18.200.2": "bot-no-retry",
}


class Run:
    """A plan and its results, written one message at a time: (lab offset, client, mx, verdict)."""

    def __init__(self):
        self.messages: list[dict] = []
        self.results: list[dict] = []

    def add(self, config: str, cls: str, sender: str, attempts: list[tuple], ends: str = "horizon") -> None:
        ident = f"{config}/{cls}/{len(self.messages)}"  # unique even after a test removed a message
        planned = [{"at": at, "client": client, "mx": mx} for at, client, mx, _verdict in attempts]
        self.messages.append({"id": ident, "config": config, "class": cls, "sender": sender, "recipient": RECIPIENT,
                              "ends": ends, "attempts": planned})
        done = [_attempt(at, client, mx, verdict) for at, client, mx, verdict in attempts]
        delivered = next((a for a in done if a["outcome"] == "delivered"), None)
        outcome = "delivered" if delivered else ("rejected" if done[-1]["outcome"] == "rejected" else ends)
        delivered_at = delivered["at"] + SESSION if delivered else None
        self.results.append({"id": ident, "config": config, "class": cls, "sender": sender, "recipient": RECIPIENT,
                             "start": T0, "first_attempt": done[0]["at"], "attempts": done, "outcome": outcome,
                             "delivered_at": delivered_at,
                             "delay": delivered_at - done[0]["at"] if delivered else None})

    def plan(self) -> dict:
        return {"schema": 1, "seed": 7, "scale": 60.0, "lab_greylist_delay": 5, "real_greylist_delay": 300,
                "arrival_window": 60, "horizon": 240, "configurations": CONFIGS, "classes": CLASSES,
                "addresses": {ip: {"helo": f"h{ip}", "class": cls} for ip, cls in ADDRESSES.items()},
                "messages": self.messages}


def _attempt(at: float, client: str, mx: str, verdict: str) -> dict:
    replies = {"ok": ("DATA", 250, "2.0.0 Ok: queued as 4ABC", "delivered"),
               "grey": ("RCPT", 450, GREY_TEXT, "deferred"),
               "reject": ("RCPT", 550, "5.7.1 Client host rejected", "rejected")}
    stage, code, text, outcome = replies[verdict]
    return {"at": T0 + at, "planned": at, "client": client, "mx": mx, "stage": stage, "code": code, "text": text,
            "outcome": outcome}


def good_run() -> Run:
    """A run in which every claim of the report holds."""
    run = Run()
    for config in [c["name"] for c in CONFIGS]:
        grey = config != "no-greylisting"
        mx, other = PRIMARY[config], SECOND[config]
        _pools(run, config, grey, mx)
        _mtas(run, config, grey, mx)
        if grey:
            hops = ([(0, "198.18.52.1", mx, "grey"), (7, "198.18.52.1", other, "grey"), (20, "198.18.52.1", mx, "ok")]
                    if config == "greylisting-whitelist" else
                    [(0, "198.18.52.1", mx, "grey"), (7, "198.18.52.1", other, "ok")])
        else:
            hops = [(0, "198.18.52.1", mx, "ok")]
        run.add(config, "mta-other-mx", "erin0@hop1.sim.test", hops)
        for n, bot in enumerate(("198.18.200.1", "198.18.200.2")):
            run.add(config, "bot-no-retry", f"info{n}@shop{n}.sim.test", [(3 + n, bot, mx, "grey" if grey else "ok")],
                    ends="gave-up")
    return run


def _pools(run: Run, config: str, grey: bool, mx: str) -> None:
    whitelisted = config in ("no-greylisting", "greylisting-whitelist", "shared-greylist")
    for n in range(2):
        attempts = ([(n, "198.18.96.10", mx, "ok")] if whitelisted else
                    [(n, "198.18.96.10", mx, "grey"), (n + 6, "198.18.97.10", mx, "grey"),
                     (n + 12, "198.18.96.10", mx, "ok")])
        run.add(config, "pool-whitelisted", f"user{n}@gpool.sim.test", attempts)
    if not grey:
        for n in range(2):
            run.add(config, "pool-not-whitelisted", f"user{n}@opool.sim.test", [(n, "198.18.112.20", mx, "ok")])
        return
    # Delivered after 20.5 s (4 greylist delays), and one never delivered.
    run.add(config, "pool-not-whitelisted", "user0@opool.sim.test",
            [(0, "198.18.112.20", mx, "grey"), (8, "198.18.113.20", mx, "grey"), (20.5, "198.18.112.20", mx, "ok")])
    run.add(config, "pool-not-whitelisted", "user1@opool.sim.test",
            [(1, "198.18.113.20", mx, "grey"), (11, "198.18.114.20", mx, "grey")])


def _mtas(run: Run, config: str, grey: bool, mx: str) -> None:
    """Each MTA: a first message greylisted once (unless no greylisting), a later one straight through."""
    for cls, mta, sender, start, retry in (("mta-postfix", "198.18.50.1", "bob@pfx1.sim.test", 0, 7),
                                           ("mta-postfix", "198.18.50.2", "bob@pfx2.sim.test", 5, 9),
                                           ("mta-exim", "198.18.51.1", "carol@exm1.sim.test", 2, 20)):
        first = [(start, mta, mx, "grey"), (start + retry, mta, mx, "ok")] if grey else [(start, mta, mx, "ok")]
        run.add(config, cls, sender, first)
        run.add(config, cls, sender, [(start + 40, mta, mx, "ok")])


HOSTS = {"hosts": {
    "open-mx": {"policy_requests": {"greylist": 0, "spf": 13}, "dns_queries": 26},
    "stock-mx": {"policy_requests": {"greylist": 30, "spf": 13}, "dns_queries": 39},
    "grey-mx1": {"policy_requests": {"greylist": 10, "spf": 7}, "dns_queries": 20},
    "grey-mx2": {"policy_requests": {"greylist": 3, "spf": 6}, "dns_queries": None},
    "shared-mx1": {"policy_requests": {"greylist": 12, "spf": 6}, "dns_queries": 18},
    "shared-mx2": {"policy_requests": {"greylist": 1, "spf": 7}, "dns_queries": 9},
}}


def verdicts(summary: dict, check_id: str) -> dict[str, bool | None]:
    return {f"{c['config']}/{c['class']}": c["pass"] for c in summary["checks"] if c["id"] == check_id}


@pytest.fixture
def run() -> Run:
    return good_run()


@pytest.fixture
def summary(run) -> dict:
    return analyse.summarise(run.plan(), run.results, HOSTS)


# -- figures ---------------------------------------------------------------------------------

def test_percentile_is_nearest_rank():
    values = [10, 1, 4, 2, 3, 5, 6, 7, 8, 9]
    assert analyse.percentile(values, 0.5) == 5
    assert analyse.percentile(values, 0.95) == 10
    assert analyse.percentile(values, 0.1) == 1
    assert analyse.percentile([7.5], 0.95) == 7.5
    assert analyse.percentile([], 0.5) is None


def test_distribution_in_lab_seconds_and_real_minutes():
    figures = analyse.distribution([5.0, 10.0, 30.0], scale=60.0)
    assert (figures["p50_lab_s"], figures["p95_lab_s"], figures["max_lab_s"]) == (10.0, 30.0, 30.0)
    assert figures["p50_real_min"] == 10.0  # one lab second stands for one real minute
    assert analyse.distribution([6.0], scale=30.0)["max_real_min"] == 3.0


def test_cell_counts_outcomes_delays_and_shares(summary):
    cell = summary["cells"]["greylisting-stock"]["pool-not-whitelisted"]
    assert (cell["messages"], cell["delivered"], cell["not_delivered_in_window"], cell["greylisted"]) == (2, 1, 1, 2)
    assert cell["delay"]["max_lab_s"] == pytest.approx(20.5 + SESSION)
    assert cell["share_delayed"] == 1.0 and cell["share_blocked"] == 0.5
    open_pool = summary["cells"]["no-greylisting"]["pool-whitelisted"]
    assert open_pool["delayed"] == 0 and open_pool["share_delayed"] == 0.0
    assert open_pool["delay"]["max_lab_s"] == pytest.approx(SESSION)  # the session only
    bots = summary["cells"]["shared-greylist"]["bot-no-retry"]
    assert (bots["gave_up"], bots["share_blocked"], bots["delay"]["count"]) == (2, 1.0, 0)
    assert summary["cells"]["no-greylisting"]["bot-no-retry"]["share_blocked"] == 0.0


def test_a_missing_result_counts_as_not_delivered(run):
    missing = run.results.pop(0)
    summary = analyse.summarise(run.plan(), run.results, HOSTS)
    cell = summary["cells"][missing["config"]][missing["class"]]
    assert cell["missing"] == 1 and cell["delivered"] == cell["messages"] - 1
    assert summary["run"]["missing_results"] == [missing["id"]]


def test_first_message_of_a_new_mta(summary):
    figures = summary["first_message"]["greylisting-stock"]["mta-postfix"]
    assert figures["mtas"] == 2
    first = figures["first"]
    assert first["p50_lab_s"] == pytest.approx(7 + SESSION) and first["max_lab_s"] == pytest.approx(9 + SESSION)
    assert first["delivered_at_attempt"] == [2, 2] and first["not_delivered"] == 0
    assert figures["later"]["messages"] == 2 and figures["later"]["delayed"] == 0
    assert figures["sent_during_first_greylisting"] == 0


def test_a_message_sent_while_the_first_was_greylisted_is_counted_apart(run):
    run.add("greylisting-stock", "mta-postfix", "bob@pfx1.sim.test",
            [(3, "198.18.50.1", PRIMARY["greylisting-stock"], "grey"), (9, "198.18.50.1", PRIMARY["greylisting-stock"],
                                                                         "ok")])
    figures = analyse.summarise(run.plan(), run.results, HOSTS)["first_message"]["greylisting-stock"]["mta-postfix"]
    assert figures["sent_during_first_greylisting"] == 1 and figures["later"]["messages"] == 2


def test_host_work_per_message_and_unknown_counters(summary):
    stock = summary["hosts"]["greylisting-stock"]
    messages = stock["messages"]
    assert messages == sum(c["messages"] for c in summary["cells"]["greylisting-stock"].values())
    assert stock["per_message"]["greylist"] == pytest.approx(30 / messages)
    assert stock["per_message"]["dns"] == pytest.approx(39 / messages)
    shared = summary["hosts"]["shared-greylist"]
    assert shared["totals"]["greylist"] == 13 and shared["totals"]["spf"] == 13
    assert summary["hosts"]["greylisting-whitelist"]["per_message"]["dns"] is None  # grey-mx2 said null


# -- checks ----------------------------------------------------------------------------------

def test_every_check_passes_on_the_good_run(summary):
    assert {c["id"] for c in summary["checks"]} == {"a", "b", "c", "d", "e"}
    failed = [c for c in summary["checks"] if c["pass"] is not True]
    assert failed == []
    assert analyse.all_passed(summary, None)


def test_a_fails_when_a_whitelisted_pool_message_is_delayed(run):
    config = "shared-greylist"
    index = next(i for i, r in enumerate(run.results) if r["config"] == config and r["class"] == "pool-whitelisted")
    run.messages.pop(index)
    run.results.pop(index)
    run.add(config, "pool-whitelisted", "user9@gpool.sim.test",
            [(0, "198.18.96.10", PRIMARY[config], "grey"), (6, "198.18.96.10", PRIMARY[config], "ok")])
    summary = analyse.summarise(run.plan(), run.results, HOSTS)
    assert verdicts(summary, "a") == {"greylisting-whitelist/pool-whitelisted": True,
                                      "shared-greylist/pool-whitelisted": False}
    (check,) = [c for c in summary["checks"] if c["id"] == "a" and c["config"] == config]
    assert "1 deferred first" in check["measured"] and "6.2 lab s" in check["measured"]
    assert not analyse.all_passed(summary, None)


def test_b_fails_when_the_unlisted_pool_gets_through_quickly(run):
    for result in run.results:
        if result["config"] == "greylisting-stock" and result["class"] == "pool-not-whitelisted":
            result.update(outcome="delivered", delivered_at=result["first_attempt"] + 6, delay=6.0)
    summary = analyse.summarise(run.plan(), run.results, HOSTS)
    assert verdicts(summary, "b")["greylisting-stock/pool-not-whitelisted"] is False
    assert verdicts(summary, "b")["shared-greylist/pool-not-whitelisted"] is True
    good = analyse.summarise(good_run().plan(), good_run().results, HOSTS)
    (check,) = [c for c in good["checks"] if c["id"] == "b" and c["config"] == "greylisting-stock"]
    assert check["figures"]["p50_lab_s"] == pytest.approx(20.7) and math.isinf(check["figures"]["max_lab_s"])
    assert "max not delivered" in check["measured"] and "5 real min (5 lab s)" in check["measured"]


def test_c_fails_when_a_later_message_is_delayed_or_the_first_is_not(run):
    config, mx = "greylisting-whitelist", PRIMARY["greylisting-whitelist"]
    run.add(config, "mta-exim", "carol@exm1.sim.test", [(50, "198.18.51.1", mx, "grey"), (60, "198.18.51.1", mx, "ok")])
    summary = analyse.summarise(run.plan(), run.results, HOSTS)
    assert verdicts(summary, "c")[f"{config}/mta-exim"] is False
    assert verdicts(summary, "c")[f"{config}/mta-postfix"] is True
    quick = good_run()
    for result in quick.results:  # a first message delivered after 2 s: under the 5 s greylist delay
        if result["config"] == "greylisting-stock" and result["class"] == "mta-postfix" and result["delay"] > 5:
            result["delay"] = 2.0
            break
    checks = verdicts(analyse.summarise(quick.plan(), quick.results, HOSTS), "c")
    assert checks["greylisting-stock/mta-postfix"] is False


def test_c_is_not_judged_without_a_later_message(run):
    """"Delayed once" needs a message after the MTA's first delivery: without one, n/a (never PASS)."""
    quick = good_run()
    config = "greylisting-stock"
    first_of = {}
    for result in quick.results:
        if result["config"] == config and result["class"] == "mta-postfix":
            client = result["attempts"][0]["client"]
            if client not in first_of or result["first_attempt"] < first_of[client]["first_attempt"]:
                first_of[client] = result
    assert len(first_of) < sum(1 for r in quick.results if r["config"] == config and r["class"] == "mta-postfix")
    quick.results = [r for r in quick.results if r["config"] != config or r["class"] != "mta-postfix"
                     or r in first_of.values()]
    kept = {r["id"] for r in quick.results}
    quick.messages = [m for m in quick.messages if m["id"] in kept]
    checks = verdicts(analyse.summarise(quick.plan(), quick.results, HOSTS), "c")
    assert checks[f"{config}/mta-postfix"] is None
    assert checks["shared-greylist/mta-postfix"] is True


def test_d_fails_when_a_bot_gets_through_or_is_blocked_without_greylisting(run):
    for result in run.results:
        if result["class"] == "bot-no-retry" and result["config"] in ("greylisting-stock", "no-greylisting"):
            result["outcome"] = "delivered" if result["config"] == "greylisting-stock" else "rejected"
            result["delay"] = 0.1 if result["outcome"] == "delivered" else None
    checks = verdicts(analyse.summarise(run.plan(), run.results, HOSTS), "d")
    assert checks == {"no-greylisting/bot-no-retry": False, "greylisting-stock/bot-no-retry": False,
                      "greylisting-whitelist/bot-no-retry": True, "shared-greylist/bot-no-retry": True}


def test_e_compares_the_other_mx_delay_of_separate_and_shared_greylisting(summary, run):
    (check,) = [c for c in summary["checks"] if c["id"] == "e"]
    assert check["pass"] is True
    assert check["figures"]["greylisting-whitelist"]["max_lab_s"] == pytest.approx(20.2)
    assert check["figures"]["shared-greylist"]["max_lab_s"] == pytest.approx(7.2)
    for result in run.results:
        if result["class"] == "mta-other-mx" and result["config"] == "shared-greylist":
            result["delay"] = 30.0
    (worse,) = [c for c in analyse.summarise(run.plan(), run.results, HOSTS)["checks"] if c["id"] == "e"]
    assert worse["pass"] is False


def test_a_check_without_its_class_is_not_applicable(run):
    plan = run.plan()
    plan["classes"] = [c for c in plan["classes"] if c["name"] != "mta-other-mx"]
    plan["messages"] = [m for m in plan["messages"] if m["class"] != "mta-other-mx"]
    summary = analyse.summarise(plan, run.results, HOSTS)
    assert verdicts(summary, "e") == {"greylisting-whitelist vs shared-greylist/mta-other-mx": None}
    assert analyse.all_passed(summary, None)


# -- report and plots ------------------------------------------------------------------------

def test_markdown_has_the_run_the_tables_the_plots_and_the_checks(summary):
    command = "scripts/outcome-sim docs/outcome  # seed 7"
    text = analyse.render_markdown(summary, None, command)
    assert "Run of 2026-12-05 08:00 UTC, seed 7" in text
    assert "1 lab second = 1 real minute; the lab greylists for 5 s where postgrey's default is 300 s" in text
    assert f"```sh\n{command}\n```" in text
    assert "- **grey-mx1 (198.18.0.33), grey-mx2 (198.18.0.34)" not in text  # names are in the configuration line
    assert "MX: grey-mx1 (198.18.0.33), grey-mx2 (198.18.0.34)" in text
    assert "### Stock (`greylisting-stock`)" in text
    assert "| pool-not-whitelisted | 2 | 1 | 0 | 0 | 1 | 100 % | - | 20.7 / 20.7 / 20.7 | 20.7 / 20.7 / 20.7 |" in text
    assert "| bot-no-retry | 2 | 0 | 0 | 2 | 0 | 100 % | 100 % |" in text
    assert "![Delay CDF per sender class](delay-cdf.png)" in text and "(bots-blocked.png)" in text
    assert "| greylisting-whitelist | grey-mx1, grey-mx2 |" in text and "| n/a |" in text
    assert "nearest-rank" in text
    assert "## What the numbers show" in text and "**FAIL**" not in text
    assert text.count("**PASS**") == len(summary["checks"])
    assert "Not run: no mail logs were given" in text


def test_markdown_says_fail_where_a_check_fails(run):
    for result in run.results:
        if result["class"] == "bot-no-retry" and result["config"] == "shared-greylist":
            result.update(outcome="delivered", delay=0.1)
    text = analyse.render_markdown(analyse.summarise(run.plan(), run.results, HOSTS), None, "x")
    assert "   - **FAIL** shared-greylist, bot-no-retry: 0 % blocked (expected 100 %)" in text


def test_plots_are_png_and_the_same_bytes_every_time(summary, tmp_path):
    first = [analyse.plot_delay_cdf(summary, tmp_path / "a-cdf.png"),
             analyse.plot_bots_blocked(summary, tmp_path / "a-bots.png")]
    second = [analyse.plot_delay_cdf(summary, tmp_path / "b-cdf.png"),
              analyse.plot_bots_blocked(summary, tmp_path / "b-bots.png")]
    for one, two in zip(first, second, strict=True):
        data = one.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
        assert data == two.read_bytes()
        assert b"matplotlib" not in data  # no Software chunk naming the version


def test_cdf_points_end_below_one_for_mail_not_delivered(summary):
    cell = summary["cells"]["greylisting-stock"]["pool-not-whitelisted"]
    xs, ys = analyse._cdf_points(cell, 60.0, 240.0)
    assert ys == [0.0, 0.5, 0.5] and xs[-1] == 240.0


def test_command_writes_the_report_and_exits_by_the_checks(run, tmp_path):
    plan, results, hosts = tmp_path / "plan.json", tmp_path / "results.jsonl", tmp_path / "hosts.json"
    plan.write_text(json.dumps(run.plan()))
    results.write_text("".join(json.dumps(r) + "\n" for r in run.results))
    hosts.write_text(json.dumps(HOSTS))
    out = tmp_path / "out"
    argv = ["--plan", str(plan), "--results", str(results), "--hosts", str(hosts), "--output-dir", str(out),
            "--command", "make it so"]
    assert analyse.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bots-blocked.png", "delay-cdf.png", "report.md", "summary.json"]
    figures = json.loads((out / "summary.json").read_text())
    assert figures["command"] == "make it so" and figures["percentile_method"] == "nearest-rank"
    assert figures["cells"]["greylisting-stock"]["pool-not-whitelisted"]["delivered"] == 1
    assert "make it so" in (out / "report.md").read_text()
    bad = [dict(r, outcome="delivered", delay=0.1) if r["class"] == "bot-no-retry" else r for r in run.results]
    results.write_text("".join(json.dumps(r) + "\n" for r in bad))
    assert analyse.main(argv) == 1
    assert analyse.main([*argv[:2], "--results", str(tmp_path / "nope.jsonl")]) == 2


# -- greylist-report against the ground truth ------------------------------------------------

def _stamp(at: float) -> str:
    # journalctl -o short-iso: whole seconds, the fraction dropped.
    return datetime.fromtimestamp(math.floor(at), UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _name(client: str) -> str:
    cls = ADDRESSES[client]
    return f"mail-{client.rsplit('.', 2)[1]}.{'gpool' if cls == 'pool-whitelisted' else 'opool'}.sim.test" \
        if cls.startswith("pool") else "unknown"


def journal_lines(result: dict, host: str, number: int) -> list[tuple[float, str]]:
    """What postgrey and Postfix log about each attempt of one message (formats of tests/greylog/greylog_lab.py)."""
    lines = []
    for k, attempt in enumerate(result["attempts"]):
        at, client, name = attempt["at"], attempt["client"], _name(attempt["client"])
        fields = (f"client_name={name}, client_address={client}, sender={result['sender']}, "
                  f"recipient={result['recipient']}")
        if attempt["outcome"] == "deferred":
            lines += [(at, f"{host} postgrey[50]: action=greylist, reason=new, {fields}"),
                      (at, f"{host} postfix/smtpd[100]: NOQUEUE: reject: RCPT from {name}[{client}]: 450 "
                           f"{GREY_TEXT}; from=<{result['sender']}> to=<{result['recipient']}> proto=ESMTP "
                           f"helo=<h{client}>")]
        elif attempt["outcome"] == "delivered":
            qid = f"4A{number:04d}{k}B"
            lines += [(at, f"{host} postgrey[50]: action=pass, reason=triplet found, delay=9, {fields}"),
                      (at, f"{host} postfix/smtpd[100]: {qid}: client={name}[{client}]"),
                      (at + 0.1, f"{host} postfix/qmgr[90]: {qid}: from=<{result['sender']}>, size=300, nrcpt=1 "
                                 "(queue active)"),
                      (at + 0.1, f"{host} postfix/local[104]: {qid}: to=<{result['recipient']}>, relay=local, "
                                 "delay=0.1, dsn=2.0.0, status=sent (delivered to mailbox)"),
                      (at + 0.1, f"{host} postfix/qmgr[90]: {qid}: removed")]
    return lines


def write_logs(run: Run, config: str, log_dir: Path, drop=lambda result: False, shift=0.0,
               keep=lambda line: True) -> None:
    """Each MX's journal of the crafted run; the second MX's is gzipped, as rotated logs are."""
    host_of = {mx["address"]: mx["name"] for c in CONFIGS for mx in c["mx"]}
    journals: dict[str, list] = {mx["name"]: [] for c in CONFIGS if c["name"] == config for mx in c["mx"]}
    for number, result in enumerate(r for r in run.results if r["config"] == config):
        if drop(result):
            continue
        moved = copy.deepcopy(result)
        for attempt in moved["attempts"]:
            attempt["at"] += shift if attempt["outcome"] == "delivered" and result["class"] == "mta-exim" else 0
        for attempt in moved["attempts"]:
            host = host_of[attempt["mx"]]
            lines = journal_lines(dict(moved, attempts=[attempt]), host, number * 10 + len(journals[host]))
            journals[host] += [(at, line) for at, line in lines if keep(line)]
    # Mail from the scenario's own checks, an hour before the run: outside the window, never counted.
    journals[next(iter(journals))].append((T0 - 3600, f"{next(iter(journals))} postgrey[50]: action=greylist, "
                                          "reason=new, client_name=unknown, client_address=10.0.0.1, "
                                          "sender=probe@lab.test, recipient=alice@lab.test"))
    for position, (host, lines) in enumerate(journals.items()):
        text = "-- Journal begins at Sat 2026-12-05 07:00:00 UTC. --\n" + "".join(
            f"{_stamp(at)} {line}\n" for at, line in sorted(lines, key=lambda item: item[0]))
        (log_dir / host).mkdir(parents=True, exist_ok=True)
        if position:
            (log_dir / host / "mail.log.1.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (log_dir / host / "journal.log").write_text(text)


def compare(run: Run, log_dir: Path) -> dict:
    plan = run.plan()
    return analyse.compare_with_greylist_report(plan, run.results, analyse.reports_for_run(plan, run.results, log_dir))


def rows(comparison: dict, config: str) -> dict[str, dict]:
    (found,) = [c for c in comparison["configs"] if c["name"] == config]
    return {row["figure"]: row for row in found["figures"]} | {f"pool {p['domain']}": p for p in found["pools"]}


@pytest.fixture
def logs(run, tmp_path) -> Path:
    for config in GREYLISTING:
        write_logs(run, config, tmp_path / "logs")
    return tmp_path / "logs"


def test_greylist_report_agrees_with_the_ground_truth(run, logs):
    comparison = compare(run, logs)
    assert comparison["pass"] is True, json.dumps(comparison, indent=1)
    stock = rows(comparison, "greylisting-stock")
    # Messages: 2 + 2 pool, 3 first MTA messages, 1 other-MX, 2 bots; the MTAs' later messages pass unseen.
    assert stock["greylisted"]["truth_messages"] == 10 and stock["greylisted"]["greylist_report"] == 10
    assert stock["never retried"]["greylist_report"] == 2  # the bots
    assert stock["retried, never delivered"]["greylist_report"] == 1  # the unlisted pool's lost message
    # The pool's 20.5 s: the tool sees 08:00:21 - 08:00:00 (whole seconds of 08:00:21.2 and 08:00:00.7),
    # the driver 20.5 s from attempt to attempt, 20.7 s to the end of the delivering session.
    assert stock["delay max (lab s)"]["greylist_report"] == 21
    assert stock["delay max (lab s)"]["truth_pairs"] == pytest.approx(20.5)
    assert stock["delay max (lab s)"]["truth_messages"] == pytest.approx(20.7)
    assert stock["pool opool.sim.test"]["proposed"] and stock["pool gpool.sim.test"]["proposed"]
    separate = rows(comparison, "greylisting-whitelist")
    assert separate["pool opool.sim.test"]["proposed"] is True
    assert separate["pool gpool.sim.test"] == {**separate["pool gpool.sim.test"], "proposed": False,
                                               "expected": False, "pass": True}
    # Greylisted on grey-mx1, then on grey-mx2, accepted on grey-mx1: one pair, passed, in the merged logs.
    assert separate["greylisted"]["greylist_report"] == 8 and separate["delivered (passed) later"]["pass"] is True


def test_pairs_not_messages_are_what_greylist_report_counts(run, tmp_path):
    # A second greylisted message from the same MTA (same sender and recipient) is one pair more for nobody.
    mx = PRIMARY["greylisting-stock"]
    run.add("greylisting-stock", "mta-postfix", "bob@pfx1.sim.test",
            [(3, "198.18.50.1", mx, "grey"), (9, "198.18.50.1", mx, "ok")])
    write_logs(run, "greylisting-stock", tmp_path)
    stock = rows(compare(run, tmp_path), "greylisting-stock")
    assert stock["greylisted"]["truth_messages"] == 11
    assert stock["greylisted"]["truth_pairs"] == 10 and stock["greylisted"]["greylist_report"] == 10
    assert stock["greylisted"]["pass"] is True


def test_one_witness_of_an_attempt_is_enough(run, tmp_path):
    # postgrey and Postfix both log each attempt: without postgrey's pass lines the queue lines still count.
    for config in GREYLISTING:
        write_logs(run, config, tmp_path, keep=lambda line: "action=pass" not in line)
    assert compare(run, tmp_path)["pass"] is True


def test_a_message_missing_from_the_log_makes_the_comparison_fail(run, tmp_path):
    def drop(result):
        return result["class"] == "mta-exim" and result["delivered_at"] and len(result["attempts"]) == 2

    for config in GREYLISTING:
        write_logs(run, config, tmp_path, drop=drop)
    comparison = compare(run, tmp_path)
    assert comparison["pass"] is False
    stock = rows(comparison, "greylisting-stock")
    assert stock["greylisted"]["difference"] == -1 and stock["greylisted"]["pass"] is False


def test_a_shifted_delay_makes_the_comparison_fail(run, tmp_path):
    for config in GREYLISTING:
        write_logs(run, config, tmp_path, shift=5.0)
    stock = rows(compare(run, tmp_path), "greylisting-stock")
    # The Exim MTA's 20 s became 25 s: the maximum (20.5 s, the pool) is now 25 s.
    assert stock["delay max (lab s)"]["pass"] is False
    assert stock["delay max (lab s)"]["difference"] == pytest.approx(4.5)
    assert stock["greylisted"]["pass"] is True


def test_a_whitelisted_pool_proposed_for_the_whitelist_fails(run, tmp_path):
    # The log says gpool was greylisted from two networks in the shared configuration; the truth says never.
    config = "greylisting-whitelist"
    write_logs(run, config, tmp_path)
    extra = "".join(f"{_stamp(T0 + 30 + n)} grey-mx1 postgrey[50]: action=greylist, reason=new, "
                    f"client_name=mail-{n}.gpool.sim.test, client_address=198.18.{96 + n}.10, "
                    f"sender=user7@gpool.sim.test, recipient=alice@lab.test\n" for n in range(2))
    journal = tmp_path / "grey-mx1" / "journal.log"
    journal.write_text(journal.read_text() + extra)
    separate = rows(compare(run, tmp_path), config)
    assert separate["pool gpool.sim.test"]["proposed"] is True and separate["pool gpool.sim.test"]["pass"] is False


def test_no_logs_fail_the_comparison(run, tmp_path):
    comparison = compare(run, tmp_path)
    assert comparison["pass"] is False
    assert all(not c["logs"] for c in comparison["configs"])


def test_merged_lines_are_in_time_order_across_hosts(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "mail.log").write_text(
        f"{_stamp(T0)} a postfix/smtpd[1]: one\n{_stamp(T0 + 20)} a postfix/smtpd[1]: four\n")
    (tmp_path / "b" / "mail.log").write_text(
        f"{_stamp(T0 + 5)} b postfix/smtpd[1]: two\nnot a log line\n{_stamp(T0 + 10)} b postfix/smtpd[1]: three\n")
    files = analyse.log_files(tmp_path, "a") + analyse.log_files(tmp_path, "b")
    merged = analyse.merged_lines(files, 2026, since=T0 + 1)
    assert [line.rsplit(" ", 1)[1] for line in merged] == ["two", "line", "three", "four"]


def test_rotated_files_are_read_oldest_first(tmp_path):
    (tmp_path / "mx").mkdir()
    for name in ("mail.log", "mail.log.1", "mail.log.2.gz", "mail.log.10.gz"):
        (tmp_path / "mx" / name).write_text("")
    assert [p.name for p in analyse.log_files(tmp_path, "mx")] == ["mail.log.10.gz", "mail.log.2.gz", "mail.log.1",
                                                                    "mail.log"]


def test_markdown_shows_the_comparison_side_by_side(run, logs, summary):
    text = analyse.render_markdown(summary, compare(run, logs), "cmd")
    assert "## greylist-report against the ground truth" in text
    assert "| figure | ground truth, messages | ground truth, pairs | greylist-report | difference |" in text
    assert "| greylisted | 10 | 10 | 10 | 0 | ±0 | **PASS** |" in text
    assert "**PASS** pool opool.sim.test (pool-not-whitelisted): proposed for the whitelist" in text
    assert "Agreement overall: **PASS**." in text


def test_command_with_logs_compares_and_refuses_a_broken_gzip(run, logs, tmp_path):
    plan, results = tmp_path / "plan.json", tmp_path / "results.jsonl"
    plan.write_text(json.dumps(run.plan()))
    results.write_text("".join(json.dumps(r) + "\n" for r in run.results))
    argv = ["--plan", str(plan), "--results", str(results), "--logs", str(logs), "--output-dir", str(tmp_path / "o")]
    assert analyse.main(argv) == 0
    figures = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert figures["comparison"]["pass"] is True
    assert figures["hosts"]["greylisting-stock"]["per_message"]["dns"] is None  # no --hosts: n/a, not 0
    assert "Agreement overall: **PASS**." in (tmp_path / "o" / "report.md").read_text()
    cut = gzip.compress((logs / "stock-mx" / "journal.log").read_bytes())[:60]  # a rotation cut short
    (logs / "stock-mx" / "mail.log.2.gz").write_bytes(cut)
    assert analyse.main(argv) == 2


def test_markdown_names_a_configuration_without_logs(run, summary, tmp_path):
    write_logs(run, "greylisting-stock", tmp_path)
    text = analyse.render_markdown(summary, compare(run, tmp_path), "cmd")
    assert text.count("**FAIL**: no mail log found for these hosts.") == 2
    assert "Agreement overall: **FAIL**." in text


# -- selective greylisting (configuration selective-postscreen) ------------------------------

SELECTIVE = {"name": "selective-postscreen", "title": "postscreen and selective greylisting",
             "mx": [{"name": "screen-mx", "address": "198.18.0.37"}]}
SCREEN_MX = "198.18.0.37"
BOTS = [f"198.18.200.{n}" for n in range(1, 21)]


class SelectiveRun(Run):
    """The good run plus the selective configuration, its bulk sender, real MTA without reverse
    DNS and twenty bots."""

    def plan(self) -> dict:
        plan = super().plan()
        plan["configurations"] = [*CONFIGS, SELECTIVE]
        plan["classes"] = [*CLASSES, {"name": "bulk", "title": "Bulk sender", "kind": "legitimate"},
                           {"name": "mta-dynamic", "title": "Real MTA without reverse DNS", "kind": "legitimate"}]
        plan["addresses"] |= {"198.18.40.5": {"helo": "out.bulk.sim.test", "class": "bulk"},
                              "198.18.60.77": {"helo": "dsl-198-18-60-77.dyn.sim.test", "class": "mta-dynamic"}}
        plan["addresses"] |= {bot: {"helo": f"pc-{bot}", "class": "bot-no-retry"} for bot in BOTS}
        return plan


def selective_run(*, deferred_class: str | None = None, bots_through: int = 0, dynamic_greylisted: bool = True):
    run = SelectiveRun()
    base = good_run()
    run.messages, run.results = base.messages, base.results
    config = SELECTIVE["name"]
    verified = {"pool-not-whitelisted": "198.18.112.20", "bulk": "198.18.40.5", "mta-postfix": "198.18.50.1",
                "mta-exim": "198.18.51.1", "mta-other-mx": "198.18.52.1"}
    run.add(config, "pool-whitelisted", "user0@gpool.sim.test", [(0, "198.18.96.10", SCREEN_MX, "ok")])
    for cls, client in verified.items():
        first = ([(1, client, SCREEN_MX, "grey"), (8, client, SCREEN_MX, "ok")] if cls == deferred_class
                 else [(1, client, SCREEN_MX, "ok")])
        run.add(config, cls, f"x@{cls}.sim.test", first)
        run.add(config, cls, f"x@{cls}.sim.test", [(30, client, SCREEN_MX, "ok")])
    dynamic = ([(2, "198.18.60.77", SCREEN_MX, "grey"), (9, "198.18.60.77", SCREEN_MX, "ok")] if dynamic_greylisted
               else [(2, "198.18.60.77", SCREEN_MX, "ok")])
    run.add(config, "mta-dynamic", "dave@home1.sim.test", dynamic)
    run.add(config, "mta-dynamic", "dave@home1.sim.test", [(40, "198.18.60.77", SCREEN_MX, "ok")])
    for n, bot in enumerate(BOTS):
        verdict = "ok" if n < bots_through else "grey"
        run.add(config, "bot-no-retry", f"info{n}@shop{n}.sim.test", [(3, bot, SCREEN_MX, verdict)], ends="gave-up")
    return run


def selective_verdicts(run, check_id: str) -> dict:
    summary = analyse.summarise(run.plan(), run.results, HOSTS)
    return {c["class"]: c["pass"] for c in summary["checks"] if c["id"] == check_id
            and c["config"] == SELECTIVE["name"]}


def test_selective_greylisting_checks_pass_when_only_the_nameless_wait():
    run = selective_run()
    summary = analyse.summarise(run.plan(), run.results, HOSTS)
    mine = [c for c in summary["checks"] if c["config"] == SELECTIVE["name"]]
    assert {c["id"] for c in mine} == {"a", "d", "f", "g"}  # b and c are for greylisting everyone
    assert [c for c in mine if c["pass"] is not True] == []
    assert analyse.all_passed(summary, None)


def test_f_fails_when_a_sender_with_a_verified_name_is_deferred():
    assert selective_verdicts(selective_run(deferred_class="mta-postfix"), "f") == {
        "pool-not-whitelisted": True, "bulk": True, "mta-postfix": False, "mta-exim": True, "mta-other-mx": True}


def test_g_fails_when_the_mta_without_reverse_dns_is_not_greylisted():
    assert selective_verdicts(selective_run(dynamic_greylisted=False), "g") == {"mta-dynamic": False}


@pytest.mark.parametrize(("through", "passed"), [(1, True), (2, False)])
def test_d_for_selective_greylisting_wants_95_percent_of_the_bots_blocked(through, passed):
    assert selective_verdicts(selective_run(bots_through=through), "d") == {"bot-no-retry": passed}

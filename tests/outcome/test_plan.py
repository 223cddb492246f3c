"""molecule/outcome/sim/plan.py: the outcome simulation's traffic, drawn once and sent to every
configuration alike, on the compressed clock, with the lab DNS data the senders need."""

from __future__ import annotations

import copy
import importlib.util
import ipaddress
import itertools
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

OUTCOME = Path(__file__).resolve().parents[2] / "molecule/outcome"
TRAFFIC = OUTCOME / "traffic.yml"
_spec = importlib.util.spec_from_file_location("outcome_plan", OUTCOME / "sim/plan.py")
plan_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plan_module)

TOLERANCE = 0.002  # attempt times are rounded to the millisecond


@pytest.fixture(scope="module")
def traffic():
    return plan_module.load_traffic(TRAFFIC)


@pytest.fixture(scope="module")
def plan(traffic):
    return plan_module.build_plan(traffic, 5)


def small_traffic(schedule: dict, *, arrival_window: float = 0, horizon: float = 100000, **sender_class) -> dict:
    """One configuration, one class: a schedule's attempts without the real file's noise."""
    return {
        "real_greylist_delay": 300,
        "arrival_window": arrival_window,
        "horizon": horizon,
        "seed": 1,
        "recipient": "alice@lab.test",
        "mail_hosts": {"mx-a": "198.18.0.31", "mx-b": "198.18.0.32"},
        "configurations": [{"name": "one", "title": "One", "mx": ["mx-a", "mx-b"]}],
        "schedules": {"s": schedule},
        "sender_classes": [
            {
                "name": "c",
                "title": "C",
                "kind": "legitimate",
                "domain": "c.sim.test",
                "addresses": {"first": "198.18.40.1", "count": 1},
                "ptr": "out.c.sim.test",
                "address_choice": "same",
                "schedule": "s",
                "senders": "u{n}@c.sim.test",
                "messages": 1,
                **sender_class,
            }
        ],
    }


def only_message(traffic: dict) -> dict:
    [message] = plan_module.build_plan(traffic, 5)["messages"]
    return message


def by_class(plan: dict, name: str) -> list[dict]:
    return [message for message in plan["messages"] if message["class"] == name]


def class_named(traffic: dict, name: str) -> dict:
    [sender_class] = [c for c in traffic["sender_classes"] if c["name"] == name]
    return sender_class


# --- the clock ----------------------------------------------------------------------------------


def test_a_class_may_have_an_arrival_window_of_its_own(traffic, plan):
    exim = [m["attempts"][0]["at"] for m in plan["messages"] if m["class"] == "mta-exim"]
    postfix = [m["attempts"][0]["at"] for m in plan["messages"] if m["class"] == "mta-postfix"]
    assert max(exim) > plan["arrival_window"] >= max(postfix)
    assert max(exim) <= class_named(traffic, "mta-exim")["arrival_window"] / plan["scale"]


def test_real_seconds_are_divided_by_the_scale(traffic, plan):
    assert plan["scale"] == 60.0
    assert plan["horizon"] == 240.0
    assert plan["arrival_window"] == 40.0
    slower = plan_module.build_plan(traffic, 10)
    assert slower["scale"] == 30.0
    assert slower["horizon"] == 480.0
    first = plan["messages"][0]["attempts"][0]["at"]
    assert slower["messages"][0]["attempts"][0]["at"] == pytest.approx(first * 2, abs=TOLERANCE)


def test_a_fixed_schedule_lands_on_its_lab_seconds():
    message = only_message(small_traffic({"retries": [[60, 60]], "then_every": [120, 120], "give_up": 600}))
    assert [attempt["at"] for attempt in message["attempts"]] == [0, 1, 3, 5, 7, 9]
    assert message["ends"] == "gave-up"


# --- addresses ----------------------------------------------------------------------------------


def test_step_subnet_puts_each_address_in_the_next_24():
    pool = {"name": "p", "addresses": {"first": "198.18.96.10", "count": 3, "step_subnet": True}}
    assert plan_module.class_addresses(pool) == ["198.18.96.10", "198.18.97.10", "198.18.98.10"]
    row = {"name": "r", "addresses": {"first": "198.18.50.254", "count": 3}}
    assert plan_module.class_addresses(row) == ["198.18.50.254", "198.18.50.255", "198.18.51.0"]


def test_addresses_outside_the_simulation_network_are_refused():
    pool = {"name": "p", "addresses": {"first": "198.18.254.10", "count": 3, "step_subnet": True}}
    with pytest.raises(plan_module.TrafficError, match=re.escape("198.19.0.10")):
        plan_module.class_addresses(pool)


def test_every_address_has_its_class_and_helo(traffic, plan):
    expected = sum(c["addresses"]["count"] for c in traffic["sender_classes"])
    assert len(plan["addresses"]) == expected
    assert plan["addresses"]["198.18.96.10"] == {"helo": "mail-1.gpool.sim.test", "class": "pool-whitelisted"}
    assert plan["addresses"]["198.18.97.10"]["helo"] == "mail-2.gpool.sim.test"
    assert plan["addresses"]["198.18.200.3"] == {"helo": "pc-198-18-200-3.sim.test", "class": "bot-no-retry"}
    assert plan["addresses"]["198.18.60.78"]["helo"] == "dsl-198-18-60-78.dyn.sim.test"


def test_a_class_reusing_another_class_address_is_refused(traffic):
    broken = copy.deepcopy(traffic)
    class_named(broken, "bulk")["addresses"] = {"first": "198.18.96.10", "count": 1}
    with pytest.raises(plan_module.TrafficError, match=re.escape("198.18.96.10")):
        plan_module.build_plan(broken, 5)


def test_an_mx_that_is_not_a_mail_host_is_refused(traffic):
    broken = copy.deepcopy(traffic)
    broken["configurations"][0]["mx"] = ["nowhere-mx"]
    with pytest.raises(plan_module.TrafficError, match="nowhere-mx"):
        plan_module.build_plan(broken, 5)


# --- the same traffic for every configuration --------------------------------------------------


def test_every_configuration_receives_the_same_traffic(traffic, plan):
    per_message = defaultdict(dict)
    for message in plan["messages"]:
        _, class_name, n = message["id"].split("/")
        drawn = (
            message["sender"],
            message["ends"],
            [(attempt["at"], attempt["client"]) for attempt in message["attempts"]],
        )
        per_message[(class_name, n)][message["config"]] = drawn
    configurations = {c["name"] for c in traffic["configurations"]}
    assert len(configurations) == 5
    for key, drawn_by_config in per_message.items():
        assert drawn_by_config.keys() == configurations, key
        assert len(set(map(repr, drawn_by_config.values()))) == 1, key
    assert len(per_message) == sum(c["messages"] for c in traffic["sender_classes"])


def test_configurations_differ_in_their_mx_only(traffic, plan):
    mx_of = {c["name"]: {mx["address"] for mx in c["mx"]} for c in plan["configurations"]}
    assert mx_of["greylisting-whitelist"] == {"198.18.0.33", "198.18.0.34"}
    for message in plan["messages"]:
        assert {attempt["mx"] for attempt in message["attempts"]} <= mx_of[message["config"]], message["id"]


def test_primary_mx_takes_every_attempt(plan):
    for message in by_class(plan, "pool-not-whitelisted"):
        if message["config"] == "shared-greylist":
            assert {attempt["mx"] for attempt in message["attempts"]} == {"198.18.0.35"}


def test_alternate_mx_moves_each_retry_to_the_next_mx(plan):
    for message in by_class(plan, "mta-other-mx"):
        mx = [attempt["mx"] for attempt in message["attempts"]]
        assert len(mx) >= 2
        if message["config"] == "greylisting-whitelist":
            assert mx == ["198.18.0.33", "198.18.0.34"] * (len(mx) // 2) + ["198.18.0.33"] * (len(mx) % 2)
        if message["config"] == "no-greylisting":  # one MX: every retry goes to it
            assert set(mx) == {"198.18.0.31"}


# --- schedules ----------------------------------------------------------------------------------


def expected_waits(schedule: dict, count: int) -> list[list[float]]:
    waits = list(schedule.get("retries", []))
    while len(waits) < count:
        waits.append(schedule["then_every"])
    return waits[:count]


def test_attempts_follow_the_schedule_within_the_window_and_horizon(traffic, plan):
    scale = plan["scale"]
    checked = 0
    for message in plan["messages"]:
        sender_class = class_named(traffic, message["class"])
        schedule = traffic["schedules"][sender_class["schedule"]]
        times = [attempt["at"] for attempt in message["attempts"]]
        window = sender_class.get("arrival_window", traffic["arrival_window"]) / scale
        assert 0 <= times[0] <= window + TOLERANCE
        assert times[-1] <= plan["horizon"]
        assert times[-1] - times[0] <= schedule["give_up"] / scale + TOLERANCE
        waits = [later - earlier for earlier, later in itertools.pairwise(times)]
        for wait, (low, high) in zip(waits, expected_waits(schedule, len(waits)), strict=True):
            assert low / scale - TOLERANCE <= wait <= high / scale + TOLERANCE, message["id"]
            checked += 1
    assert checked > 1000


def test_the_waits_are_drawn_not_fixed(plan):
    first_waits = {
        round(message["attempts"][1]["at"] - message["attempts"][0]["at"], 3)
        for message in by_class(plan, "mta-postfix")
    }
    assert len(first_waits) > 3


def test_a_sender_that_retries_past_the_horizon_ends_at_the_horizon():
    schedule = {"retries": [[60, 60]], "then_every": [60, 60], "give_up": 600}
    message = only_message(small_traffic(schedule, horizon=300))
    assert [attempt["at"] for attempt in message["attempts"]] == [0, 1, 2, 3, 4, 5]
    assert message["ends"] == "horizon"


def test_giving_up_wins_when_the_next_attempt_is_past_both():
    schedule = {"retries": [[60, 60]], "then_every": [60, 60], "give_up": 120}
    message = only_message(small_traffic(schedule, horizon=120))
    assert [attempt["at"] for attempt in message["attempts"]] == [0, 1, 2]
    assert message["ends"] == "gave-up"


def test_a_sender_without_retries_tries_once_and_gives_up(plan):
    bots = by_class(plan, "bot-no-retry")
    assert len(bots) == 5 * 20
    for message in bots:
        assert len(message["attempts"]) == 1
        assert message["ends"] == "gave-up"


def test_long_schedules_are_cut_by_the_horizon(plan):
    assert {message["ends"] for message in by_class(plan, "mta-postfix")} == {"horizon"}
    assert {message["ends"] for message in by_class(plan, "bot-fixed-retry")} == {"gave-up"}
    for message in by_class(plan, "bot-fixed-retry"):
        assert len(message["attempts"]) == 4  # at 0, 120, 240 and 360 s: give_up 360 still tries


# --- addresses per attempt, senders -------------------------------------------------------------


def test_a_random_pool_sends_from_any_of_its_addresses_only(traffic, plan):
    pool = set(plan_module.class_addresses(class_named(traffic, "pool-not-whitelisted")))
    used = {attempt["client"] for m in by_class(plan, "pool-not-whitelisted") for attempt in m["attempts"]}
    assert used <= pool
    assert len(used) > len(pool) // 2
    switched = [m for m in by_class(plan, "pool-not-whitelisted") if len({a["client"] for a in m["attempts"]}) > 1]
    assert switched, "retries never came from another host of the pool"


def test_a_single_host_sender_keeps_its_address_and_names_itself(traffic, plan):
    addresses = plan_module.class_addresses(class_named(traffic, "mta-postfix"))
    for message in by_class(plan, "mta-postfix"):
        n = int(message["id"].rsplit("/", 1)[1])
        i = (n - 1) % len(addresses) + 1
        assert {attempt["client"] for attempt in message["attempts"]} == {addresses[i - 1]}
        assert message["sender"] == f"bob@pfx{i}.sim.test"


def test_message_ids_and_recipient(plan):
    ids = [message["id"] for message in plan["messages"]]
    assert len(ids) == len(set(ids)) == 5 * 108
    assert "greylisting-stock/bulk/6" in ids
    assert {message["recipient"] for message in plan["messages"]} == {"alice@lab.test"}
    assert {m["sender"] for m in by_class(plan, "bulk")} == {f"bounce-{n}@bulk.sim.test" for n in range(1, 7)}


def test_the_plan_is_reproducible_and_follows_the_seed(traffic, plan):
    assert plan_module.build_plan(copy.deepcopy(traffic), 5) == plan
    reseeded = copy.deepcopy(traffic)
    reseeded["seed"] += 1
    other = plan_module.build_plan(reseeded, 5)
    assert [m["attempts"] for m in other["messages"]] != [m["attempts"] for m in plan["messages"]]


# --- DNS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def records(traffic):
    return plan_module.dns_records(traffic)


def reverse(address: str) -> str:
    return ipaddress.ip_address(address).reverse_pointer + "."


def test_the_reverse_zone_is_declared_and_test_is_not(records):
    assert records[0] == 'local-zone: "18.198.in-addr.arpa." static'
    assert [line for line in records if line.startswith("local-zone:")] == [records[0]]


def test_pool_addresses_are_forward_confirmed(records):
    assert 'local-data: "10.96.18.198.in-addr.arpa. 300 IN PTR mail-1.gpool.sim.test."' in records
    assert 'local-data: "mail-1.gpool.sim.test. 300 IN A 198.18.96.10"' in records
    assert 'local-data: "10.103.18.198.in-addr.arpa. 300 IN PTR mail-8.gpool.sim.test."' in records
    assert 'local-data: "mail-8.gpool.sim.test. 300 IN A 198.18.103.10"' in records
    assert 'local-data: "out.bulk.sim.test. 300 IN A 198.18.40.5"' in records


def test_spf_is_published_as_a_single_quoted_txt(records):
    # unbound keeps a backslash in a double-quoted string: TXT needs the single quotes
    assert "local-data: 'gpool.sim.test. 300 IN TXT \"v=spf1 ip4:198.18.96.0/21 ~all\"'" in records
    assert "local-data: 'pfx3.sim.test. 300 IN TXT \"v=spf1 a:mx.pfx3.sim.test -all\"'" in records


def test_bots_have_no_reverse_dns_and_no_spf_but_resolvable_domains(records):
    for i in range(1, 21):
        assert not [line for line in records if reverse(f"198.18.200.{i}") in line]
        assert f'local-data: "shop{i}.sim.test. 300 IN A 198.18.200.{i}"' in records
    assert not [line for line in records if "shop1.sim.test. 300 IN TXT" in line]
    assert not [line for line in records if reverse("198.18.60.77") in line]  # mta-dynamic: no PTR either


def test_sender_domains_resolve(traffic, records):
    assert 'local-data: "gpool.sim.test. 300 IN A 198.18.96.10"' in records
    assert 'local-data: "hop4.sim.test. 300 IN A 198.18.52.4"' in records
    plan = plan_module.build_plan(traffic, 5)
    domains = {message["sender"].rsplit("@", 1)[1] for message in plan["messages"]}
    for domain in domains:
        assert [line for line in records if line.startswith(f'local-data: "{domain}. 300 IN A ')], domain


def test_no_record_is_repeated(records):
    assert len(records) == len(set(records))


# --- command line -------------------------------------------------------------------------------


def test_the_command_line_writes_the_plan_and_prints_the_records(tmp_path, capsys, plan):
    output = tmp_path / "plan.json"
    argv = ["plan", "--traffic", str(TRAFFIC), "--lab-greylist-delay", "5", "--output", str(output)]
    assert plan_module.main(argv) == 0
    assert json.loads(output.read_text()) == json.loads(json.dumps(plan))
    assert plan_module.main(["dns-records", "--traffic", str(TRAFFIC)]) == 0
    printed = capsys.readouterr().out.splitlines()
    # a conf.d file of its own: Debian's unbound.conf includes those with include-toplevel
    assert printed[0].startswith("#")
    assert printed[1] == "server:"
    assert printed[2:] == ["    " + line for line in plan_module.dns_records(plan_module.load_traffic(TRAFFIC))]


def test_the_command_line_fails_on_a_broken_traffic_file(tmp_path, capsys):
    broken = tmp_path / "traffic.yml"
    broken.write_text(TRAFFIC.read_text().replace("schedule: gmail", "schedule: yahoo"))
    argv = ["plan", "--traffic", str(broken), "--lab-greylist-delay", "5", "--output", str(tmp_path / "p.json")]
    assert plan_module.main(argv) == 1
    assert "yahoo" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()

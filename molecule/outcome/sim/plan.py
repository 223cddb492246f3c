#!/usr/bin/env python3
"""Expand molecule/outcome/traffic.yml into the plan of SMTP attempts that sim/driver.py sends.

Why a plan file: the driver runs in the senders container with nothing but python3, and every
random draw (arrival times, retry waits, pool addresses) must be made once, on the controller,
so that the run can be reproduced and every configuration receives the same traffic. The draws
for message n of a class come from a random.Random seeded with (seed, class, n) only, never
with the configuration: the configurations differ in their MX and in nothing else.

The clock is compressed: scale = real_greylist_delay / lab greylist delay (300 / 5 = 60), and
every real-world second of traffic.yml becomes 1/scale lab second in the plan.

Usage:
  plan.py plan --traffic traffic.yml --lab-greylist-delay 5 --output plan.json
  plan.py dns-records --traffic traffic.yml     # an unbound.conf.d file for the lab DNS server

Plan JSON (schema 1); every time is in lab seconds, attempt times are offsets from the run's
start (the driver adds its start time):
  {"schema": 1, "seed": 20261205, "scale": 60.0, "lab_greylist_delay": 5, "real_greylist_delay": 300,
   "arrival_window": 60.0, "horizon": 240.0,
   "configurations": [{"name": "greylisting-whitelist", "title": "...",
                       "mx": [{"name": "grey-mx1", "address": "198.18.0.33"}, ...]}],
   "classes": [{"name": "pool-whitelisted", "title": "...", "kind": "legitimate" | "bot",
                "schedule": "gmail", "address_choice": "random", "mx_choice": "primary"}],
   "addresses": {"198.18.96.10": {"helo": "mail-1.gpool.sim.test", "class": "pool-whitelisted"}},
   "messages": [{"id": "greylisting-whitelist/pool-whitelisted/1", "config": "...", "class": "...",
                 "sender": "user1@gpool.sim.test", "recipient": "alice@lab.test",
                 "ends": "gave-up" | "horizon",
                 "attempts": [{"at": 12.345, "client": "198.18.99.10", "mx": "198.18.0.33"}, ...]}]}
A message's later attempts are made only while the earlier ones were deferred (the driver
decides). "ends" says why the planned attempts stop: the sender's schedule gives up (or has no
more retries), or the next attempt would fall after the horizon (the sender would still retry).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import sys
from pathlib import Path

import yaml

SCHEMA = 1
# The simulation network: every sender address must be in it, the lab DNS server serves its
# reverse zone.
SIM_NETWORK = ipaddress.ip_network("198.18.0.0/16")
REVERSE_ZONE = "18.198.in-addr.arpa."
TTL = 300
ADDRESS_CHOICES = ("same", "random")
MX_CHOICES = ("primary", "alternate")


class TrafficError(ValueError):
    """traffic.yml does not describe a plan that can be built."""


def load_traffic(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as stream:
        traffic = yaml.safe_load(stream)
    if not isinstance(traffic, dict):
        raise TrafficError(f"{path}: not a mapping")
    return traffic


def letters(n: int) -> str:
    """n (1, 2, ... 27) as a letters-only name (a, b, ... ba): postgrey folds the digits of a
    local part (user1@ and user2@ are one sender to it, as VERP senders should be), so distinct
    users of a pool need names without digits."""
    name = ""
    while True:
        n, digit = divmod(n - 1, 26)
        name = chr(ord("a") + digit) + name
        if n == 0:
            return name


def fill(template: str, **values) -> str:
    """A traffic.yml template ({i}, {n}, {name}, {mta}, {address_dashed}) filled in."""
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise TrafficError(f"template {template!r}: cannot fill {exc} from {sorted(values)}") from exc


def class_addresses(sender_class: dict) -> list[str]:
    """The class's client addresses; index i (1-based) of the templates is position + 1.

    step_subnet: each next address is in the next /24 (a provider's pool spread over subnets),
    else the addresses are consecutive.
    """
    spec = sender_class["addresses"]
    first = ipaddress.ip_address(spec["first"])
    step = 256 if spec.get("step_subnet", False) else 1
    addresses = [first + k * step for k in range(int(spec["count"]))]
    outside = [str(address) for address in addresses if address not in SIM_NETWORK]
    if outside:
        raise TrafficError(f"class {sender_class['name']}: {outside} outside {SIM_NETWORK}")
    return [str(address) for address in addresses]


def ptr_name(sender_class: dict, i: int) -> str | None:
    """The reverse DNS name of the class's i-th address, None for ptr: false."""
    template = sender_class.get("ptr", False)
    return fill(template, i=i) if template else None


def helo_name(sender_class: dict, i: int, address: str) -> str:
    """A host with reverse DNS greets with its name, one without with its helo template."""
    name = ptr_name(sender_class, i)
    if name:
        return name
    if "helo" not in sender_class:
        raise TrafficError(f"class {sender_class['name']}: ptr: false needs a helo template")
    return fill(sender_class["helo"], i=i, address_dashed=address.replace(".", "-"))


def sender_domains(sender_class: dict) -> list[tuple[str, int, str]]:
    """(domain, i, address) for each sender domain: one per address when the domain has {i},
    else one, at the class's first address."""
    addresses = class_addresses(sender_class)
    template = sender_class["domain"]
    if "{i}" not in template:
        return [(template, 1, addresses[0])]
    return [(fill(template, i=i), i, address) for i, address in enumerate(addresses, start=1)]


def waits(schedule: dict):
    """The [min, max] waits after the first, second... failed attempt, then_every for ever."""
    yield from schedule.get("retries", [])
    then_every = schedule.get("then_every")
    if then_every:
        if then_every[0] <= 0:
            raise TrafficError(f"then_every {then_every}: the minimum wait must be positive")
        while True:
            yield then_every


def attempt_times(schedule: dict, first: float, horizon: float, rng: random.Random) -> tuple[list[float], str]:
    """Real-world attempt times of one message and why they stop ("gave-up" or "horizon").

    A retry later than give_up after the first attempt is not made: the sender gave up. The
    sender giving up wins over the horizon: "horizon" means the sender would still have tried.
    """
    times = [first]
    # The waits summed on their own: (first + 120 + 120 + 120) - first can exceed 360 in
    # floating point, and a sender retrying exactly at its give_up would lose that attempt.
    elapsed = 0.0
    for low, high in waits(schedule):
        elapsed += rng.uniform(low, high)
        if elapsed > schedule["give_up"]:
            return times, "gave-up"
        if first + elapsed > horizon:
            return times, "horizon"
        times.append(first + elapsed)
    return times, "gave-up"  # no retry left and no then_every


def message_traffic(traffic: dict, sender_class: dict, n: int) -> dict:
    """What message n of a class does, the same in every configuration: attempt times (real
    seconds), client addresses, envelope sender and how the attempts end."""
    rng = random.Random(f"{traffic['seed']}/{sender_class['name']}/{n}")
    schedule = traffic["schedules"][sender_class["schedule"]]
    # A class may spread its messages over a window of its own (a slow retry schedule needs a
    # longer one for a message to come after its MTA's first delivery).
    first = rng.uniform(0, sender_class.get("arrival_window", traffic["arrival_window"]))
    times, ends = attempt_times(schedule, first, traffic["horizon"], rng)
    addresses = class_addresses(sender_class)
    if sender_class["address_choice"] == "random":
        # a provider's next attempt comes from any host of its pool
        indexes = [rng.randrange(len(addresses)) + 1 for _ in times]
    else:
        indexes = [(n - 1) % len(addresses) + 1] * len(times)
    return {
        "times": times,
        "clients": [addresses[i - 1] for i in indexes],
        "sender": fill(sender_class["senders"], n=n, name=letters(n), mta=indexes[0]),
        "ends": ends,
    }


def mx_for_attempt(configuration: list[dict], mx_choice: str, k: int) -> dict:
    """The MX of attempt k (0-based): always the first, or each retry on the next one."""
    if mx_choice == "alternate":
        return configuration[k % len(configuration)]
    return configuration[0]


def check_traffic(traffic: dict) -> None:
    """The cross-references a typo would break, reported before anything is built."""
    for key in ("real_greylist_delay", "arrival_window", "horizon", "seed", "recipient", "mail_hosts"):
        if key not in traffic:
            raise TrafficError(f"traffic: {key} missing")
    if traffic["arrival_window"] > traffic["horizon"]:
        raise TrafficError("traffic: arrival_window after the horizon")
    for configuration in traffic["configurations"]:
        unknown = [name for name in configuration["mx"] if name not in traffic["mail_hosts"]]
        if unknown or not configuration["mx"]:
            raise TrafficError(f"configuration {configuration['name']}: MX {unknown or 'missing'} not in mail_hosts")
    owners: dict[str, str] = {}
    for sender_class in traffic["sender_classes"]:
        name = sender_class["name"]
        if sender_class["schedule"] not in traffic["schedules"]:
            raise TrafficError(f"class {name}: no schedule {sender_class['schedule']}")
        if sender_class["address_choice"] not in ADDRESS_CHOICES:
            raise TrafficError(f"class {name}: address_choice must be one of {ADDRESS_CHOICES}")
        if sender_class.get("mx_choice", "primary") not in MX_CHOICES:
            raise TrafficError(f"class {name}: mx_choice must be one of {MX_CHOICES}")
        for address in class_addresses(sender_class):
            if address in owners or address in traffic["mail_hosts"].values():
                raise TrafficError(f"class {name}: {address} already used by {owners.get(address, 'a mail host')}")
            owners[address] = name


def build_plan(traffic: dict, lab_greylist_delay: float) -> dict:
    if lab_greylist_delay <= 0:
        raise TrafficError("the lab greylist delay must be positive")
    check_traffic(traffic)
    scale = traffic["real_greylist_delay"] / lab_greylist_delay

    def lab(seconds: float) -> float:
        return round(seconds / scale, 3)

    classes = traffic["sender_classes"]
    configurations = [
        {
            "name": configuration["name"],
            "title": configuration.get("title", configuration["name"]),
            "mx": [{"name": name, "address": traffic["mail_hosts"][name]} for name in configuration["mx"]],
        }
        for configuration in traffic["configurations"]
    ]
    addresses = {}
    for sender_class in classes:
        for i, address in enumerate(class_addresses(sender_class), start=1):
            addresses[address] = {"helo": helo_name(sender_class, i, address), "class": sender_class["name"]}
    # drawn once per class and message, then sent to every configuration
    traffic_of = {
        (sender_class["name"], n): message_traffic(traffic, sender_class, n)
        for sender_class in classes
        for n in range(1, sender_class["messages"] + 1)
    }
    messages = []
    for configuration in configurations:
        for sender_class in classes:
            mx_choice = sender_class.get("mx_choice", "primary")
            for n in range(1, sender_class["messages"] + 1):
                drawn = traffic_of[(sender_class["name"], n)]
                attempts = []
                for k, (at, client) in enumerate(zip(drawn["times"], drawn["clients"], strict=True)):
                    mx = mx_for_attempt(configuration["mx"], mx_choice, k)
                    attempts.append({"at": lab(at), "client": client, "mx": mx["address"]})
                messages.append(
                    {
                        "id": f"{configuration['name']}/{sender_class['name']}/{n}",
                        "config": configuration["name"],
                        "class": sender_class["name"],
                        "sender": drawn["sender"],
                        "recipient": traffic["recipient"],
                        "ends": drawn["ends"],
                        "attempts": attempts,
                    }
                )
    return {
        "schema": SCHEMA,
        "seed": traffic["seed"],
        "scale": scale,
        "lab_greylist_delay": lab_greylist_delay,
        "real_greylist_delay": traffic["real_greylist_delay"],
        "arrival_window": lab(traffic["arrival_window"]),
        "horizon": lab(traffic["horizon"]),
        "configurations": configurations,
        "classes": [
            {
                "name": sender_class["name"],
                "title": sender_class.get("title", sender_class["name"]),
                "kind": sender_class["kind"],
                "schedule": sender_class["schedule"],
                "address_choice": sender_class["address_choice"],
                "mx_choice": sender_class.get("mx_choice", "primary"),
            }
            for sender_class in classes
        ],
        "addresses": addresses,
        "messages": messages,
    }


def record(name: str, rtype: str, rdata: str) -> str:
    return f'local-data: "{name}. {TTL} IN {rtype} {rdata}"'


def txt_record(name: str, text: str) -> str:
    """A TXT record for unbound: the RR string in single quotes, the text in double quotes.

    unbound keeps a backslash of its config strings as it is, so an escaped quote inside a
    double-quoted local-data would reach the RR parser as \\" and split the text at its spaces
    (unbound.conf(5): use single quotes for TXT records).
    """
    if '"' in text or "'" in text or "\\" in text or len(text) > 255:
        raise TrafficError(f"TXT {name}: {text!r} needs quoting or splitting this plan does not do")
    return f"local-data: '{name}. {TTL} IN TXT \"{text}\"'"


def dns_records(traffic: dict) -> list[str]:
    """unbound server: lines for the senders: the reverse zone of the simulation network, PTR and
    forward-confirming A for each address with reverse DNS, and for each sender domain an A
    (reject_unknown_sender_domain passes) and its SPF TXT when the class publishes one."""
    check_traffic(traffic)
    lines = [f'local-zone: "{REVERSE_ZONE}" static']
    for sender_class in traffic["sender_classes"]:
        for i, address in enumerate(class_addresses(sender_class), start=1):
            name = ptr_name(sender_class, i)
            if name:
                lines.append(record(ipaddress.ip_address(address).reverse_pointer, "PTR", f"{name}."))
                lines.append(record(name, "A", address))
        for domain, i, address in sender_domains(sender_class):
            lines.append(record(domain, "A", address))
            if sender_class.get("spf"):
                lines.append(txt_record(domain, fill(sender_class["spf"], i=i)))
    return list(dict.fromkeys(lines))  # a PTR name that is also a sender domain: one A record


def unbound_conf(lines: list[str]) -> str:
    """The records as a file of their own: Debian's unbound.conf reads unbound.conf.d/*.conf with
    include-toplevel, so the file opens its server: clause itself."""
    header = "# The outcome simulation's senders (molecule/outcome/sim/plan.py dns-records).\nserver:\n"
    return header + "".join(f"    {line}\n" for line in lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plan.py", description="Expand traffic.yml for the outcome scenario.")
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="write the plan JSON for sim/driver.py")
    plan.add_argument("--traffic", required=True)
    plan.add_argument(
        "--lab-greylist-delay", type=float, required=True, help="seconds; the mail hosts' mailguard_greylist_delay"
    )
    plan.add_argument("--output", required=True, help="plan JSON ('-' for stdout)")
    records = commands.add_parser("dns-records", help="print the unbound lines for the senders")
    records.add_argument("--traffic", required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        traffic = load_traffic(args.traffic)
        if args.command == "dns-records":
            print(unbound_conf(dns_records(traffic)), end="")
            return 0
        plan = build_plan(traffic, args.lab_greylist_delay)
    except (TrafficError, KeyError, TypeError) as exc:
        print(f"plan.py: {args.traffic}: {exc!r}", file=sys.stderr)
        return 1
    text = json.dumps(plan, indent=1) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""outcome-driver: send the outcome simulation's traffic (a plan from sim/plan.py) as real SMTP.

Runs in the senders container (installed as /usr/local/bin/outcome-driver), standard library
only. The scenario has already put every client address of the plan on the interface; the
driver checks that it can bind them all before it starts, and adds nothing to the network.

Every message runs on its own schedule, all at once, the way many independent MTAs would: one
thread per message sleeps until its next planned attempt (at most --workers SMTP sessions are
open at a time). An attempt whose time has passed (a slow earlier session, a full pool) is sent
at once and its real time recorded. A message is retried only after a deferral:
  2xx to the end of DATA      -> delivered, done
  4xx anywhere, or no answer  -> deferred (code 0, text = the error): the next planned attempt
  5xx anywhere                -> rejected, done
A message whose planned attempts were all deferred ends as the plan says: "gave-up" (the
sender stopped retrying) or "horizon" (the run ended first).

  outcome-driver --plan plan.json --results results.jsonl [--start-in 2] [--workers 64]
                 [--port 25] [--timeout 30]

Results JSONL, one line per message, written when the message is done (the file is complete
when the driver exits); times are epoch seconds, "planned" is the plan's lab offset:
  {"id", "config", "class", "sender", "recipient", "message_id", "start", "first_attempt",
   "attempts": [{"at", "planned", "client", "mx", "stage": "CONNECT"|"EHLO"|"MAIL"|"RCPT"|"DATA",
                 "code", "text", "outcome": "delivered"|"deferred"|"rejected", "duration"}],
   "outcome": "delivered"|"rejected"|"gave-up"|"horizon", "delivered_at", "delay"}
SMTP trouble is data: exit status 0 once every message is done, 1 for a bad plan or command
line (or a client address the container does not have), 1 as well if a message hit a bug in
the driver (its line then has "outcome": "error" and the traceback's last line in "error").
"""

from __future__ import annotations

import argparse
import email.utils
import json
import re
import smtplib
import socket
import sys
import threading
import time
import traceback

SCHEMA = 1
PROGRESS_EVERY = 15.0
ENDS = ("gave-up", "horizon")


class PlanError(Exception):
    """The plan cannot be run."""


class Parser(argparse.ArgumentParser):
    """A bad command line exits 1 like a bad plan (argparse's own status would be 2)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def load_plan(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as stream:
            plan = json.load(stream)
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path}: {exc}") from exc
    check_plan(plan)
    return plan


def check_plan(plan: dict) -> None:
    """The fields the driver relies on, so that a bad plan fails before the first session."""
    if not isinstance(plan, dict) or plan.get("schema") != SCHEMA:
        raise PlanError(f"not a schema {SCHEMA} plan")
    addresses = plan.get("addresses", {})
    nameless = [address for address, host in addresses.items() if not host.get("helo")]
    if nameless:
        raise PlanError(f"addresses without a helo name: {nameless}")
    for message in plan.get("messages", []):
        missing = {"id", "config", "class", "sender", "recipient", "ends", "attempts"} - message.keys()
        if missing:
            raise PlanError(f"message {message.get('id')}: {sorted(missing)} missing")
        if message["ends"] not in ENDS or not message["attempts"]:
            raise PlanError(f"message {message['id']}: ends {message['ends']!r}, {len(message['attempts'])} attempts")
        times = [attempt["at"] for attempt in message["attempts"]]
        if times != sorted(times) or times[0] < 0:
            raise PlanError(f"message {message['id']}: attempt times {times} out of order")
        for attempt in message["attempts"]:
            if attempt.get("client") not in addresses or not attempt.get("mx"):
                raise PlanError(f"message {message['id']}: attempt {attempt} has no known client or no mx")
    if not plan.get("messages"):
        raise PlanError("no messages")


def missing_clients(addresses) -> list[str]:
    """The client addresses this host cannot send from (not on any interface)."""
    missing = []
    for address in addresses:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((address, 0))
            except OSError:
                missing.append(address)
    return missing


def message_id(plan_id: str) -> str:
    """The Message-ID of a plan message: its id as a dot-atom, so the mail logs name it."""
    local = re.sub(r"[^A-Za-z0-9-]+", ".", plan_id).strip(".")
    return f"<{local}@sim.test>"


def build_message(message: dict, msgid: str) -> bytes:
    headers = [
        f"From: <{message['sender']}>",
        f"To: <{message['recipient']}>",
        f"Subject: outcome simulation {message['id']}",
        f"Date: {email.utils.formatdate(localtime=False)}",
        f"Message-ID: {msgid}",
    ]
    text = "\r\n".join(headers) + f"\r\n\r\nmailguard outcome simulation, {message['class']} via {message['config']}"
    return smtplib.quotedata(text).encode() + b"\r\n.\r\n"


def first_line(text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def decision(stage: str, code: int, text: bytes | str, delivered: bool = False) -> dict:
    """The reply that decided an attempt; only a 5xx stops the sender for good."""
    if delivered:
        outcome = "delivered"
    elif 500 <= code < 600:
        outcome = "rejected"
    else:
        outcome = "deferred"
    return {"stage": stage, "code": code, "text": first_line(text), "outcome": outcome}


def is_2xx(code: int) -> bool:
    return 200 <= code < 300


def smtp_attempt(client: str, helo: str, mx: str, port: int, timeout: float, message: dict, body: bytes) -> dict:
    """One SMTP session from client to mx, as far as the server lets it go."""
    # local_hostname: else smtplib looks the container's own name up in DNS for nothing
    smtp = smtplib.SMTP(local_hostname=helo, timeout=timeout, source_address=(client, 0))
    stage = "CONNECT"
    try:
        code, text = smtp.connect(mx, port)
        if not is_2xx(code):
            return decision(stage, code, text)
        stage = "EHLO"
        code, text = smtp.ehlo(helo)
        if not is_2xx(code):
            return decision(stage, code, text)
        stage = "MAIL"
        code, text = smtp.mail(message["sender"])
        if not is_2xx(code):
            return decision(stage, code, text)
        stage = "RCPT"
        code, text = smtp.rcpt(message["recipient"])
        if not is_2xx(code):
            return decision(stage, code, text)
        stage = "DATA"
        code, text = smtp.docmd("DATA")
        if code != 354:
            return decision(stage, code, text)
        smtp.send(body)
        code, text = smtp.getreply()
        return decision(stage, code, text, delivered=is_2xx(code))
    except OSError as exc:  # refused, timed out, hung up (smtplib's errors are OSErrors too)
        return decision(stage, 0, f"{type(exc).__name__}: {exc}")
    finally:
        hang_up(smtp)


def hang_up(smtp: smtplib.SMTP) -> None:
    """QUIT like a polite MTA; a server that already hung up is no news."""
    try:
        if smtp.sock is not None:
            smtp.quit()
    except OSError:
        pass
    finally:
        smtp.close()


class Run:
    """What every message thread shares: the clock, the session limit and the results file."""

    def __init__(self, plan: dict, results, start: float, workers: int, port: int, timeout: float) -> None:
        self.plan = plan
        self.results = results
        self.start = start
        self.port = port
        self.timeout = timeout
        self.sessions = threading.BoundedSemaphore(workers)
        self.done = threading.Condition()
        self.finished: dict[str, int] = {}
        self.attempts = 0

    def helo(self, client: str) -> str:
        return self.plan["addresses"][client]["helo"]

    def finish(self, result: dict) -> None:
        with self.done:
            self.results.write(json.dumps(result) + "\n")
            self.results.flush()
            self.finished[result["outcome"]] = self.finished.get(result["outcome"], 0) + 1
            self.attempts += len(result["attempts"])
            self.done.notify_all()

    def count(self) -> int:
        return sum(self.finished.values())

    def summary(self) -> str:
        outcomes = ", ".join(f"{name} {number}" for name, number in sorted(self.finished.items()))
        return f"{self.count()}/{len(self.plan['messages'])} messages done ({outcomes}), {self.attempts} sessions"

    def wait(self, seconds: float) -> bool:
        """True once every message is done; else after seconds."""
        total = len(self.plan["messages"])
        with self.done:
            return self.done.wait_for(lambda: self.count() >= total, timeout=seconds)


def run_message(run: Run, message: dict) -> dict:
    msgid = message_id(message["id"])
    result = {
        "id": message["id"],
        "config": message["config"],
        "class": message["class"],
        "sender": message["sender"],
        "recipient": message["recipient"],
        "message_id": msgid,
        "start": run.start,
        "first_attempt": None,
        "attempts": [],
        "outcome": message["ends"],  # unless an attempt decides otherwise
        "delivered_at": None,
        "delay": None,
    }
    body = build_message(message, msgid)
    for planned in message["attempts"]:
        time.sleep(max(0.0, run.start + planned["at"] - time.time()))
        with run.sessions:
            at = time.time()
            reply = smtp_attempt(
                planned["client"], run.helo(planned["client"]), planned["mx"], run.port, run.timeout, message, body
            )
            ended = time.time()
        attempt = {"at": at, "planned": planned["at"], "client": planned["client"], "mx": planned["mx"], **reply}
        attempt["duration"] = round(ended - at, 3)
        result["attempts"].append(attempt)
        if reply["outcome"] == "deferred":
            continue
        result["outcome"] = reply["outcome"]
        if reply["outcome"] == "delivered":
            result["delivered_at"] = ended
        break
    result["first_attempt"] = result["attempts"][0]["at"]
    if result["delivered_at"] is not None:
        result["delay"] = result["delivered_at"] - result["first_attempt"]
    return result


def message_thread(run: Run, message: dict) -> None:
    """Every message is counted done, even one that hit a bug: the driver must not wait for ever."""
    try:
        result = run_message(run, message)
    except Exception as exc:
        traceback.print_exc()
        result = {"id": message["id"], "config": message["config"], "class": message["class"], "attempts": []}
        result.update(outcome="error", error=f"{type(exc).__name__}: {exc}")
    run.finish(result)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog="outcome-driver", description="Send the outcome simulation's plan as real SMTP.")
    parser.add_argument("--plan", required=True, help="plan JSON from sim/plan.py")
    parser.add_argument("--results", required=True, help="results JSONL, one line per message")
    parser.add_argument("--start-in", type=float, default=2.0, help="seconds from now to the plan's time 0")
    parser.add_argument("--workers", type=int, default=64, help="SMTP sessions open at most at a time")
    parser.add_argument("--port", type=int, default=25)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per SMTP reply")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.start_in < 0 or args.timeout <= 0:
        parser.error("--workers must be >= 1, --start-in >= 0, --timeout > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        plan = load_plan(args.plan)
    except PlanError as exc:
        print(f"outcome-driver: bad plan: {exc}", file=sys.stderr)
        return 1
    missing = missing_clients(plan["addresses"])
    if missing:
        print(f"outcome-driver: not on this host, cannot send from: {' '.join(missing)}", file=sys.stderr)
        return 1
    with open(args.results, "w", encoding="utf-8") as results:
        run = Run(plan, results, time.time() + args.start_in, args.workers, args.port, args.timeout)
        for message in plan["messages"]:
            threading.Thread(target=message_thread, args=(run, message), name=message["id"], daemon=True).start()
        while not run.wait(PROGRESS_EVERY):
            print(f"outcome-driver: {run.summary()}", file=sys.stderr, flush=True)
    print(f"outcome-driver: finished: {run.summary()}", file=sys.stderr, flush=True)
    return 1 if run.finished.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())

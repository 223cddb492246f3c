"""molecule/outcome/sim/driver.py against a greylisting SMTP stand-in on loopback.

The stand-in greylists like postgrey on a short clock: RCPT is answered 450 the first time a
(client address, sender) pair is seen and until GREYLIST_DELAY has passed, 250 after. The
driver sends from 127.0.0.2 and 127.0.0.3 (Linux routes all of 127/8 to lo), so the server
sees the client addresses the plan names, as the mail hosts do in the scenario.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

DRIVER = Path(__file__).resolve().parents[2] / "molecule/outcome/sim/driver.py"
PLANNER = DRIVER.with_name("plan.py")
_spec = importlib.util.spec_from_file_location("outcome_driver", DRIVER)
driver = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(driver)

GREYLIST_DELAY = 0.3
SLOW_REPLY = 0.4  # a sender with "slow" in it waits this long for each RCPT reply
HELO = {"127.0.0.2": "mta-two.sim.test", "127.0.0.3": "pc-127-0-0-3.sim.test"}
RESULT_KEYS = {
    "id", "config", "class", "sender", "recipient", "message_id", "start", "first_attempt",
    "attempts", "outcome", "delivered_at", "delay",
}  # fmt: skip
ATTEMPT_KEYS = {"at", "planned", "client", "mx", "stage", "code", "text", "outcome", "duration"}


class GreylistServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), GreylistHandler)
        self.lock = threading.Lock()
        self.first_seen: dict[tuple[str, str], float] = {}
        self.helos: dict[str, set[str]] = {}
        self.messages: list[str] = []

    def greylisted(self, client: str, sender: str) -> bool:
        with self.lock:
            first = self.first_seen.setdefault((client, sender), time.monotonic())
        return time.monotonic() - first < GREYLIST_DELAY


class GreylistHandler(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        client = self.client_address[0]
        sender = ""
        self.reply("220 stand-in ESMTP")
        while line := self.rfile.readline():
            command = line.decode().strip()
            verb = command[:4].upper()
            if verb == "EHLO":
                self.server.helos.setdefault(client, set()).add(command[5:])
                self.reply("250-stand-in\r\n250 8BITMIME")
            elif verb == "MAIL":
                sender = command.partition("<")[2].rstrip(">")
                self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                self.rcpt(client, sender)
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                self.server.messages.append(self.read_message())
                self.reply("250 2.0.0 Ok: queued")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 Error: command not recognized")

    def rcpt(self, client: str, sender: str) -> None:
        if "slow" in sender:
            time.sleep(SLOW_REPLY)
        if "reject" in sender:
            self.reply("554 5.7.1 <reject@c.test>: Sender address rejected: go away")
        elif self.server.greylisted(client, sender):
            self.reply("450 4.2.0 <alice@lab.test>: Recipient address rejected: Greylisted\r\n450 4.2.0 see you")
        else:
            self.reply("250 2.1.5 Ok")

    def read_message(self) -> str:
        lines = []
        while (line := self.rfile.readline()) not in (b".\r\n", b""):
            lines.append(line.decode())
        return "".join(lines)


def message(name: str, client: str, sender: str, times: list[float], ends: str, mx: str = "127.0.0.1") -> dict:
    return {
        "id": f"loop/{name}/1",
        "config": "loop",
        "class": name,
        "sender": sender,
        "recipient": "alice@lab.test",
        "ends": ends,
        "attempts": [{"at": at, "client": client, "mx": mx} for at in times],
    }


PLAN = {
    "schema": 1,
    "addresses": {address: {"helo": helo, "class": "any"} for address, helo in HELO.items()},
    "messages": [
        message("retrying", "127.0.0.2", "legit@a.test", [0.0, 0.5, 1.0], "horizon"),
        message("no-retry", "127.0.0.3", "bot@b.test", [0.0], "gave-up"),
        message("rejected", "127.0.0.3", "reject@c.test", [0.0, 0.4], "horizon"),
        # the second attempt is due while the first session still waits for its RCPT reply
        message("late", "127.0.0.2", "slow@d.test", [0.0, 0.1], "horizon"),
        # nothing listens on 127.0.0.9: no answer at all is a deferral too
        message("unreachable", "127.0.0.2", "legit@e.test", [0.0], "horizon", mx="127.0.0.9"),
    ],
}


@pytest.fixture(scope="module")
def server():
    server = GreylistServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def run(server, tmp_path_factory):
    """One driver run over PLAN; results by message class."""
    directory = tmp_path_factory.mktemp("driver")
    plan, results = directory / "plan.json", directory / "results.jsonl"
    plan.write_text(json.dumps(PLAN))
    port = str(server.server_address[1])
    status = driver.main(["--plan", str(plan), "--results", str(results), "--start-in", "0.2", "--port", port])
    lines = results.read_text().splitlines()
    return status, {json.loads(line)["class"]: json.loads(line) for line in lines}, len(lines)


def test_the_run_ends_with_one_complete_line_per_message(run):
    status, results, lines = run
    assert status == 0
    assert lines == len(PLAN["messages"])
    assert results.keys() == {"retrying", "no-retry", "rejected", "late", "unreachable"}
    for result in results.values():
        assert result.keys() == RESULT_KEYS, result["id"]
        for attempt in result["attempts"]:
            assert attempt.keys() == ATTEMPT_KEYS, result["id"]
        assert result["first_attempt"] == result["attempts"][0]["at"]


def test_a_greylisted_message_is_delivered_on_its_retry(run, server):
    result = run[1]["retrying"]
    first, retry = result["attempts"]  # delivered: the third planned attempt is not made
    assert (first["stage"], first["code"], first["outcome"]) == ("RCPT", 450, "deferred")
    assert first["text"] == "4.2.0 <alice@lab.test>: Recipient address rejected: Greylisted"
    assert (retry["stage"], retry["code"], retry["outcome"]) == ("DATA", 250, "delivered")
    assert result["outcome"] == "delivered"
    assert result["delay"] == pytest.approx(0.5, abs=0.15)
    assert result["delay"] == pytest.approx(result["delivered_at"] - result["first_attempt"])
    assert first["at"] - result["start"] == pytest.approx(0.0, abs=0.1)
    assert retry["at"] - result["start"] == pytest.approx(0.5, abs=0.1)
    assert [attempt["planned"] for attempt in result["attempts"]] == [0.0, 0.5]
    assert server.helos["127.0.0.2"] == {"mta-two.sim.test"}


def test_the_delivered_message_has_its_headers(run, server):
    [text] = [m for m in server.messages if "legit@a.test" in m]
    assert "Message-ID: <loop.retrying.1@sim.test>\r\n" in text
    assert "From: <legit@a.test>\r\nTo: <alice@lab.test>\r\n" in text
    assert "\r\nDate: " in text
    assert run[1]["retrying"]["message_id"] == "<loop.retrying.1@sim.test>"


def test_a_sender_that_never_retries_gives_up_after_one_deferral(run, server):
    result = run[1]["no-retry"]
    [attempt] = result["attempts"]
    assert (attempt["stage"], attempt["code"], attempt["outcome"]) == ("RCPT", 450, "deferred")
    assert attempt["client"] == "127.0.0.3"
    assert result["outcome"] == "gave-up"
    assert result["delivered_at"] is None and result["delay"] is None
    assert server.helos["127.0.0.3"] == {"pc-127-0-0-3.sim.test"}


def test_a_rejection_stops_the_retries(run):
    result = run[1]["rejected"]
    [attempt] = result["attempts"]
    assert (attempt["stage"], attempt["code"], attempt["outcome"]) == ("RCPT", 554, "rejected")
    assert result["outcome"] == "rejected"


def test_an_attempt_whose_time_has_passed_is_sent_at_once(run):
    result = run[1]["late"]
    first, late = result["attempts"]
    assert first["duration"] >= SLOW_REPLY
    assert late["planned"] == 0.1
    assert late["at"] - result["start"] >= SLOW_REPLY  # not at 0.1: the first session was still on
    assert late["at"] - (first["at"] + first["duration"]) < 0.1  # but right after it
    assert result["outcome"] == "delivered"


def test_no_answer_is_a_deferral_with_code_0(run):
    result = run[1]["unreachable"]
    [attempt] = result["attempts"]
    assert (attempt["stage"], attempt["code"], attempt["outcome"]) == ("CONNECT", 0, "deferred")
    assert "refused" in attempt["text"].lower()
    assert result["outcome"] == "horizon"


# --- bad plans and command lines ----------------------------------------------------------------


def write_plan(tmp_path: Path, plan: dict) -> list[str]:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return ["--plan", str(path), "--results", str(tmp_path / "results.jsonl")]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda plan: plan.update(schema=2), "schema"),
        (lambda plan: plan["messages"][0]["attempts"].reverse(), "out of order"),
        (lambda plan: plan["messages"][1].update(ends="later"), "ends"),
        (lambda plan: plan["messages"][1]["attempts"][0].update(client="127.0.0.4"), "no known client"),
        (lambda plan: plan["messages"][1].pop("sender"), "sender"),
        (lambda plan: plan["addresses"]["127.0.0.3"].pop("helo"), "helo"),
    ],
)
def test_a_bad_plan_exits_1_before_sending(tmp_path, capsys, change, complaint):
    plan = json.loads(json.dumps(PLAN))
    change(plan)
    assert driver.main(write_plan(tmp_path, plan)) == 1
    assert complaint in capsys.readouterr().err
    assert not (tmp_path / "results.jsonl").exists()


def test_a_client_address_the_host_does_not_have_exits_1(tmp_path, capsys):
    plan = json.loads(json.dumps(PLAN))
    plan["addresses"]["192.0.2.1"] = {"helo": "nowhere.sim.test", "class": "any"}
    assert driver.main(write_plan(tmp_path, plan)) == 1
    assert "192.0.2.1" in capsys.readouterr().err


def test_the_script_runs_as_a_program_and_a_bad_command_line_exits_1(tmp_path):
    assert os.access(DRIVER, os.X_OK)
    assert DRIVER.read_text().startswith("#!/usr/bin/env python3\n")
    missing = subprocess.run([sys.executable, DRIVER, "--plan", str(tmp_path / "none.json")], capture_output=True)
    assert missing.returncode == 1
    not_a_plan = subprocess.run([sys.executable, DRIVER, *write_plan(tmp_path, {})], capture_output=True)
    assert not_a_plan.returncode == 1
    assert b"not a schema 1 plan" in not_a_plan.stderr


def test_the_driver_needs_nothing_but_the_standard_library():
    tree = ast.parse(DRIVER.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names
    assert imported >= {"smtplib", "threading"}


def test_a_plan_from_plan_py_is_one_the_driver_accepts(tmp_path):
    output = tmp_path / "plan.json"
    traffic = PLANNER.parent.parent / "traffic.yml"
    subprocess.run(
        [sys.executable, PLANNER, "plan", "--traffic", traffic, "--lab-greylist-delay", "5", "--output", output],
        check=True,
    )
    plan = driver.load_plan(str(output))
    assert len(plan["messages"]) == 5 * 108


@pytest.mark.parametrize(
    ("plan_id", "expected"),
    [
        ("shared-greylist/pool-whitelisted/12", "<shared-greylist.pool-whitelisted.12@sim.test>"),
        ("a b//c_d", "<a.b.c.d@sim.test>"),
    ],
)
def test_message_ids_are_dot_atoms(plan_id, expected):
    assert driver.message_id(plan_id) == expected

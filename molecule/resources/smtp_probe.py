#!/usr/bin/env python3
"""smtp-probe: one real SMTP dialogue (or a burst of connections), printed as JSON.

Runs inside a lab client container (standard library only). Every reply is recorded, 4xx and
5xx included, and the dialogue goes on as a real client would: no RCPT after a refused MAIL,
no DATA without an accepted recipient. A server that hangs up ends the dialogue; that too is
recorded. The tests read the JSON.

Dialogue:
  smtp-probe --server 172.30.53.25 --ehlo mta.legit.test --from a@legit.test \
      --to alice@lab.test --data
  {"server": "172.30.53.25:25", "steps": [
     {"command": "CONNECT", "code": 220, "text": "mx1.lab.test ESMTP Postfix"},
     {"command": "EHLO mta.legit.test", "code": 250, "text": "..."},
     {"command": "MAIL FROM:<a@legit.test>", "code": 250, "text": "2.1.0 Ok"},
     {"command": "RCPT TO:<alice@lab.test>", "code": 450, "text": "4.2.0 ... Greylisted ..."},
     {"command": "QUIT", "code": 221, "text": "2.0.0 Bye"}]}

Burst (rate limits): smtp-probe --server 172.30.53.25 --ehlo flood.legit.test --connections 12
  {"server": ..., "connections": [{"banner": {"code": 220, ...}, "ehlo": {...}}, ...]}

Exit status: 0 when the server answered (whatever it answered), 1 when no connection could be
made, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import smtplib
import socket
import sys
import time

CONNECT = "CONNECT"


class Dialogue:
    """An SMTP session that records each command with the server's reply."""

    def __init__(self, server: str, port: int, timeout: float, source: str | None = None) -> None:
        self.server = server
        self.port = port
        self.timeout = timeout
        # The client address: one of the container's own (postscreen's tests use extra ones).
        self.source = (source, 0) if source else None
        self.smtp = smtplib.SMTP(timeout=timeout, source_address=self.source)
        self.steps: list[dict] = []
        self.open = False

    def record(self, command: str, code: int | None, text: str) -> dict:
        step = {"command": command, "code": code, "text": text}
        self.steps.append(step)
        return step

    def connect(self) -> dict:
        try:
            code, text = self.smtp.connect(self.server, self.port)
        except smtplib.SMTPServerDisconnected as exc:
            return self.record(CONNECT, None, f"disconnected: {exc}")
        self.open = True
        return self.record(CONNECT, code, decode(text))

    def pregreet(self, line: str) -> dict:
        """Connect and send line at once, before the server's greeting, as bots do (postscreen's
        pregreet test); then read the greeting."""
        sock = socket.create_connection((self.server, self.port), self.timeout, self.source)
        sock.sendall(line.encode() + b"\r\n")
        self.smtp.sock = sock
        self.open = True
        self.record(f"{line} (before the greeting)", None, "sent")
        return self.reply_to(CONNECT)

    def reply_to(self, line: str) -> dict:
        """Read a reply and record it for line: the greeting (CONNECT), or a line sent earlier."""
        try:
            code, text = self.smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.open = False
            return self.record(line, None, f"disconnected: {exc}")
        return self.record(line, code, decode(text))

    def command(self, line: str) -> dict:
        """Send one command line; a hang-up or a timeout ends the session."""
        if not self.open:
            return self.record(line, None, "not sent: the session is closed")
        try:
            code, text = self.smtp.docmd(line)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.open = False
            return self.record(line, None, f"disconnected: {exc}")
        if code == 421:  # the server closes the session after a 421
            self.open = False
        return self.record(line, code, decode(text))

    def message(self, body: bytes, raw_tail: bytes = b"") -> dict:
        """Send the message after a 354 to DATA (dot-stuffed by smtplib.quotedata, which also turns
        every bare LF into CRLF); raw_tail goes out as it is, just before the final CRLF.CRLF."""
        try:
            self.smtp.send(smtplib.quotedata(body.decode()).encode() + raw_tail + b"\r\n.\r\n")
            code, text = self.smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.open = False
            return self.record("<message>", None, f"disconnected: {exc}")
        return self.record("<message>", code, decode(text))

    def quit(self) -> None:
        if self.open:
            self.command("QUIT")
        self.smtp.close()
        self.open = False


def decode(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def positive(code: int | None) -> bool:
    return code is not None and 200 <= code < 400


def greeting(args: argparse.Namespace) -> str | None:
    if args.ehlo:
        return f"EHLO {args.ehlo}"
    if args.helo:
        return f"HELO {args.helo}"
    return None


def mail_from(args: argparse.Namespace) -> str:
    if args.raw_mail_from is not None:
        return args.raw_mail_from
    return f"MAIL FROM:<{args.sender}>"


def build_message(args: argparse.Namespace) -> bytes:
    sender_domain = (args.sender or "probe.invalid").rpartition("@")[2] or "probe.invalid"
    headers = [
        f"From: <{args.sender or 'MAILER-DAEMON'}>",
        f"To: {', '.join(f'<{rcpt}>' for rcpt in args.to)}",
        f"Subject: {args.subject}",
        f"Date: {email.utils.formatdate(localtime=True)}",
        f"Message-ID: {email.utils.make_msgid(domain=sender_domain)}",
    ]
    return ("\r\n".join(headers) + "\r\n\r\nmailguard lab probe\r\n").encode()


def smuggled_transaction(args: argparse.Namespace) -> bytes:
    """A second transaction hidden behind a bare <LF>.<LF> (SMTP smuggling, CVE-2023-51764).

    A server that ends DATA there runs it: the NOOP the probe sends next is then answered with the
    reply to the smuggled MAIL. A server that wants <CR><LF>.<CR><LF> keeps it as message text.
    """
    return (
        f"\n.\nMAIL FROM:<{args.sender}>\r\nRCPT TO:<{args.to[0]}>\r\nDATA\r\n"
        "Subject: smuggled\r\n\r\nsmuggled by smtp-probe\r\n"
    ).encode()


def run_dialogue(args: argparse.Namespace) -> dict:
    session = Dialogue(args.server, args.port, args.timeout, args.source)
    result = {"server": f"{args.server}:{args.port}", "steps": session.steps}
    try:
        hello = greeting(args)
        if args.pregreet:
            hello = hello or "EHLO probe.invalid"
            banner = session.pregreet(hello)["code"]
            # The greeting went out before the 220: its reply comes after it - or, when the
            # server never ends its multi-line 220- greeting (postscreen after a pregreet), as
            # the end of the same reply (then recorded as the CONNECT's).
            if banner == 220 and not positive(session.reply_to(hello)["code"]):
                return result
            if not positive(banner):
                return result
            hello = None
        elif session.connect()["code"] != 220:
            return result
        if hello and not positive(session.command(hello)["code"]):
            return result
        if not positive(session.command(mail_from(args))["code"]):
            return result
        accepted = [rcpt for rcpt in args.to if positive(session.command(f"RCPT TO:<{rcpt}>")["code"])]
        if args.data and accepted and session.command("DATA")["code"] == 354:
            session.message(build_message(args), smuggled_transaction(args) if args.smuggle else b"")
            if args.smuggle:
                session.command("NOOP")
        return result
    finally:
        session.quit()


def run_burst(args: argparse.Namespace) -> dict:
    """Open N connections in a row, each: banner, EHLO (when greeted with 220), QUIT."""
    connections = []
    for _ in range(args.connections):
        session = Dialogue(args.server, args.port, args.timeout, args.source)
        try:
            entry = {"banner": session.connect()}
            if entry["banner"]["code"] == 220:
                entry["ehlo"] = session.command(greeting(args) or "EHLO probe.invalid")
        except OSError as exc:  # a refused or timed-out connection is a result too
            entry = {"banner": session.record(CONNECT, None, f"error: {exc}")}
        finally:
            session.quit()
        connections.append(entry)
        time.sleep(args.interval)
    return {"server": f"{args.server}:{args.port}", "connections": connections}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="smtp-probe", description="One recorded SMTP dialogue, or a burst of connections; JSON on stdout."
    )
    parser.add_argument("--server", required=True, help="SMTP server address")
    parser.add_argument("--port", type=int, default=25)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per reply")
    parser.add_argument("--source", metavar="ADDRESS", help="connect from this address of the client")
    parser.add_argument("--pregreet", action="store_true",
                        help="send the greeting (EHLO/HELO) before the server's 220, as bots do")
    hello = parser.add_mutually_exclusive_group(required=True)
    hello.add_argument("--ehlo", metavar="NAME", help="greet with EHLO NAME")
    hello.add_argument("--helo", metavar="NAME", help="greet with HELO NAME")
    hello.add_argument("--no-helo", action="store_true", help="send MAIL without greeting")
    sender = parser.add_mutually_exclusive_group()
    sender.add_argument("--from", dest="sender", metavar="ADDR", default="", help="envelope sender ('' is <>)")
    sender.add_argument("--raw-mail-from", metavar="LINE", help="the MAIL command line exactly as sent")
    parser.add_argument("--to", action="append", default=[], metavar="ADDR", help="recipient (repeatable)")
    parser.add_argument("--data", action="store_true", help="send a message when a recipient is accepted")
    parser.add_argument("--subject", default="mailguard lab probe")
    parser.add_argument(
        "--smuggle", action="store_true", help="hide a second transaction behind <LF>.<LF> in the message, then NOOP"
    )
    parser.add_argument("--connections", type=int, metavar="N", help="burst mode: N connections in a row")
    parser.add_argument("--interval", type=float, default=0.0, help="burst mode: seconds between connections")
    args = parser.parse_args(argv)
    if args.connections is None and not args.to:
        parser.error("a dialogue needs at least one --to")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = run_burst(args) if args.connections is not None else run_dialogue(args)
    except OSError as exc:  # no connection at all: nothing was answered
        print(json.dumps({"server": f"{args.server}:{args.port}", "error": str(exc)}))
        return 1
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

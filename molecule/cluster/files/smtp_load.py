"""smtp-load: steady mail from one lab client to several mail hosts, round-robin (stdlib only).

Runs inside a client container (docker exec -i CLIENT python3 - ARGS < smtp_load.py) until the
stop file exists, then prints JSON: every message sent, the ones accepted (250 after DATA) and
every other reply or error with its server. Each connection carries a few messages, so that
both new connections and reused ones meet a reloading host, within Postfix's per-client
connection and message rate limits.
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import sys
import time


class Target:
    """One mail host and the SMTP connection currently open to it."""

    def __init__(self, server: str, helo: str) -> None:
        self.server = server
        self.helo = helo
        self.smtp: smtplib.SMTP | None = None
        self.used = 0

    def session(self, per_connection: int) -> smtplib.SMTP:
        if self.smtp is not None and self.used >= per_connection:
            self.close()
        if self.smtp is None:
            self.smtp = smtplib.SMTP(self.server, 25, local_hostname=self.helo, timeout=30)
            self.smtp.ehlo(self.helo)
            self.used = 0
        self.used += 1
        return self.smtp

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                self.smtp.close()
        self.smtp = None


def send(smtp: smtplib.SMTP, sender: str, rcpt: str, subject: str) -> tuple[str, int, str] | None:
    """None when accepted, else (step, code, text) of the first refusal."""
    code, text = smtp.mail(sender)
    if code != 250:
        smtp.rset()
        return ("MAIL", code, text.decode(errors="replace"))
    code, text = smtp.rcpt(rcpt)
    if code not in (250, 251):
        smtp.rset()
        return ("RCPT", code, text.decode(errors="replace"))
    message = f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n\r\nrollout load\r\n"
    code, text = smtp.data(message)
    if code != 250:
        return ("DATA", code, text.decode(errors="replace"))
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description="Round-robin SMTP load until a stop file exists.")
    parser.add_argument("--servers", required=True, help="comma-separated addresses")
    parser.add_argument("--helo", required=True)
    parser.add_argument("--sender-domain", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--tag", required=True, help="unique per run: in every sender and subject")
    parser.add_argument("--interval", type=float, default=0.7, help="seconds between two messages")
    parser.add_argument("--per-connection", type=int, default=5)
    parser.add_argument("--stop-file", required=True)
    args = parser.parse_args()

    targets = [Target(server, args.helo) for server in args.servers.split(",")]
    sent, accepted, failures = 0, 0, []
    per_server = {target.server: 0 for target in targets}
    started = time.monotonic()
    while not os.path.exists(args.stop_file):
        target = targets[sent % len(targets)]
        number = sent
        sent += 1
        per_server[target.server] += 1
        subject = f"{args.tag}-{number}"
        try:
            refusal = send(target.session(args.per_connection), f"{subject}@{args.sender_domain}", args.to, subject)
        except (smtplib.SMTPException, OSError) as exc:
            refusal = ("CONNECTION", None, f"{type(exc).__name__}: {exc}")
            target.close()
        if refusal is None:
            accepted += 1
        else:
            failures.append({"server": target.server, "message": subject, "step": refusal[0],
                             "code": refusal[1], "text": refusal[2]})
        time.sleep(args.interval)
    for target in targets:
        target.close()
    json.dump({"sent": sent, "accepted": accepted, "per_server": per_server, "failures": failures,
               "seconds": round(time.monotonic() - started, 1)}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

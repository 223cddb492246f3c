"""Real-format log lines for the greylist-report tests, and a way to run the command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULE_UTILS = REPO / "plugins" / "module_utils"

# postgrey 1.33, sub mylog_action (github.com/schweikert/postgrey, file postgrey): fields joined
# by ", ", empty ones left out; the first pass of a triplet carries delay=.
POSTGREY_NEW = ("Dec  5 08:00:01 mx1 postgrey[50]: action=greylist, reason=new, client_name=mail-a.pool.test, "
                "client_address=192.0.2.10, sender=Alice@pool.test, recipient=bob@example.org")
POSTGREY_EARLY = ("Dec  5 08:00:31 mx1 postgrey[50]: action=greylist, reason=early-retry (30s missing), "
                  "client_name=mail-a.pool.test, client_address=192.0.2.10, sender=alice@pool.test, "
                  "recipient=bob@example.org")
POSTGREY_PASS = ("Dec  5 08:06:01 mx1 postgrey[50]: action=pass, reason=triplet found, delay=360, "
                 "client_name=mail-a.pool.test, client_address=192.0.2.10, sender=alice@pool.test, "
                 "recipient=bob@example.org")
POSTGREY_BOUNCE = ("Dec  5 08:00:02 mx1 postgrey[50]: 4F1AB2C3D4: action=greylist, reason=new, "
                   "client_name=unknown, client_address=198.51.100.7, recipient=bob@example.org")

# sqlgrey 1.8.0-rc2, sub smtpd_access_policy and mylog ("$logtype: $message"), github.com/mmatuska/sqlgrey.
SQLGREY_NEW = "Dec  5 08:00:01 mx1 sqlgrey: grey: new: 192.0.2(192.0.2.10), alice@pool.test -> bob@example.org"
SQLGREY_EARLY = ("Dec  5 08:00:30 mx1 sqlgrey: grey: early reconnect: 192.0.2(192.0.2.10), alice@pool.test "
                 "-> bob@example.org")
SQLGREY_OK = ("Dec  5 08:07:01 mx1 sqlgrey: grey: reconnect ok: 192.0.2(192.0.2.10), alice@pool.test -> "
              "bob@example.org (00:07:00.12345)")
SQLGREY_NULL = "Dec  5 08:00:01 mx1 sqlgrey: grey: new: 198.51.100(198.51.100.7), -undef-@-undef- -> bob@example.org"
SQLGREY_WHITELIST = ("Dec  5 08:00:01 mx1 sqlgrey: whitelist: carol@big.test, 203.0.113.5(mx.big.test) -> "
                     "bob@example.org")

# Postfix smtpd: a policy server's DEFER_IF_PERMIT with this project's postgrey_reject_text
# (roles/postgrey/defaults/main.yml; it holds a ";", so "; from=<" ends it, not the first ";").
POSTFIX_REJECT = (
    "Dec  5 08:00:01 mx1 postfix/smtpd[100]: NOQUEUE: reject: RCPT from mail-a.pool.test[192.0.2.10]: 450 4.2.0 "
    "<bob@example.org>: Recipient address rejected: Greylisted: your server is new to us, please retry in 60 "
    "seconds (RFC 6647); real mail servers retry by themselves. Problems? Write to postmaster@example.org; "
    "from=<alice@pool.test> to=<bob@example.org> proto=ESMTP helo=<mail-a.pool.test>")
POSTFIX_SQLGREY_REJECT = (
    "Dec  5 08:00:01 mx1 postfix/smtpd[100]: NOQUEUE: reject: RCPT from unknown[192.0.2.10]: 450 4.7.1 "
    "<bob@example.org>: Recipient address rejected: Greylisted for 1 minutes; from=<alice@pool.test> "
    "to=<bob@example.org> proto=ESMTP helo=<mail-a.pool.test>")
POSTFIX_RBL = (
    "Dec  5 08:00:01 mx1 postfix/smtpd[100]: NOQUEUE: reject: RCPT from x.test[192.0.2.99]: 554 5.7.1 "
    "Service unavailable; Client host [192.0.2.99] blocked using zen.spamhaus.org; from=<a@x.test> "
    "to=<bob@example.org> proto=ESMTP helo=<x.test>")
POSTFIX_ACCEPTED = [
    "Dec  5 08:06:01 mx1 postfix/smtpd[101]: 4ABCD1234: client=mail-a.pool.test[192.0.2.10]",
    "Dec  5 08:06:02 mx1 postfix/cleanup[103]: 4ABCD1234: message-id=<x@pool.test>",
    "Dec  5 08:06:02 mx1 postfix/qmgr[90]: 4ABCD1234: from=<alice@pool.test>, size=1234, nrcpt=1 (queue active)",
    "Dec  5 08:06:02 mx1 postfix/lmtp[104]: 4ABCD1234: to=<b.ob@example.org>, orig_to=<bob@example.org>, "
    "relay=mail.example.org[private/dovecot-lmtp], delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
    "Dec  5 08:06:02 mx1 postfix/qmgr[90]: 4ABCD1234: removed",
]

# Exim with this project's ACL (roles/exim4/templates/.../35_mailguard_check_rcpt.j2:
# log_message = greylisted; 35_mailguard_check_data.j2: greylisted (bounce)), mainlog format.
EXIM_DEFER = ("2026-12-05 08:00:01 H=mail-a.pool.test (helo.pool.test) [192.0.2.10]:40000 I=[192.0.2.1]:25 "
              "F=<alice@pool.test> temporarily rejected RCPT <bob@example.org>: greylisted")
EXIM_DEFER_BOUNCE = ("2026-12-05 08:00:02 H=(helo.test) [198.51.100.7] F=<> temporarily rejected after DATA: "
                     "greylisted (bounce)")
EXIM_ACCEPTED = [
    "2026-12-05 08:06:01 1tJxyz-000123-AB <= alice@pool.test H=mail-a.pool.test (helo.pool.test) "
    "[192.0.2.10]:40002 P=esmtps X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no S=1234 id=x@pool.test",
    "2026-12-05 08:06:02 1tJxyz-000123-AB => bob <bob@example.org> R=local_user T=mail_spool",
    "2026-12-05 08:06:02 1tJxyz-000123-AB Completed",
]


def run_report(*args: str, stdin: str | bytes | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(MODULE_UTILS))
    return subprocess.run([sys.executable, "-m", "greylog.cli", *args], env=env, capture_output=True,
                          input=stdin.encode() if isinstance(stdin, str) else stdin, timeout=60, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> None:
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert stderr.startswith("greylist-report: error: "), stderr
    assert stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    assert result.stdout == b""
    for fragment in fragments:
        assert fragment in stderr, stderr

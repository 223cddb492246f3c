"""Issue 12, Exim stack: the guard against recipient guessing that Debian's own RCPT ACL had, a
backup MX that refuses unknown recipients in the dialogue, STARTTLS with the configured
certificate and a protocol floor; and, on both stacks, SPF temperror accepted (then greylisted).
The greylist daemon down (accept) and postmaster/abuse exempt from SPF are the shared tests of
test_recipients_limits.py.

Every dialogue is real SMTP (smtp-probe) or a real TLS handshake (openssl s_client) from a lab
client to the mail host under test.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import testinfra
import yaml

RCPT = "alice@lab.test"
# The lab inventory of the Exim stack: the backup-MX domain and its one valid recipient.
EXIM_LAB_VARS = yaml.safe_load(
    (Path(__file__).resolve().parents[3] / "inventories/lab/group_vars/exim_hosts/lab.yml").read_text()
)
# Where each MTA's server certificate is configured, as the running MTA reads it.
CERTIFICATE_SETTING = {
    "postfix": "postconf -h smtpd_tls_cert_file",
    "exim": "exim4 -bP -n tls_certificate",
}


def unknown(tag: str) -> str:
    """A lab.test address no user has."""
    return f"nosuch-{tag}-{uuid.uuid4().hex[:8]}@lab.test"


@pytest.mark.only_mta("exim", reason="Postfix drops after smtpd_hard_error_limit (20) errors, its own rule")
def test_client_guessing_recipients_is_dropped(probe, sender):
    guesses = [unknown(f"guess{n}") for n in range(12)]
    result = probe("legit-mta", "--from", sender("legit.test", "harvest"), *(f"--to={a}" for a in guesses))
    rcpts = result.replies("RCPT")
    # Debian's rule: the first 10 are answered one by one; at the 11th, more than half refused.
    assert [step["code"] for step in rcpts[:10]] == [550] * 10, result
    assert rcpts[10]["code"] == 550 and "Too many unknown recipients" in rcpts[10]["text"], result
    assert rcpts[11]["code"] is None and "disconnected" in rcpts[11]["text"], (
        f"the connection stayed open after the 11th refused recipient:\n{result}"
    )


@pytest.mark.only_mta("exim", reason="the guard under test is the exim4 role's")
def test_greylisted_recipients_do_not_count_as_guesses(probe, sender):
    # A new sender to many real recipients: deferred (451, or 250 once the lab's 5 s delay has
    # passed), never refused, never dropped.
    result = probe("legit-mta", "--from", sender("legit.test", "many"), *(f"--to={RCPT}" for _ in range(12)))
    codes = [step["code"] for step in result.replies("RCPT")]
    assert codes[0] == 451 and set(codes) <= {451, 250} and len(codes) == 12, (
        f"deferred recipients were counted as refused:\n{result}"
    )


@pytest.mark.only_mta("exim", reason="the Postfix stack's relay_recipient_maps is preflight-checked (tests/ansible)")
def test_backup_mx_refuses_unknown_recipients_of_relayed_domains_in_the_dialogue(probe, sender):
    (domain,) = EXIM_LAB_VARS["exim4_relay_to_domains"]
    (known,) = EXIM_LAB_VARS["exim4_relay_to_recipients"]
    stranger = f"nosuch-{uuid.uuid4().hex[:8]}@{domain}"
    result = probe("legit-mta", "--from", sender("legit.test", "backup"), f"--to={stranger}", f"--to={known}")
    refused, accepted = result.replies("RCPT")
    assert refused["code"] == 550 and "5.1.1" in refused["text"], (
        f"{stranger} was not refused during the dialogue (accept-then-bounce):\n{result}"
    )
    # The listed recipient is accepted at once: the primary greylists, not the backup.
    assert accepted["code"] == 250, result


def tls_session(client: str, server: str, *options: str) -> str:
    """openssl s_client's report of a STARTTLS session from the client (-brief), and the peer certificate."""
    host = testinfra.get_host(f"docker://{client}")
    done = host.run(
        "printf 'QUIT\\r\\n' | timeout 20 openssl s_client -connect %s:25 -starttls smtp -brief "
        + " ".join(["%s"] * len(options))
        + " 2>&1",
        server,
        *options,
    )
    return done.stdout


def test_starttls_completes_with_the_configured_certificate(mta):
    configured = mta.host.check_output(CERTIFICATE_SETTING[mta.name]).strip()
    assert configured.startswith("/"), f"no server certificate configured: {configured!r}"
    expected = mta.host.check_output("openssl x509 -in %s -noout -fingerprint -sha256", configured).strip()
    client = testinfra.get_host("docker://legit-mta")
    presented = client.check_output(
        "printf 'QUIT\\r\\n' | timeout 20 openssl s_client -connect %s:25 -starttls smtp 2>/dev/null"
        " | openssl x509 -noout -fingerprint -sha256",
        mta.address,
    ).strip()
    assert presented == expected, f"the server presented another certificate than {configured}"
    report = tls_session("legit-mta", mta.address)
    assert re.search(r"^Protocol version: TLSv1\.[23]$", report, re.M), report


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_tls_below_1_2_is_refused(mta, version):
    # SECLEVEL=0: this client would speak TLS 1.0/1.1; the server must not (RFC 8996).
    report = tls_session("legit-mta", mta.address, version, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert "CONNECTION ESTABLISHED" not in report and "Protocol version" not in report, report
    # The server answered STARTTLS: the refusal is the handshake's, not a missing STARTTLS.
    assert re.search(r"alert protocol version|unsupported protocol|no protocols available", report), report


def test_spf_temperror_is_accepted_and_still_greylisted(probe, sender, mta, lab):
    # The include's zone answers SERVFAIL (lab.yml lab_dns_servfail_zones): SPF says temperror.
    result = probe("legit-mta", "--from", sender(lab["lab_spf_temperror_domain"], "temperror"), "--to", RCPT)
    rcpt = result.reply("RCPT")
    assert "SPF" not in rcpt["text"], f"an SPF temperror was deferred or refused:\n{result}"
    assert rcpt["code"] == mta.greylist_code and "Greylisted" in rcpt["text"], result

"""Abuse is refused during the dialogue (behaviours 4, 5, 6): no relay, no bounce, no backscatter."""

from __future__ import annotations

import time
import uuid

import pytest

RCPT = "alice@lab.test"


def wait_for_empty_queue(mta, seconds: float = 20) -> None:
    """Other tests' local deliveries may still be in flight: the queue must drain, not stay."""
    deadline = time.monotonic() + seconds
    while queue := mta.queue():
        assert time.monotonic() < deadline, "queue not empty:\n" + "\n".join(queue)
        time.sleep(0.5)


def test_spambot_cannot_relay_and_unknown_users_are_refused_in_the_dialogue(probe, sender, mta):
    # "nobody" is a Debian system user (uid 65534): an unknown local part must be made up.
    unknown = f"no-such-user-{uuid.uuid4().hex[:8]}@lab.test"
    result = probe(
        "spambot", "--from", sender("foreign.test", "spam"), "--to", "someone@foreign.test", "--to", unknown, "--data"
    )
    relay, local = result.replies("RCPT")
    assert relay["code"] == 554, f"relay to foreign.test not denied with 554:\n{result}"
    assert local["code"] == 550, f"unknown local recipient not refused with 550:\n{result}"
    assert not result.replies("DATA"), str(result)
    wait_for_empty_queue(mta)


def test_mail_without_helo_is_refused(probe, sender):
    result = probe("spambot", "--no-helo", "--from", sender("legit.test", "no-helo"), "--to", RCPT)
    assert result.code("MAIL") == 503, f"HELO required: expected 503 at MAIL:\n{result}"


def test_invalid_helo_is_refused(probe, sender, mta):
    verb, expected = mta.invalid_helo_verdict()
    result = probe("spambot", "--helo=-bad_", "--from", sender("foreign.test", "bad-helo"), "--to", RCPT)
    refusal = result.reply(verb)
    assert refusal["code"] == expected and 500 <= expected < 600, f"expected {expected} at {verb}:\n{result}"
    assert not [step for step in result.replies("RCPT") if step["code"] == 250], str(result)


@pytest.mark.parametrize(
    "helo",
    [
        pytest.param("workstation", id="single-label"),  # RFC 5321 4.1.1.1: a fully qualified name
        pytest.param("172.30.53.66", id="bare-address"),  # RFC 5321 4.1.3: [172.30.53.66]
    ],
)
def test_helo_that_is_no_host_name_is_refused(probe, sender, mta, helo):
    result = probe("spambot", f"--helo={helo}", "--from", sender("legit.test", "helo"), "--to", RCPT)
    refusal = result.reply(mta.helo_verdict_verb)
    assert 500 <= (refusal["code"] or 0) < 600, f"expected a 5xx at {mta.helo_verdict_verb}:\n{result}"
    assert helo in refusal["text"], str(result)


@pytest.mark.only_mta("postfix")  # strict_rfc821_envelopes: the exim4 role has no such check
def test_mail_from_without_brackets_is_a_syntax_error(probe):
    result = probe("spambot", "--raw-mail-from", "MAIL FROM:user@legit.test", "--to", RCPT)
    assert result.code("MAIL") == 501, f"strict_rfc821_envelopes: expected 501:\n{result}"


def burst_codes(result) -> list[int | None]:
    """Every reply code of a burst: each connection's banner, then its EHLO reply if any."""
    return [step.get("code") for conn in result.connections for step in (conn["banner"], conn.get("ehlo", {}))]


def test_connection_flood_gets_421(probe, mta):
    limit = mta.connection_rate_limit()
    assert limit > 0, "no connection rate limit configured"
    result = probe("flooder", "--connections", str(limit + 2))
    codes = burst_codes(result)
    assert 421 in codes, f"{limit + 2} connections within the rate limit's period, no 421:\n{result}"


def test_exempt_network_is_not_rate_limited(probe, mta, lab):
    limit = mta.connection_rate_limit()
    exempt = lab["lab_clients"]["legit-mta"]["address"]
    assert exempt in mta.rate_limit_exceptions(), "legit-mta is not a configured exception"
    result = probe("legit-mta", "--connections", str(limit + 2))
    greetings = [(conn["banner"]["code"], conn.get("ehlo", {}).get("code")) for conn in result.connections]
    assert greetings == [(220, 250)] * (limit + 2), f"the exempt client was limited:\n{result}"


@pytest.mark.parametrize("claim", ["name", "address", "domain"])
def test_helo_claiming_the_mail_hosts_own_identity_is_refused(probe, sender, mta, lab, claim):
    # legit-mta passes every other check (FCrDNS, SPF): only its lie about who it is can refuse it.
    helo = {"name": mta.hostname, "address": f"[{mta.address}]", "domain": lab["lab_mail_domain"]}[claim]
    result = probe("legit-mta", f"--ehlo={helo}", "--from", sender("legit.test", "own-helo"), "--to", RCPT)
    refusal = result.reply(mta.helo_verdict_verb)
    assert refusal["code"] == 554, f"HELO {helo} (this host's own {claim}) not refused with 554:\n{result}"
    assert helo in refusal["text"], str(result)


@pytest.mark.only_mta("postfix", reason="Exim answers MAIL and NOOP alike, so the probe cannot tell them apart")
def test_smuggled_transaction_behind_a_bare_newline_is_not_run(probe, sender):
    # postmaster is never greylisted: before the fix the smuggled message was accepted too.
    result = probe(
        "legit-mta", "--from", sender("legit.test", "smuggle"), "--to", "postmaster@lab.test", "--data", "--smuggle"
    )
    assert result.code("<message>") == 250, f"the message itself was not accepted:\n{result}"
    noop = result.reply("NOOP")
    # The reply to the smuggled MAIL would be "2.1.0 Ok"; NOOP's own is "2.0.0 Ok".
    assert noop["code"] == 250 and noop["text"].startswith("2.0.0"), f"the smuggled MAIL was run:\n{result}"


@pytest.mark.only_mta("postfix", reason="Exim verifies sender domains in its own ACL, outside this change")
def test_sender_domain_without_dns_is_deferred_not_bounced(probe, sender):
    # The lab DNS answers NXDOMAIN for every name it does not serve; a real domain can be missing
    # for a moment (an expired delegation, a broken zone): the sender must retry, not bounce.
    domain = f"no-such-domain-{uuid.uuid4().hex[:8]}.test"
    result = probe("legit-mta", "--from", sender(domain, "nodns"), "--to", RCPT)
    refusal = result.reply("RCPT")
    assert refusal["code"] == 450, f"sender domain without DNS not deferred with 450:\n{result}"
    assert domain in refusal["text"], str(result)

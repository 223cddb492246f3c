"""Greylisting: new triplets wait, the big providers' pools and postmaster do not (behaviours 1, 2, 7)."""

from __future__ import annotations

import re
import time

import pytest

RCPT = "alice@lab.test"


def wait_for_mailbox(mta, user: str, needle: str, seconds: float = 20) -> None:
    """Local delivery is asynchronous: wait until the user's mailbox holds needle."""
    deadline = time.monotonic() + seconds
    while mta.host.run("grep -qF %s /var/mail/%s", needle, user).rc != 0:
        assert time.monotonic() < deadline, (
            f"{needle} not delivered to /var/mail/{user} within {seconds} s; queue: " + "\n".join(mta.queue())
        )
        time.sleep(0.5)


def assert_greylisted(result, mta) -> None:
    rcpt = result.reply("RCPT")
    assert rcpt["code"] == mta.greylist_code, f"expected {mta.greylist_code} (greylisted) at RCPT:\n{result}"
    assert "greylist" in rcpt["text"].lower(), f"the {rcpt['code']} is not the greylisting's:\n{result}"
    assert not result.replies("DATA"), f"DATA sent although no recipient was accepted:\n{result}"


def assert_accepted(result, mta) -> None:
    assert result.code("RCPT") == 250, f"expected 250 at RCPT:\n{result}"
    assert result.code("DATA") == 354, str(result)
    message = result.reply("<message>")
    assert message["code"] == 250 and re.search(mta.accepted_text, message["text"]), str(result)


def test_new_triplet_is_greylisted_then_accepted_after_the_delay(probe, sender, mta):
    delay = mta.greylist_delay()
    assert delay <= 30, f"the greylisting delay is {delay} s: too long for the lab (inventories/lab/group_vars)"
    envelope = ("--from", sender("legit.test", "greylist"), "--to", RCPT, "--data")

    first = probe("legit-mta", *envelope)
    first_seen = time.monotonic()
    assert first.code("MAIL") == 250, str(first)
    assert_greylisted(first, mta)

    assert_greylisted(probe("legit-mta", *envelope), mta)  # an immediate retry is still too early

    time.sleep(max(0.0, first_seen + delay + 1.5 - time.monotonic()))
    retry = probe("legit-mta", *envelope)
    assert_accepted(retry, mta)
    wait_for_mailbox(mta, "alice", envelope[1])


@pytest.mark.parametrize("client", ["pool-a", "pool-b"])
def test_provider_pool_is_accepted_at_once(probe, sender, mta, client):
    # Each address of the pool, first message ever: whitelisted by the file generated from
    # bigpool.test's SPF record, so no retry from another address is ever needed.
    envelope = ("--from", sender("bigpool.test", "pool"), "--to", RCPT, "--data")
    result = probe(client, *envelope)
    whitelist = mta.host.file(mta.whitelist)
    assert result.code("RCPT") == 250, f"{client} was not whitelisted:\n{result}\n{mta.whitelist}:\n" + (
        whitelist.content_string if whitelist.exists else "(missing)"
    )
    assert_accepted(result, mta)
    wait_for_mailbox(mta, "alice", envelope[1])


def test_provider_pool_never_reaches_the_greylist_daemon(probe, sender, mta, lab):
    # Postfix asks the providers' cidr table before the greylist: a pool's client gets OK there,
    # so postgrey is never asked, and its own list need not hold the providers' networks (it
    # compares each request with every entry). Exim's ACL checks its host list before it asks
    # greylistd likewise, but greylistd logs no request to count.
    if mta.name != "postfix":
        pytest.skip("greylistd logs no request: Exim's ACL asks its host list first (35_mailguard_check_rcpt)")
    since = time.time() - 1
    pooled = probe("pool-a", "--from", sender("bigpool.test", "pool"), "--to", RCPT)
    assert pooled.code("RCPT") == 250, str(pooled)
    # A control that postgrey must log (a new triplet): once its line is in the journal, so
    # would be a line of the pool's request, made before it.
    control = probe("legit-mta", "--from", sender("legit.test", "control"), "--to", RCPT)
    assert_greylisted(control, mta)
    control_address = lab["lab_clients"]["legit-mta"]["address"]
    deadline = time.monotonic() + 20
    log = mta.greylist_log(since)
    while not any(f"client_address={control_address}," in line for line in log):
        assert time.monotonic() < deadline, "postgrey never logged the control's request:\n" + "\n".join(log)
        time.sleep(0.5)
        log = mta.greylist_log(since)
    pool_address = lab["lab_clients"]["pool-a"]["address"]
    asked = [line for line in log if f"client_address={pool_address}," in line]
    assert not asked, "postgrey was asked about the provider's pool:\n" + "\n".join(asked)


def test_postmaster_is_never_greylisted(probe, sender, mta):
    # RFC 5321 4.5.1: postmaster must be reachable, also by a server that does not retry.
    result = probe(
        "legit-mta", "--from", sender("legit.test", "to-postmaster"), "--to", "postmaster@lab.test", "--data"
    )
    assert_accepted(result, mta)


def test_null_sender_passes_rcpt_and_is_greylisted_at_data(probe, mta):
    # Another site's sender-verification callout (MAIL FROM:<>, RCPT, QUIT) must not be delayed,
    # or our users' mail to that site waits; a bounce (the same with a message) still waits.
    recipient = mta.fresh_recipient("alice")
    callout = probe("legit-mta", "--from", "", "--to", recipient)
    assert callout.code("MAIL") == 250 and callout.code("RCPT") == 250, f"the callout was not accepted:\n{callout}"

    bounce = probe("legit-mta", "--from", "", "--to", recipient, "--data")
    assert bounce.code("RCPT") == 250, str(bounce)
    # Postfix defers at the DATA command, Exim after the message (its DATA ACL).
    verdict = bounce.reply("<message>") if bounce.code("DATA") == 354 else bounce.reply("DATA")
    assert 400 <= (verdict["code"] or 0) < 500, f"the bounce was not deferred:\n{bounce}"
    assert "greylist" in verdict["text"].lower(), f"the {verdict['code']} is not the greylisting's:\n{bounce}"

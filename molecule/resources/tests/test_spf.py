"""SPF (policyd-spf for Postfix, Exim's spf condition), before greylisting (behaviour 3).

All from legit-mta (172.30.53.110)."""

from __future__ import annotations

import pytest

RCPT = "alice@lab.test"


@pytest.mark.parametrize(
    "domain",
    [
        pytest.param("spf-fail.test", id="fail"),  # -all, the client is not listed
        pytest.param("qall.test", id="neutral-in-reject-not-pass-domains"),  # ?all like gmail.com
    ],
)
def test_spf_rejects_the_sender(probe, sender, domain):
    result = probe("legit-mta", "--from", sender(domain, "spf"), "--to", RCPT)
    assert result.code("MAIL") == 250, str(result)  # smtpd_delay_reject: the verdict comes at RCPT
    rcpt = result.reply("RCPT")
    assert 500 <= (rcpt["code"] or 0) < 600, f"expected a 5xx from the SPF check:\n{result}"
    assert "SPF" in rcpt["text"], f"the 5xx is not the SPF check's:\n{result}"


def test_spf_pass_goes_on_to_greylisting(probe, sender, mta):
    result = probe("legit-mta", "--from", sender("legit.test", "spf-pass"), "--to", RCPT)
    rcpt = result.reply("RCPT")
    expected = mta.greylist_code
    assert rcpt["code"] == expected, f"expected the greylisting's {expected} after an SPF pass:\n{result}"
    assert "greylist" in rcpt["text"].lower() and "SPF" not in rcpt["text"], str(result)

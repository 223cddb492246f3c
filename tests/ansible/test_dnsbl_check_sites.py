"""The DNSBL health check asks every blocklist the MTA asks, weights stripped, allowlists left out.

postscreen's and Exim's weighted lists are written zone[=filter][*weight]; the health check
(local_resolver, RFC 5782 test point) wants zone[=filter]. A list with a negative weight is an
allowlist, whose test point answers differently: it is not asked.
"""

from __future__ import annotations

import re

from tests.support.playbook import run_playbook, task_results

PLAYBOOK = "tests/ansible/dnsbl_check_sites.yml"


def rendered(**variables) -> dict:
    run = run_playbook(PLAYBOOK, {"postfix_myhostname": "mx1.example.org", **variables})
    assert run.returncode == 0, run.text
    return task_results(run.output)["Show the sites"]["msg"]


def test_postscreen_and_exim_blocklists_reach_the_health_check_without_weights():
    sites = rendered(
        postfix_rbl_sites=["smtpd.example=127.0.0.2"],
        postfix_postscreen_dnsbl_sites=["dnsbl-a.example=127.0.0.[2..11]*2", "dnsbl-b.example", "wl.example*-3"],
        exim4_dnsbl_weighted_sites=["dnsbl-a.example=127.0.0.2,127.0.0.3*2", "dnsbl-b.example",
                                    "wl.example=127.0.10.2*-3"],
    )
    assert sites["postfix"] == ["smtpd.example=127.0.0.2", "dnsbl-a.example=127.0.0.[2..11]", "dnsbl-b.example"]
    assert sites["exim"] == ["dnsbl-a.example=127.0.0.2,127.0.0.3", "dnsbl-b.example"]
    assert sites["exim_weights"] == [
        {"list": "dnsbl-a.example=127.0.0.2,127.0.0.3", "weight": 2},
        {"list": "dnsbl-b.example", "weight": 1},
        {"list": "wl.example=127.0.10.2", "weight": -3},
    ]


def test_without_postscreen_only_smtpds_lists_are_asked():
    sites = rendered(postfix_postscreen=False, postfix_rbl_sites=["smtpd.example=127.0.0.2"])
    assert sites["postfix"] == ["smtpd.example=127.0.0.2"]


def test_the_defaults_ask_spamhaus_and_spamcop_once_each():
    sites = rendered()
    assert sites["postfix"] == ["zen.spamhaus.org=127.0.0.[2..11]", "bl.spamcop.net=127.0.0.2"]
    assert [site.split("=")[0] for site in sites["exim"]] == ["zen.spamhaus.org", "bl.spamcop.net"]


def test_exims_dynamic_name_regex_is_every_pattern_case_insensitive():
    regex = rendered(mailguard_greylist_dynamic_name_patterns=["(^|[.-])dsl[0-9]*[.-]", "[.]dyn[.]"])[
        "exim_dynamic_name_regex"]
    assert regex == "(?i)(?:(^|[.-])dsl[0-9]*[.-])|(?:[.]dyn[.])"
    assert re.search(regex, "DSL7.example.net") and not re.search(regex, "mail.example.net")

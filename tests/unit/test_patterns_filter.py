"""mailguard_bad_name_patterns: host name patterns both MTAs read as meant, or a reason why not."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins/filter/mailguard_patterns.py"
_spec = importlib.util.spec_from_file_location("mailguard_patterns", PLUGIN)
patterns = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(patterns)

MAILGUARD_DEFAULTS = yaml.safe_load((ROOT / "roles/mailguard/defaults/main.yml").read_text())
DEFAULTS = MAILGUARD_DEFAULTS["mailguard_greylist_dynamic_name_patterns"]


def test_the_default_patterns_pass():
    assert patterns.mailguard_bad_name_patterns(DEFAULTS) == []


@pytest.mark.parametrize(
    "name",
    [
        "203-0-113-7.dsl.example.net",
        "host7.113.0.203.example.org",
        "c-73-162-11-12.hsd1.ca.comcast.net",
        "dyn-12.example.net",
        "dhcp123.pool.example.net",
        "ppp-7.example",
        "Cable.Example.NET",
    ],
)
def test_the_default_patterns_see_dynamic_names(name):
    assert any(re.search(p, name, re.IGNORECASE) for p in DEFAULTS), name


@pytest.mark.parametrize(
    "name",
    [
        "mail-ed1-f41.google.com",
        "mail-db8eur05on2041.outbound.protection.outlook.com",
        "a8-30.smtp-out.amazonses.com",
        "mx.poolparty.example",          # a word inside a label is no signal
        "mta.legit.test",
        "out-a.bigpool.test",
        "smtp.customerservice.example",
    ],
)
def test_the_default_patterns_leave_mail_server_names_alone(name):
    assert not any(re.search(p, name, re.IGNORECASE) for p in DEFAULTS), name


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("dyn/ip", '"/"'),
        ("dsl .example", "space"),
        (r"\d+-\d+", "backslash class"),
        ("(dsl", "no regular expression"),
        ("x*", "empty string"),
        ("mail", "ordinary mail server names"),
        ("[a-z]+[.][a-z]+", "ordinary mail server names"),
        ("", "no pattern"),
    ],
)
def test_a_pattern_neither_mta_reads_as_meant_is_refused_with_the_reason(pattern, why):
    found = patterns.mailguard_bad_name_patterns(["(^|[.-])dsl[0-9]*[.-]", pattern])
    assert len(found) == 1 and repr(pattern) in found[0] and why in found[0], found

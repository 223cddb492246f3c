"""Unit tests for the whitelist renderers and the static entry parser (no DNS)."""

from __future__ import annotations

import ipaddress
import re

import pytest

from spfwalk.guards import GuardPolicy
from spfwalk.outputs import (
    FORMATS,
    GENERATED_LINE,
    NAMES_ONLY_FORMATS,
    PROVENANCE_MAX_LINE,
    SQLGREY_MAX_LINES_PER_NETWORK,
    OutputError,
    Rendered,
    StaticEntries,
    StaticEntryError,
    display_chain,
    exim_hostname,
    exim_regex,
    parse_static_entries,
    provenance_comment,
    render,
)
from tests.support.guard import doc_guard


def nets(*texts):
    return [ipaddress.ip_network(t) for t in texts]


# The tests write documentation ranges as static entries. The default policy refuses them
# (special-purpose space), so the tests vouch for them as a lab vouches for its own networks.
DOCS = doc_guard()
WALK = nets("198.51.100.0/25", "203.0.113.7/32", "2001:db8:1::/48", "2001:db8:2::5/128")
HEADER = ["roots: example.net (4 netblocks, fresh)"]


def head(fmt_line):
    return f"{GENERATED_LINE}\n{fmt_line}\n# roots: example.net (4 netblocks, fresh)\n"


# --- static entries ---------------------------------------------------------------------------


def test_parse_static_entries_sorts_kinds_and_normalises():
    static = parse_static_entries(
        [
            "",
            "   ",
            "# a comment",
            "192.0.2.10",
            "Mail.Example.COM.",
            "mail.example.com",
            r"/^smtp\d+\.example\.org$/",
            "2001:DB8::/32",
            " relay.example.org ",
        ],
        DOCS,
    )
    assert static.networks == nets("192.0.2.10/32", "2001:db8::/32")
    assert static.hostnames == ["mail.example.com", "relay.example.org"]
    assert static.regexes == [r"^smtp\d+\.example\.org$"]
    assert static.warnings == []


def test_parse_static_entries_fixes_host_bits_with_a_warning():
    static = parse_static_entries(["192.0.2.77/24", "2001:db8::1/32"], DOCS)
    assert static.networks == nets("192.0.2.0/24", "2001:db8::/32")
    assert len(static.warnings) == 2
    assert "'192.0.2.77/24'" in static.warnings[0]
    assert "192.0.2.0/24" in static.warnings[0]
    assert "'2001:db8::1/32'" in static.warnings[1]


def test_parse_static_entries_collapses_networks():
    static = parse_static_entries(["192.0.2.0/25", "192.0.2.128/25", "192.0.2.5"], DOCS)
    assert static.networks == nets("192.0.2.0/24")


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("300.1.2.3/24", "not a valid IPv4/IPv6 address"),
        ("192.0.2.0/33", "not a valid IPv4/IPv6 address"),
        ("192.0.2", "partial addresses"),
        ("2001:db8::g/32", "not a valid IPv4/IPv6 address"),
        ("fe80::1%eth0", "scoped"),
        ("example.com/24", "not a valid IPv4/IPv6 address"),
        ("/foo(/", "not a valid regular expression"),
        ("/[a-/", "not a valid regular expression"),
        ("//", "empty regex"),
        ("/foo#bar/", "may not contain '#'"),
        ("/foo bar/", "whitespace"),
        ("mail example.com", "whitespace"),
        ("-bad.example.com", "RFC 1123"),
        ("bad-.example.com", "RFC 1123"),
        ("exa_mple.com", "RFC 1123"),
        ("a..example.com", "RFC 1123"),
        ("x" * 64 + ".example.com", "RFC 1123"),
        (".".join(["a" * 60] * 5), "1 to 253"),
        ("localhost", "is refused: 'localhost' is a single label"),
        ("*.example.com", "wildcards are not needed"),
        ("bücher.example", "xn--"),
        ("host.123", "last label is numeric"),
    ],
)
def test_parse_static_entries_rejects_bad_entries_naming_them(entry, why):
    with pytest.raises(StaticEntryError) as excinfo:
        parse_static_entries(["192.0.2.1", entry], DOCS)
    message = str(excinfo.value)
    assert repr(entry.strip()) in message
    assert why in message


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("0.0.0.0/0", "wider than the floor /12 (IPv4)"),
        ("0.0.0.0/1", "wider than the floor /12 (IPv4)"),
        ("128.0.0.0/1", "wider than the floor /12 (IPv4)"),
        ("8.0.0.0/11", "wider than the floor /12 (IPv4)"),
        ("::/0", "wider than the floor /28 (IPv6)"),
        ("2a00::/27", "wider than the floor /28 (IPv6)"),
        ("10.0.0.0/8", "inside special-purpose space 10.0.0.0/8"),
        ("10.1.2.3", "inside special-purpose space 10.0.0.0/8"),
        ("172.0.0.0/8", "wider than the floor /12 (IPv4)"),
        ("192.160.0.0/12", "overlaps special-purpose space 192.168.0.0/16"),
        ("3fff::/24", "inside special-purpose space 3fff::/20"),
        ("fd00::1", "inside special-purpose space fc00::/7"),
        ("/.*/", "the regex matches unrelated host names"),
        ("/./", "the regex matches unrelated host names"),
        (r"/\.com$/", "the regex matches unrelated host names"),
        ("/^mail/", "the regex matches unrelated host names"),
        ("net", "is a single label or a top-level domain"),
        ("com.", "is a single label or a top-level domain"),
        ("co.uk", "is a public suffix"),
    ],
)
def test_parse_static_entries_refuses_entries_wider_than_the_guard(entry, why):
    with pytest.raises(StaticEntryError) as excinfo:
        parse_static_entries(["mail.example.com", entry], DOCS)
    assert f"static entry {entry!r} is refused: " in str(excinfo.value)
    assert why in str(excinfo.value)


def test_parse_static_entries_refuses_documentation_ranges_by_default():
    for entry in ("192.0.2.1", "2001:db8::/32"):
        with pytest.raises(StaticEntryError, match="inside special-purpose space"):
            parse_static_entries([entry])


def test_parse_static_entries_accepts_narrow_entries_by_default():
    static = parse_static_entries(
        ["8.8.4.0/24", "40.92.0.0/15", "2a01:111:f400::/48", "google.com", r"/\.outbound\.protection\.outlook\.com$/"]
    )
    assert static.networks == nets("8.8.4.0/24", "40.92.0.0/15", "2a01:111:f400::/48")
    assert static.hostnames == ["google.com"]


def test_parse_static_entries_follows_the_policy_floor_and_allow_list():
    with pytest.raises(StaticEntryError, match="wider than the floor /12"):
        parse_static_entries(["8.0.0.0/8"])
    loose = GuardPolicy.from_options(min_prefix4=8, allowed_networks=["172.30.53.0/24"])
    static = parse_static_entries(["8.0.0.0/8", "172.30.53.96/29"], loose)
    assert static.networks == nets("8.0.0.0/8", "172.30.53.96/29")


def test_static_entry_error_is_an_output_error_and_a_value_error():
    assert issubclass(StaticEntryError, OutputError)
    assert issubclass(OutputError, ValueError)


def test_parse_static_entries_accepts_none_and_empty():
    assert parse_static_entries(None) == StaticEntries([], [], [], [])
    assert not parse_static_entries([])


# --- exact output per format ------------------------------------------------------------------


def test_render_postgrey_exact():
    static = parse_static_entries(["192.0.2.0/24", "mail.example.com", r"/\.outbound\.example\.org$/"], DOCS)
    result = render("postgrey", WALK, static, HEADER)
    assert isinstance(result, Rendered)
    assert result.content == head(
        "# Format: postgrey whitelist_clients (address or CIDR, reverse-DNS name suffix, /regex/)."
    ) + (
        "192.0.2.0/24\n"
        "198.51.100.0/25\n"
        "203.0.113.7\n"
        "2001:db8:1::/48\n"
        "2001:db8:2::5\n"
        "mail.example.com\n"
        "/\\.outbound\\.example\\.org$/\n"
    )
    assert result.warnings == []
    assert result.entry_count == 7


def test_render_cidr_exact_and_action():
    result = render("cidr", WALK, parse_static_entries(["192.0.2.1"], DOCS), HEADER)
    assert result.content == head(
        "# Format: Postfix cidr table (check_client_access or postscreen_access_list)."
    ) + (
        "192.0.2.1/32\tpermit\n"
        "198.51.100.0/25\tpermit\n"
        "203.0.113.7/32\tpermit\n"
        "2001:db8:1::/48\tpermit\n"
        "2001:db8:2::5/128\tpermit\n"
    )
    permit = render("cidr", WALK, None, HEADER, cidr_action="permit")
    assert permit.content.splitlines()[3:] == [
        "198.51.100.0/25\tpermit",
        "203.0.113.7/32\tpermit",
        "2001:db8:1::/48\tpermit",
        "2001:db8:2::5/128\tpermit",
    ]


@pytest.mark.parametrize("action", ["", "   ", "OK\nREJECT", "OK\tx"])
def test_render_cidr_rejects_bad_action(action):
    with pytest.raises(OutputError, match="cidr_action"):
        render("cidr", WALK, None, HEADER, cidr_action=action)


def test_render_exim_exact():
    static = parse_static_entries(
        ["mail.example.com", r"/.*foo\.com$/", r"/^relay[0-9]+\.example\.net$/", r"/mx-bar\.example\.org/"], DOCS
    )
    result = render("exim", WALK, static, HEADER)
    assert result.content == head(
        "# Format: Exim host list file (address or CIDR, ^regex matched against the reverse-DNS name)."
    ) + (
        "198.51.100.0/25\n"
        "203.0.113.7\n"
        "2001:db8:1::/48\n"
        "2001:db8:2::5\n"
        "^(?:.+\\.)?mail\\.example\\.com$\n"
        "^.*foo\\.com$\n"
        "^relay[0-9]+\\.example\\.net$\n"
        "^.*mx-bar\\.example\\.org\n"
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (r".*foo\.com$", r"^.*foo\.com$"),
        (r"^mx\d+\.example\.com$", r"^mx\d+\.example\.com$"),
        (r"foo\.com$", r"^.*foo\.com$"),
    ],
)
def test_exim_regex_conversion_keeps_postgrey_meaning(body, expected):
    converted = exim_regex(body)
    assert converted == expected
    for name in ("mx1.foo.com", "foo.com", "mx1.example.com", "foo.com.evil.net"):
        assert bool(re.search(body, name)) == bool(re.search(converted, name))


def test_exim_hostname_matches_like_postgrey():
    pattern = re.compile(exim_hostname("example.com"))
    assert pattern.match("example.com")
    assert pattern.match("mx1.mail.example.com")
    assert not pattern.match("badexample.com")
    assert not pattern.match("example.com.evil.net")


def test_render_spamd_exact():
    result = render("spamd", WALK, parse_static_entries(["192.0.2.0/24"], DOCS), HEADER)
    assert result.content == head('# Format: pf table file (e.g. table <nospamd> persist file "...").') + (
        "192.0.2.0/24\n198.51.100.0/25\n203.0.113.7\n2001:db8:1::/48\n2001:db8:2::5\n"
    )


def test_render_sqlgrey_exact_expansion_and_ipv6_warning():
    walk = nets("192.0.2.0/23", "198.51.100.64/30", "203.0.113.7/32", "2001:db8:1::/48", "2001:db8:2::/48")
    result = render("sqlgrey", walk, None, HEADER)
    assert result.content == head("# Format: sqlgrey clients_ip_whitelist.local.") + (
        "192.0.2\n192.0.3\n198.51.100.64\n198.51.100.65\n198.51.100.66\n198.51.100.67\n203.0.113.7\n"
    )
    assert len(result.warnings) == 1
    assert "left out 2 IPv6 network(s)" in result.warnings[0]
    assert result.entry_count == 7


def entry_lines(content):
    return [line for line in content.splitlines() if not line.startswith("#")]


def test_render_sqlgrey_counts():
    slash20 = entry_lines(render("sqlgrey", nets("10.1.16.0/20"), None, []).content)
    assert slash20 == [f"10.1.{i}" for i in range(16, 32)]
    slash26 = entry_lines(render("sqlgrey", nets("10.1.2.64/26"), None, []).content)
    assert slash26 == [f"10.1.2.{i}" for i in range(64, 128)]
    slash16 = entry_lines(render("sqlgrey", nets("10.1.0.0/16"), None, []).content)
    assert len(slash16) == 256
    assert slash16[0] == "10.1.0" and slash16[-1] == "10.1.255"
    # Never the 1- or 2-octet forms: no sqlgrey release reads them.
    assert all(line.count(".") >= 2 for line in slash16)


def test_render_sqlgrey_cap():
    at_cap = entry_lines(render("sqlgrey", nets("10.16.0.0/12"), None, []).content)
    assert len(at_cap) == SQLGREY_MAX_LINES_PER_NETWORK
    with pytest.raises(OutputError) as excinfo:
        render("sqlgrey", nets("10.0.0.0/11"), None, [])
    message = str(excinfo.value)
    assert "10.0.0.0/11" in message
    assert "8192" in message
    assert str(SQLGREY_MAX_LINES_PER_NETWORK) in message
    assert not isinstance(excinfo.value, StaticEntryError)


def test_render_sqlgrey_cidr_mode():
    walk = nets("10.0.0.0/8", "203.0.113.7/32", "2001:db8::/32")
    result = render("sqlgrey", walk, None, [], sqlgrey_cidr=True)
    assert entry_lines(result.content) == ["10.0.0.0/8", "203.0.113.7", "2001:db8::/32"]
    assert result.warnings == []


@pytest.mark.parametrize("fmt", ["cidr", "sqlgrey", "spamd"])
@pytest.mark.parametrize("entry", ["mail.example.com", r"/\.example\.com$/"])
def test_formats_without_names_reject_hostnames_and_regexes(fmt, entry):
    static = parse_static_entries(["192.0.2.1", entry], DOCS)
    with pytest.raises(StaticEntryError) as excinfo:
        render(fmt, WALK, static, HEADER)
    assert repr(entry) in str(excinfo.value)


def test_rejection_messages_explain_where_names_go():
    static = parse_static_entries(["mail.example.com"], DOCS)
    with pytest.raises(StaticEntryError, match="check_client_access hash"):
        render("cidr", WALK, static, [])
    with pytest.raises(StaticEntryError, match="clients_fqdn_whitelist"):
        render("sqlgrey", WALK, static, [])
    with pytest.raises(StaticEntryError, match="A/AAAA"):
        render("spamd", WALK, static, [])


# --- general properties -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_is_deterministic_and_order_independent(fmt):
    static = parse_static_entries(["192.0.2.0/24"], DOCS)
    first = render(fmt, WALK, static, HEADER)
    again = render(fmt, list(reversed(WALK)), static, HEADER)
    assert first.content == again.content
    assert first.content.endswith("\n")
    assert first.content.startswith("# ")
    assert first.content.splitlines()[0] == GENERATED_LINE
    # No timestamps of any common shape.
    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}", first.content)


NETWORK_FORMATS = [fmt for fmt in FORMATS if fmt not in NAMES_ONLY_FORMATS]


@pytest.mark.parametrize("fmt", NETWORK_FORMATS)
def test_render_merges_static_networks_and_collapses(fmt):
    static = parse_static_entries(["192.0.2.0/25"], DOCS)
    result = render(fmt, nets("192.0.2.128/25"), static, [])
    lines = entry_lines(result.content)
    expected = {"sqlgrey": "192.0.2", "cidr": "192.0.2.0/24\tpermit"}.get(fmt, "192.0.2.0/24")
    assert lines == [expected]


def test_render_accepts_network_strings():
    result = render("postgrey", ["198.51.100.0/24"], None, [])
    assert entry_lines(result.content) == ["198.51.100.0/24"]


def test_render_header_lines():
    result = render("postgrey", WALK, None, ["plain", "# already a comment", ""])
    assert result.content.splitlines()[2:5] == ["# plain", "# already a comment", "#"]
    with pytest.raises(OutputError, match="line break"):
        render("postgrey", WALK, None, ["two\nlines"])


def test_render_unknown_format():
    with pytest.raises(OutputError, match="unknown output format 'bind'"):
        render("bind", WALK, None, [])


# --- provenance: the chain of each netblock as a comment line before it ------------------------

GMAIL = "gmail.com > redirect=_spf.google.com > include:_netblocks.google.com"
# (network, chain) as the walker records them (RootResult.provenance), per root, before collapsing.
PROVENANCE = [
    (ipaddress.ip_network("198.51.100.0/25"), f"{GMAIL} > ip4:198.51.100.0/25"),
    (ipaddress.ip_network("203.0.113.7/32"), "example.net > a:mail.example.net"),
    (ipaddress.ip_network("2001:db8:1::/48"), "example.net > include:_v6.example.net > ip6:2001:db8:1::/48"),
    (ipaddress.ip_network("2001:db8:2::5/128"), "example.net > mx"),
]
CHAINS = {
    "198.51.100.0/25": f"# {GMAIL}",
    "203.0.113.7": "# example.net > a:mail.example.net",
    "2001:db8:1::/48": "# example.net > include:_v6.example.net",
    "2001:db8:2::5": "# example.net > mx",
    "192.0.2.0/24": "# static entry",
}


def noted(content):
    """(comment line, entry line) for every entry of a rendered file, after the header."""
    lines = content.splitlines()
    body = lines[lines.index(HEADER_LINE) + 1:]
    return list(zip(body[0::2], body[1::2], strict=True))


HEADER_LINE = f"# {HEADER[0]}"


def test_render_postgrey_with_provenance_exact():
    static = parse_static_entries(["192.0.2.0/24", "mail.example.com", r"/\.outbound\.example\.org$/"], DOCS)
    result = render("postgrey", WALK, static, HEADER, provenance=PROVENANCE)
    assert result.content == head(
        "# Format: postgrey whitelist_clients (address or CIDR, reverse-DNS name suffix, /regex/)."
    ) + (
        "# static entry\n"
        "192.0.2.0/24\n"
        f"# {GMAIL}\n"
        "198.51.100.0/25\n"
        "# example.net > a:mail.example.net\n"
        "203.0.113.7\n"
        "# example.net > include:_v6.example.net\n"
        "2001:db8:1::/48\n"
        "# example.net > mx\n"
        "2001:db8:2::5\n"
        "# static entry\n"
        "mail.example.com\n"
        "# static entry\n"
        "/\\.outbound\\.example\\.org$/\n"
    )
    assert result.entry_count == 7  # comment lines are not entries


@pytest.mark.parametrize("fmt", NETWORK_FORMATS)
def test_each_format_writes_each_netblocks_chain_on_the_line_before_it(fmt):
    static = parse_static_entries(["192.0.2.0/24"], DOCS)
    result = render(fmt, WALK, static, HEADER, provenance=PROVENANCE, sqlgrey_cidr=True)
    pairs = noted(result.content)
    assert [entry.split("\t")[0].removesuffix("/32").removesuffix("/128") for _, entry in pairs] == [
        "192.0.2.0/24", "198.51.100.0/25", "203.0.113.7", "2001:db8:1::/48", "2001:db8:2::5"]
    for comment, entry in pairs:
        assert comment == CHAINS[entry.split("\t")[0].removesuffix("/32").removesuffix("/128")]
        # Never a comment on an entry's own line: a Postfix cidr table reads it as part of the action.
        assert "#" not in entry
    assert result.entry_count == len(pairs)


def test_sqlgrey_class_c_form_has_one_comment_before_the_lines_of_one_network():
    walk = nets("192.0.2.0/23", "198.51.100.64/30", "2001:db8:1::/48")
    provenance = [(walk[0], "a.example > ip4:192.0.2.0/23"), (walk[1], "b.example > include:_spf.b.example > ip4:x"),
                  (walk[2], "c.example > ip6:2001:db8:1::/48")]
    result = render("sqlgrey", walk, None, HEADER, provenance=provenance)
    assert result.content.splitlines()[3:] == [
        "# a.example", "192.0.2", "192.0.3",
        "# b.example > include:_spf.b.example", "198.51.100.64", "198.51.100.65", "198.51.100.66", "198.51.100.67",
    ]  # the IPv6 network is left out, and so is its comment
    assert result.entry_count == 6


def test_a_collapsed_network_names_the_chains_of_every_network_it_was_built_from():
    walked = nets("192.0.2.0/25", "192.0.2.128/26", "192.0.2.192/26")
    provenance = [
        (walked[0], "b.example > include:_spf.b.example > ip4:192.0.2.0/25"),
        (walked[1], "a.example > ip4:192.0.2.128/26"),
        (walked[2], "a.example > ip4:192.0.2.192/26"),  # the same chain once the network is dropped
        ("192.0.2.128/26", "b.example > include:_spf.b.example > ip4:192.0.2.128/26"),
    ]
    static = parse_static_entries(["192.0.2.64/26"], DOCS)
    result = render("postgrey", walked, static, [], provenance=provenance)
    assert result.content.splitlines()[2:] == [
        "# static entry ; a.example ; b.example > include:_spf.b.example", "192.0.2.0/24"]


def test_more_than_a_few_chains_end_in_a_count():
    provenance = [(ipaddress.ip_network("192.0.2.0/24"), f"root{i}.example > include:_spf.example") for i in range(7)]
    result = render("spamd", ["192.0.2.0/24"], None, [], provenance=provenance)
    assert result.content.splitlines()[2] == (
        "# root0.example > include:_spf.example ; root1.example > include:_spf.example ; "
        "root2.example > include:_spf.example ; +4 more"
    )


def test_a_comment_line_stays_far_below_exims_line_buffer():
    """Exim reads a list file with fgets() into 1024 bytes: the rest of a longer line would be an item."""
    deep = " > ".join(f"include:{'x' * 60}{i}.example" for i in range(10))
    provenance = [(ipaddress.ip_network("192.0.2.0/24"), f"long{i}.example > {deep}") for i in range(3)]
    lines = render("exim", ["192.0.2.0/24", "198.51.100.0/24"], None, [],
                   provenance=[*provenance, (ipaddress.ip_network("198.51.100.0/24"), f"one.example > {deep}")]
                   ).content.splitlines()
    assert max(len(line) for line in lines) <= PROVENANCE_MAX_LINE < 1000
    assert lines[2].startswith("# long0.example > include:") and lines[2].endswith(" ; +2 more")
    assert lines[3] == "192.0.2.0/24"
    # A single chain too long for the line keeps its start (the root) and its end (the last include).
    assert lines[4].startswith("# one.example > include:") and " ... " in lines[4]
    assert lines[4].endswith("x9.example") and lines[5] == "198.51.100.0/24"


def test_a_chain_is_written_in_printable_ascii():
    chain = "bad.example > include:caf\u00e9.example > a:x\x01\ty.example"
    result = render("postgrey", ["192.0.2.0/24"], None, [], provenance=[("192.0.2.0/24", chain)])
    assert result.content.splitlines()[2] == "# bad.example > include:caf\\xe9.example > a:x\\x01\\ty.example"
    assert result.content.isascii()


def test_display_chain_drops_only_a_final_literal_term():
    assert display_chain(f"{GMAIL} > ip4:35.190.247.0/24") == GMAIL
    assert display_chain("example.com > +ip6:2001:db8::/32") == "example.com"
    assert display_chain("example.com > a:mail.example.com/24") == "example.com > a:mail.example.com/24"
    assert display_chain("example.com") == "example.com"
    assert provenance_comment([]) == "# no chain recorded"


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_with_provenance_is_byte_identical_across_renders(fmt):
    static = parse_static_entries(["192.0.2.0/24"], DOCS)
    first = render(fmt, WALK, static, HEADER, provenance=PROVENANCE)
    again = render(fmt, list(reversed(WALK)), static, HEADER, provenance=list(reversed(PROVENANCE)))
    assert first.content.encode() == again.content.encode()


def test_without_provenance_no_entry_gets_a_comment():
    result = render("postgrey", WALK, parse_static_entries(["mail.example.com"], DOCS), HEADER)
    assert [line for line in result.content.splitlines() if line.startswith("#")] == [
        GENERATED_LINE, result.content.splitlines()[1], HEADER_LINE]


def test_postgrey_names_holds_the_static_names_and_regexes_and_never_a_network():
    # postgrey behind the Postfix cidr table: every address, walked or static, is the table's.
    static = parse_static_entries(["192.0.2.0/24", "mail.example.org", "/^smtp[0-9]+\\.example\\.net$/"], DOCS)
    result = render("postgrey-names", WALK, static, HEADER, provenance=PROVENANCE)
    assert entry_lines(result.content) == ["mail.example.org", "/^smtp[0-9]+\\.example\\.net$/"]
    assert result.entry_count == 2
    assert "cidr table" in result.content.splitlines()[1]


def test_postgrey_names_without_static_names_is_an_empty_list():
    result = render("postgrey-names", WALK, parse_static_entries(["192.0.2.0/24"], DOCS), [])
    assert entry_lines(result.content) == [] and result.entry_count == 0

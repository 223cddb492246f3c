"""Unit tests for the update planning ("nothing is lost") and the atomic writes (no DNS)."""

from __future__ import annotations

import ipaddress
import json
import os
import stat

import pytest

from spfwalk import update as update_mod
from spfwalk.guards import GuardPolicy
from spfwalk.model import NONE, OK, PERMERROR, TEMPERROR, RootResult, WalkReport
from spfwalk.outputs import StaticEntryError
from spfwalk.outputs import parse_static_entries as parse_static_entries_guarded
from spfwalk.update import (
    Limits,
    OutputSpec,
    StateError,
    UpdateRefused,
    apply_update,
    default_state_path,
    dump_state,
    networks_in,
    plan_outputs,
    plan_update,
    read_state,
    write_atomically,
)
from tests.support.guard import doc_guard


def nets(*texts):
    return [ipaddress.ip_network(t) for t in texts]


def root(domain, *networks, status=OK, errors=()):
    return RootResult(domain=domain, status=status, networks=nets(*networks), errors=list(errors))


def report(*roots):
    return WalkReport(roots={r.domain: r for r in roots})


def write_state(path, roots):
    path.write_text(json.dumps({"version": 1, "roots": roots}))


@pytest.fixture
def out(tmp_path):
    return tmp_path / "whitelist_clients.local"


def plan(rep, out, static=None, **kwargs):
    kwargs.setdefault("guard", doc_guard())
    return plan_update(rep, kwargs.pop("fmt", "postgrey"), static, str(out), None, **kwargs)


def parse_static_entries(entries):
    """Static entries in the documentation ranges, which these tests use and the guard refuses by default."""
    return parse_static_entries_guarded(entries, doc_guard())


def entries(content):
    return [line for line in content.splitlines() if not line.startswith("#")]


# --- first run and the state file -------------------------------------------------------------


def test_first_run_writes_output_and_state(out):
    rep = report(
        root("gmail.com", "172.217.0.0/19", "2001:4860:4000::/36"),
        root("example.net", "192.0.2.0/24"),
    )
    p = plan(rep, out)
    assert p.refused is None
    assert p.changed and p.output_changed and p.state_changed
    assert p.previous_content is None and p.previous_state_content is None
    assert p.state_path == str(out) + ".state.json" == default_state_path(str(out))
    assert p.network_count == 3
    assert entries(p.content) == ["172.217.0.0/19", "192.0.2.0/24", "2001:4860:4000::/36"]
    assert "# example.net: 1 netblock(s)\n" in p.content
    assert "# gmail.com: 2 netblock(s)\n" in p.content
    assert p.roots["gmail.com"]["source"] == "fresh"
    assert p.roots["gmail.com"]["status"] == OK
    assert p.roots["gmail.com"]["network_count"] == 2

    assert apply_update(p) is True
    assert out.read_text() == p.content
    state_text = (tmp_path_state := out.parent / (out.name + ".state.json")).read_text()
    assert state_text == p.state_content
    assert state_text == (
        "{\n"
        '  "roots": {\n'
        '    "example.net": [\n'
        '      "192.0.2.0/24"\n'
        "    ],\n"
        '    "gmail.com": [\n'
        '      "172.217.0.0/19",\n'
        '      "2001:4860:4000::/36"\n'
        "    ]\n"
        "  },\n"
        '  "version": 1\n'
        "}\n"
    )
    assert read_state(str(tmp_path_state))[1] == {
        "example.net": nets("192.0.2.0/24"),
        "gmail.com": nets("172.217.0.0/19", "2001:4860:4000::/36"),
    }


def test_second_identical_run_changes_nothing_and_keeps_mtime(out):
    rep = report(root("gmail.com", "172.217.0.0/19"))
    apply_update(plan(rep, out))
    state = out.parent / (out.name + ".state.json")
    for path in (out, state):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    again = plan(rep, out)
    assert again.refused is None
    assert not again.changed and not again.output_changed and not again.state_changed
    assert again.previous_content == again.content
    assert apply_update(again) is False
    assert out.stat().st_mtime_ns == 1_000_000_000
    assert state.stat().st_mtime_ns == 1_000_000_000


def test_plan_is_deterministic(out):
    rep = report(root("b.example", "198.51.100.0/24"), root("a.example", "192.0.2.0/24"))
    rep_reordered = report(root("a.example", "192.0.2.0/24"), root("b.example", "198.51.100.0/24"))
    first, second = plan(rep, out), plan(rep_reordered, out)
    assert first.content == second.content
    assert first.state_content == second.state_content
    assert first.content.endswith("\n") and first.state_content.endswith("\n")


def test_plan_without_output_path_writes_nothing_and_has_no_state(tmp_path):
    p = plan_update(report(root("gmail.com", "172.217.0.0/19")), "cidr", None, None, None, guard=doc_guard())
    assert p.refused is None
    assert p.state_path is None
    assert not p.changed
    assert entries(p.content) == ["172.217.0.0/19\tpermit"]
    with pytest.raises(ValueError):
        apply_update(p)


def test_cidr_action_and_static_entries_pass_through(out):
    static = parse_static_entries(["192.0.2.77/24"])
    p = plan(report(root("gmail.com", "172.217.0.0/19")), out, static, fmt="cidr", cidr_action="permit")
    assert entries(p.content) == ["172.217.0.0/19\tpermit", "192.0.2.0/24\tpermit"]
    assert any("host bits" in w for w in p.warnings)
    assert "# static entries: 1 network(s), 0 host name(s), 0 regex(es)" in p.content
    # Static networks are not part of any root's state.
    assert json.loads(p.state_content)["roots"] == {"gmail.com": ["172.217.0.0/19"]}


def test_render_errors_propagate(out):
    static = parse_static_entries(["mail.example.com"])
    with pytest.raises(StaticEntryError):
        plan(report(root("gmail.com", "172.217.0.0/19")), out, static, fmt="spamd")


# --- last known good --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [TEMPERROR, PERMERROR, NONE])
def test_failed_root_falls_back_to_last_known_good(out, status):
    state = out.parent / (out.name + ".state.json")
    write_state(state, {"gmail.com": ["172.217.0.0/19"], "example.net": ["192.0.2.0/24"]})
    rep = report(
        root("gmail.com", status=status, errors=["_spf.google.com: SERVFAIL"]),
        root("example.net", "192.0.2.0/24"),
    )
    p = plan(rep, out)
    assert p.refused is None
    assert p.kept_last_good == ["gmail.com"]
    assert entries(p.content) == ["172.217.0.0/19", "192.0.2.0/24"]
    # The header does not say which roots fell back: a fallback must not rewrite the file.
    assert "# gmail.com: 1 netblock(s)\n" in p.content
    assert p.roots["gmail.com"]["source"] == "last_good"
    assert p.roots["gmail.com"]["status"] == status
    assert p.roots["gmail.com"]["errors"] == ["_spf.google.com: SERVFAIL"]
    assert p.roots["example.net"]["source"] == "fresh"
    assert any("gmail.com" in w and "SERVFAIL" in w and "last known good" in w for w in p.warnings)
    # The last known good netblocks stay in the state unchanged.
    assert json.loads(p.state_content)["roots"]["gmail.com"] == ["172.217.0.0/19"]


def test_root_names_are_matched_case_insensitively(out):
    write_state(out.parent / (out.name + ".state.json"), {"gmail.com": ["172.217.0.0/19"]})
    p = plan(report(root("Gmail.COM.", status=TEMPERROR, errors=["timeout"])), out)
    assert p.refused is None
    assert p.kept_last_good == ["Gmail.COM."]
    assert entries(p.content) == ["172.217.0.0/19"]


def test_failed_root_without_last_good_is_refused(out):
    write_state(out.parent / (out.name + ".state.json"), {"example.net": ["192.0.2.0/24"]})
    out.write_text("old whitelist\n")
    rep = report(
        root("example.net", "192.0.2.0/24"),
        root("outlook.com", status=TEMPERROR, errors=["spf.protection.outlook.com: timeout"]),
    )
    p = plan(rep, out)
    assert p.refused is not None
    assert "outlook.com" in p.refused
    assert "temperror" in p.refused
    assert "spf.protection.outlook.com: timeout" in p.refused
    assert "partial" in p.refused
    assert p.content is None
    assert not p.changed
    assert p.roots["outlook.com"]["source"] is None
    with pytest.raises(UpdateRefused, match=r"outlook\.com"):
        apply_update(p)
    assert out.read_text() == "old whitelist\n"


def test_failed_root_on_first_run_is_refused(out):
    p = plan(report(root("example.net", status=NONE)), out)
    assert p.refused and "example.net (none: no details)" in p.refused
    with pytest.raises(UpdateRefused):
        apply_update(p)
    assert not out.exists()
    assert not (out.parent / (out.name + ".state.json")).exists()


# --- empty ------------------------------------------------------------------------------------


def test_empty_whitelist_is_refused(out):
    p = plan(report(root("example.net")), out)
    assert p.refused is not None and "empty whitelist" in p.refused
    assert any("found no netblocks" in w for w in p.warnings)
    with pytest.raises(UpdateRefused):
        apply_update(p)
    assert not out.exists()


def test_sqlgrey_with_only_ipv6_is_refused_as_empty(out):
    p = plan(report(root("example.net", "2001:db8::/32")), out, fmt="sqlgrey")
    assert p.refused is not None and "empty whitelist" in p.refused


def test_postgrey_names_may_be_empty_the_networks_are_the_cidr_tables(out):
    # postgrey behind the Postfix cidr table: no static names, nothing to write but the header.
    p = plan(report(walked("gmail.com", "172.217.0.0/19")), out, fmt="postgrey-names")
    assert p.refused is None and entries(p.content) == []
    assert "1 after merging, in the cidr table asked first" in p.content


def test_a_full_postgrey_list_is_no_baseline_of_its_names_only_successor(out):
    # A host moving to the cidr table: its old list held every network, the new one holds none.
    # That is no shrink of the providers (the cidr output carries them, with its own baseline).
    out.write_text("# old list\n172.217.0.0/19\nmail.example.com\n")
    p = plan(report(walked("gmail.com", "172.217.0.0/19")), out, parse_static_entries(["mail.example.com"]),
             fmt="postgrey-names")
    assert p.refused is None and entries(p.content) == ["mail.example.com"]
    cidr = out.with_name("provider_clients.cidr")
    cidr.write_text("# old\n172.217.0.0/19\tpermit\n")
    shrunk = plan(report(walked("gmail.com", "172.217.0.0/24")), cidr, fmt="cidr")
    assert shrunk.refused is not None and "no state yet" in shrunk.refused


def test_static_entries_alone_are_not_empty(out):
    p = plan(report(), out, parse_static_entries(["mail.example.com"]))
    assert p.refused is None
    assert entries(p.content) == ["mail.example.com"]
    assert p.network_count == 0


# --- shrink guard -----------------------------------------------------------------------------


def test_shrink_beyond_max_is_refused_naming_root_and_percentage(out):
    write_state(out.parent / (out.name + ".state.json"), {"gmail.com": ["172.217.0.0/22"]})
    out.write_text("old\n")
    p = plan(report(root("gmail.com", "172.217.0.0/24")), out)
    assert p.refused is not None
    assert "gmail.com" in p.refused
    assert "75.0%" in p.refused
    assert "force" in p.refused
    assert not p.changed
    # The refused change can still be shown.
    assert entries(p.content) == ["172.217.0.0/24"]
    with pytest.raises(UpdateRefused):
        apply_update(p)
    assert out.read_text() == "old\n"


def test_shrink_with_force_is_written_with_a_warning(out):
    write_state(out.parent / (out.name + ".state.json"), {"gmail.com": ["172.217.0.0/22"]})
    p = plan(report(root("gmail.com", "172.217.0.0/24")), out, force=True)
    assert p.refused is None
    assert any("gmail.com" in w and "75.0%" in w and "force" in w for w in p.warnings)
    assert apply_update(p) is True
    assert entries(out.read_text()) == ["172.217.0.0/24"]


def test_shrink_within_max_and_growth_are_accepted(out):
    write_state(
        out.parent / (out.name + ".state.json"),
        {"gmail.com": ["172.217.0.0/22"], "example.net": ["45.0.0.0/24"]},
    )
    rep = report(
        root("gmail.com", "172.217.0.0/23", "172.217.2.0/24"),  # lost exactly 25 %
        root("example.net", "45.0.0.0/23"),  # doubled: within max_growth
        root("new.example", "198.51.100.0/24"),  # not in the old state: no guard
    )
    p = plan(rep, out)
    assert p.refused is None
    assert p.warnings == []


def test_shrink_guard_is_per_family(out):
    write_state(
        out.parent / (out.name + ".state.json"),
        {"gmail.com": ["172.217.0.0/19", "2001:4860:4000::/36"]},
    )
    p = plan(report(root("gmail.com", "172.217.0.0/19")), out)
    assert p.refused is not None and "100.0%" in p.refused


def test_max_shrink_is_configurable_and_validated(out):
    write_state(out.parent / (out.name + ".state.json"), {"gmail.com": ["172.217.0.0/22"]})
    assert plan(report(root("gmail.com", "172.217.0.0/24")), out, max_shrink=0.8).refused is None
    with pytest.raises(ValueError, match="max_shrink"):
        plan(report(root("gmail.com", "172.217.0.0/24")), out, max_shrink=1.5)


# --- removed roots ----------------------------------------------------------------------------


def test_roots_no_longer_requested_are_dropped(out):
    state = out.parent / (out.name + ".state.json")
    write_state(state, {"gmail.com": ["172.217.0.0/19"], "yahoo.com": ["98.136.0.0/14"]})
    p = plan(report(root("gmail.com", "172.217.0.0/19")), out)
    assert p.refused is None
    assert p.removed_roots == ["yahoo.com"]
    assert json.loads(p.state_content)["roots"] == {"gmail.com": ["172.217.0.0/19"]}
    assert entries(p.content) == ["172.217.0.0/19"]
    assert p.state_changed
    apply_update(p)
    assert "yahoo.com" not in state.read_text()


# --- the state file ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"version": 2, "roots": {}}', "unsupported version"),
        ('{"version": 1}', '"roots" is missing'),
        ('{"version": 1, "roots": {"gmail.com": "172.217.0.0/19"}}', "not a list"),
        ('{"version": 1, "roots": {"gmail.com": [42]}}', "not a string"),
        ('{"version": 1, "roots": {"gmail.com": ["300.1.2.0/24"]}}', "invalid netblock '300.1.2.0/24'"),
    ],
)
def test_corrupt_state_file_is_an_error(out, text, detail):
    state = out.parent / (out.name + ".state.json")
    state.write_text(text)
    with pytest.raises(StateError) as excinfo:
        plan(report(root("gmail.com", status=TEMPERROR)), out)
    message = str(excinfo.value)
    assert str(state) in message
    assert detail in message
    assert "corrupt" in message


def test_unreadable_state_file_is_an_error(out):
    state = out.parent / (out.name + ".state.json")
    state.mkdir()
    with pytest.raises(StateError, match="cannot read the state file"):
        plan(report(root("gmail.com", "172.217.0.0/19")), out)


def test_explicit_state_path(tmp_path, out):
    state = tmp_path / "elsewhere.json"
    state.write_text(dump_state({"gmail.com": nets("172.217.0.0/19")}))
    p = plan_update(report(root("gmail.com", status=TEMPERROR)), "postgrey", None, str(out), str(state),
                    guard=doc_guard())
    assert p.state_path == str(state)
    assert p.kept_last_good == ["gmail.com"]
    assert p.previous_state_content == state.read_text()
    assert not p.state_changed


# --- atomic writes ----------------------------------------------------------------------------


def test_failed_replace_keeps_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "whitelist"
    target.write_text("old content\n")

    def boom(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(update_mod.os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomically(str(target), "new content\n")
    assert target.read_text() == "old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whitelist"]


def test_failed_write_during_apply_keeps_old_files(out, monkeypatch):
    rep = report(root("gmail.com", "172.217.0.0/19"))
    apply_update(plan(rep, out))
    before = {p.name: p.read_text() for p in out.parent.iterdir()}
    p = plan(report(root("gmail.com", "172.217.0.0/19", "192.0.2.0/24")), out)
    assert p.changed

    def boom(src, dst):
        raise OSError("no space left")

    monkeypatch.setattr(update_mod.os, "replace", boom)
    with pytest.raises(OSError):
        apply_update(p)
    assert {p.name: p.read_text() for p in out.parent.iterdir()} == before


def test_write_atomically_unchanged_content_is_not_touched(tmp_path):
    target = tmp_path / "whitelist"
    target.write_text("same\n")
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    assert write_atomically(str(target), "same\n") is False
    assert target.stat().st_mtime_ns == 1_000_000_000
    assert write_atomically(str(target), "different\n") is True
    assert target.read_text() == "different\n"
    assert target.stat().st_mtime_ns != 1_000_000_000


def test_write_atomically_modes(tmp_path):
    new = tmp_path / "new"
    assert write_atomically(str(new), "x\n") is True
    assert stat.S_IMODE(new.stat().st_mode) == 0o644

    existing = tmp_path / "existing"
    existing.write_text("old\n")
    existing.chmod(0o640)
    write_atomically(str(existing), "new\n")
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640

    explicit = tmp_path / "explicit"
    write_atomically(str(explicit), "x\n", mode=0o600)
    assert stat.S_IMODE(explicit.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "explicit", "new"]


def test_apply_writes_only_changed_files(out):
    rep = report(root("gmail.com", "172.217.0.0/19"))
    apply_update(plan(rep, out))
    state = out.parent / (out.name + ".state.json")
    os.utime(state, ns=(1_000_000_000, 1_000_000_000))
    # Same roots and netblocks, different static entries: only the output changes.
    p = plan(rep, out, parse_static_entries(["192.0.2.0/24"]))
    assert p.output_changed and not p.state_changed
    assert apply_update(p) is True
    assert state.stat().st_mtime_ns == 1_000_000_000
    assert "192.0.2.0/24" in out.read_text()


# --- the width guard, the growth guard, several outputs from one walk (issue 10) ---------------


def walked(domain, *networks, chain=None):
    """A root as the walker returns it, with the chain each netblock came from."""
    result = root(domain, *networks)
    result.provenance = {str(n): [chain or f"{domain} > ip4:{n}"] for n in result.networks}
    return result


@pytest.mark.parametrize("network", ["0.0.0.0/0", "0.0.0.0/1", "64.0.0.0/11", "10.1.0.0/16", "::/0",
                                     "2a00::/27", "fe80::/64", "192.0.2.0/24"])
def test_a_netblock_the_guard_refuses_fails_its_root_and_the_update(out, network):
    write_state(out.parent / (out.name + ".state.json"), {"gmail.com": ["172.217.0.0/19"]})
    chain = f"gmail.com > include:_netblocks.google.com > ip:{network}"
    p = plan_update(report(walked("gmail.com", "172.217.0.0/19", network, chain=chain)), "postgrey", None,
                    str(out), None)
    assert p.refused is not None and network in p.refused and chain in p.refused
    assert not p.changed
    assert p.kept_last_good == ["gmail.com"]
    assert p.roots["gmail.com"]["status"] == PERMERROR
    assert entries(p.content) == ["172.217.0.0/19"]  # what stays in place


def test_a_refused_netblock_without_last_good_list_refuses_the_update(out):
    p = plan_update(report(walked("gmail.com", "0.0.0.0/1", "128.0.0.0/1")), "postgrey", None, str(out), None)
    assert p.refused is not None and "0.0.0.0/1" in p.refused and "partial" in p.refused
    assert not p.changed


def test_force_never_accepts_a_refused_netblock(out):
    p = plan_update(report(walked("gmail.com", "0.0.0.0/0")), "postgrey", None, str(out), None, force=True)
    assert p.refused is not None


def test_allowed_networks_and_a_lower_floor_let_a_lab_keep_its_own_networks(out):
    lab = report(walked("lab.test", "172.30.53.96/29"), walked("wide.test", "64.0.0.0/11"))
    assert plan_update(lab, "postgrey", None, str(out), None).refused is not None
    guard = GuardPolicy.from_options(11, 28, ["172.30.53.0/24"])
    p = plan_update(lab, "postgrey", None, str(out), None, guard=guard)
    assert p.refused is None
    assert entries(p.content) == ["64.0.0.0/11", "172.30.53.96/29"]


def test_networks_that_collapse_wider_than_the_floor_are_refused(out):
    # Two roots, each within the floor, that merge into a /11.
    p = plan_update(report(walked("a.test", "64.0.0.0/12"), walked("b.test", "64.16.0.0/12")), "postgrey",
                    None, str(out), None)
    assert p.refused is not None and "after merging, 64.0.0.0/11" in p.refused


def test_growth_beyond_max_growth_is_refused_unless_forced(out):
    write_state(out.parent / (out.name + ".state.json"), {"gmail.com": ["172.217.0.0/22"]})
    grown = report(walked("gmail.com", "172.217.0.0/22", "45.0.0.0/22", "46.0.0.0/22", "47.0.0.0/22",
                          "48.0.0.0/22"))
    p = plan(grown, out)
    assert p.refused is not None and "gmail.com grew from 1024 to 5120 IPv4 addresses" in p.refused
    forced = plan(grown, out, force=True)
    assert forced.refused is None and any("written anyway" in warning for warning in forced.warnings)
    assert plan(grown, out, max_growth=5.0).refused is None


def test_a_new_address_family_is_not_growth(out):
    write_state(out.parent / (out.name + ".state.json"), {"gmail.com": ["172.217.0.0/22"]})
    p = plan(report(walked("gmail.com", "172.217.0.0/22", "2a00:1450:4000::/37")), out)
    assert p.refused is None


def test_without_state_the_existing_file_is_the_baseline(out):
    out.write_text("# old list\n172.217.0.0/22\n")
    p = plan(report(walked("gmail.com", "172.217.0.0/22", "45.0.0.0/20")), out)
    assert p.refused is not None and "grew from 1024 to 5120" in p.refused and "no state yet" in p.refused
    p = plan(report(walked("gmail.com", "172.217.0.0/24")), out)
    assert p.refused is not None and "lost 75.0%" in p.refused


def test_baseline_reads_every_format():
    cidr_table = "# c\n172.217.0.0/19\tpermit\n2001:4860::/32\tpermit\n"
    assert networks_in(cidr_table) == nets("172.217.0.0/19", "2001:4860::/32")
    assert networks_in("# sqlgrey\n172.217.3\n172.217.4.5\n") == nets("172.217.3.0/24", "172.217.4.5/32")
    assert networks_in("/.*google/\nmail.google.com\n^(?:.+\\.)?x\\.com$\n") == []


def test_one_walk_renders_every_output_from_one_state(tmp_path):
    rep = report(walked("gmail.com", "172.217.0.0/19", "2001:4860:4000::/36"))
    outputs = [OutputSpec("postgrey", str(tmp_path / "whitelist_clients.local")),
               OutputSpec("exim", str(tmp_path / "whitelist-hosts")),
               OutputSpec("sqlgrey", None, parse_static_entries(["192.0.2.0/24"]))]
    state = tmp_path / "state.json"
    p = plan_outputs(rep, outputs, parse_static_entries(["mail.example.com"]), str(state), Limits(guard=doc_guard()))
    assert [o.fmt for o in p.outputs] == ["postgrey", "exim", "sqlgrey"]
    assert "mail.example.com" in entries(p.outputs[0].content)
    assert "192.0.2" in entries(p.outputs[2].content)  # sqlgrey's class C form
    assert apply_update(p) is True
    assert read_state(str(state))[1] == {"gmail.com": nets("172.217.0.0/19", "2001:4860:4000::/36")}
    assert (tmp_path / "whitelist-hosts").read_text() == p.outputs[1].content


def test_a_pending_state_is_promoted_only_when_asked(tmp_path):
    state = tmp_path / "state.json"
    write_state(state, {"gmail.com": ["172.217.0.0/22"]})
    before = state.read_bytes()
    p = plan_outputs(report(walked("gmail.com", "172.217.0.0/21")), [OutputSpec("postgrey")], None, str(state))
    apply_update(p, promote_state=False)
    assert state.read_bytes() == before
    assert update_mod.promote_pending_state(str(state)) is True
    assert read_state(str(state))[1] == {"gmail.com": nets("172.217.0.0/21")}
    assert update_mod.promote_pending_state(str(state)) is False


def test_limits_are_validated():
    with pytest.raises(ValueError, match="max_growth"):
        Limits(max_growth=0.5)


# --- provenance: each netblock's chain in the files and in the state ---------------------------

GMAIL_CHAIN = "gmail.com > redirect=_spf.google.com > include:_netblocks.google.com"


def gmail_walk():
    result = root("gmail.com", "172.217.0.0/19", "2001:4860:4000::/36")
    result.provenance = {"172.217.0.0/19": [f"{GMAIL_CHAIN} > ip4:172.217.0.0/19"],
                         "2001:4860:4000::/36": [f"{GMAIL_CHAIN} > ip6:2001:4860:4000::/36"]}
    return result


def body(content):
    """The file after its header (which ends with the total)."""
    lines = content.splitlines()
    return lines[next(n for n, line in enumerate(lines) if line.startswith("# total: ")) + 1:]


@pytest.mark.parametrize("fmt", ["postgrey", "cidr", "exim", "sqlgrey", "spamd"])
def test_each_netblock_is_written_below_its_chain(out, fmt):
    rep = report(gmail_walk(), walked("example.net", "192.0.2.0/24"))
    p = plan(rep, out, fmt=fmt, sqlgrey_cidr=True)
    assert p.refused is None
    action = "\tpermit" if fmt == "cidr" else ""
    assert body(p.content) == [
        f"# {GMAIL_CHAIN}", f"172.217.0.0/19{action}",
        "# example.net", f"192.0.2.0/24{action}",
        f"# {GMAIL_CHAIN}", f"2001:4860:4000::/36{action}",
    ]
    # The state keeps the chains as the walker gave them.
    assert json.loads(p.state_content)["provenance"]["gmail.com"] == {
        "172.217.0.0/19": [f"{GMAIL_CHAIN} > ip4:172.217.0.0/19"],
        "2001:4860:4000::/36": [f"{GMAIL_CHAIN} > ip6:2001:4860:4000::/36"],
    }


def test_a_second_run_with_the_same_records_writes_nothing(out):
    rep = report(gmail_walk(), walked("example.net", "192.0.2.0/24"))
    first = plan(rep, out)
    assert apply_update(first) is True
    again = plan(report(gmail_walk(), walked("example.net", "192.0.2.0/24")), out)
    assert again.content.encode() == first.content.encode() == out.read_bytes()
    assert again.state_content == first.state_content
    assert not again.changed and apply_update(again) is False


def test_a_fallback_writes_the_same_chains_and_leaves_the_file_untouched(out):
    apply_update(plan(report(gmail_walk(), walked("example.net", "192.0.2.0/24")), out))
    before = out.read_bytes()
    failed = plan(report(root("gmail.com", status=TEMPERROR, errors=["timeout"]),
                         walked("example.net", "192.0.2.0/24")), out)
    assert failed.kept_last_good == ["gmail.com"]
    assert failed.content.encode() == before
    assert not failed.output_changed and not failed.state_changed
    # Again and again: the state keeps the chains of a root that keeps falling back.
    assert json.loads(failed.state_content)["provenance"]["gmail.com"]["172.217.0.0/19"] == [
        f"{GMAIL_CHAIN} > ip4:172.217.0.0/19"]


def test_a_state_without_chains_names_the_domain_of_a_fallback(out):
    """A state from before the chains were kept: a root that falls back is named by its domain."""
    write_state(out.parent / (out.name + ".state.json"), {"gmail.com": ["172.217.0.0/19"]})
    p = plan(report(root("Gmail.COM.", status=TEMPERROR, errors=["timeout"]), walked("example.net", "192.0.2.0/24")),
             out)
    assert body(p.content) == ["# gmail.com", "172.217.0.0/19", "# example.net", "192.0.2.0/24"]
    assert "gmail.com" not in json.loads(p.state_content).get("provenance", {})


def test_chains_are_mapped_onto_collapsed_netblocks(out):
    result = root("split.example", "192.0.2.0/25", "192.0.2.128/25")
    result.provenance = {"192.0.2.0/25": ["split.example > include:_a.split.example > ip4:192.0.2.0/25"],
                         "192.0.2.128/25": ["split.example > include:_b.split.example > ip4:192.0.2.128/25"]}
    p = plan(report(result), out, parse_static_entries(["198.51.100.0/24"]))
    assert body(p.content) == [
        "# split.example > include:_a.split.example ; split.example > include:_b.split.example", "192.0.2.0/24",
        "# static entry", "198.51.100.0/24",
    ]
    assert json.loads(p.state_content)["provenance"]["split.example"] == {"192.0.2.0/24": [
        "split.example > include:_a.split.example > ip4:192.0.2.0/25",
        "split.example > include:_b.split.example > ip4:192.0.2.128/25"]}


@pytest.mark.parametrize(
    ("provenance", "detail"),
    [
        ([], '"provenance" is not an object'),
        ({"gmail.com": ["x"]}, "the provenance of 'gmail.com' is not an object"),
        ({"gmail.com": {"172.217.0.0/19": "x"}}, "are not a list of strings"),
        ({"gmail.com": {"not-a-net": ["x"]}}, "invalid netblock 'not-a-net'"),
    ],
)
def test_corrupt_provenance_in_the_state_is_an_error(out, provenance, detail):
    state = out.parent / (out.name + ".state.json")
    state.write_text(json.dumps({"version": 1, "roots": {"gmail.com": ["172.217.0.0/19"]}, "provenance": provenance}))
    with pytest.raises(StateError, match="corrupt") as excinfo:
        plan(report(gmail_walk()), out)
    assert detail in str(excinfo.value)


@pytest.mark.parametrize("fmt", ["postgrey", "cidr", "exim", "sqlgrey", "spamd"])
@pytest.mark.parametrize("sqlgrey_cidr", [True, False])
def test_the_baseline_parser_ignores_the_chain_comments(tmp_path, fmt, sqlgrey_cidr):
    """A host's current file is the baseline without a state: its comment lines hold no networks."""
    result = root("gmail.com", "172.217.0.0/19", "192.0.2.0/24")
    result.provenance = {"172.217.0.0/19": ["gmail.com > include:_netblocks.google.com > ip4:172.217.0.0/19"],
                         # a chain whose text looks like networks must not be read as one
                         "192.0.2.0/24": ["gmail.com > a:10.0.0.0/8 > 2001:db8::/32"]}
    p = plan(report(result), tmp_path / "list", fmt=fmt, sqlgrey_cidr=sqlgrey_cidr)
    assert networks_in(p.content) == nets("172.217.0.0/19", "192.0.2.0/24")
    # The file as the baseline of the next run without a state: nothing moved.
    (tmp_path / "list").write_text(p.content)
    again = plan(report(result), tmp_path / "list", fmt=fmt, sqlgrey_cidr=sqlgrey_cidr)
    assert again.refused is None and not again.output_changed

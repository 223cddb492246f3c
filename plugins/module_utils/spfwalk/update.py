"""Decide whether (and what) to write, so that an update never loses a working whitelist
and never opens the greylist to the Internet.

The rules:

* A root whose walk succeeded contributes its fresh netblocks, unless one of them is wider
  than the guard's floor or lies in special-purpose space (guards.GuardPolicy): then the root
  counts as a permerror, naming the netblock and the chain it came from, and the whole update
  is refused (force does not override it): the whitelists in place stay as they are.
* A root whose walk failed (none/permerror/temperror) contributes its last known good
  netblocks from the state file. A failed root without last known good netblocks refuses the
  whole update: a partial whitelist is never written.
* An update that would write an empty whitelist is refused.
* An update in which a root that was known before lost more than ``max_shrink`` of its
  addresses, or grew by more than ``max_growth`` times (per address family), is refused unless
  forced: a provider does not drop a quarter of its space or quadruple it overnight, a broken or
  hijacked SPF record might. Without a state, the file being replaced is the baseline.
* Roots that are no longer requested are dropped from the state.
* One walk, one state, any number of output formats rendered from them.
* Each netblock is written below a comment naming the SPF chains it came from. The state keeps
  the chains beside the netblocks, so that a root that falls back to its last known good
  netblocks gets the same comments and the file stays byte for byte the same.

The outputs and the state are written atomically (temporary file in the same directory,
fsync, rename), and only when their content changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field

from .guards import GuardPolicy
from .model import OK, PERMERROR, Network, RootResult, WalkReport
from .netblocks import address_count, collapse, group_by_container, lost_fraction, parse_network
from .outputs import CIDR_ACTION, FORMATS, NAMES_ONLY_FORMATS, OutputError, StaticEntries, render

STATE_VERSION = 1
DEFAULT_MODE = 0o644


class StateError(ValueError):
    """The state file exists but cannot be read or is corrupt."""


class UpdateRefused(RuntimeError):
    """apply_update() was given a refused plan."""


@dataclass
class OutputSpec:
    """One file of a run: every output of a run is rendered from the same walk and state."""

    fmt: str
    path: str | None = None
    # The run's static entries when None; sqlgrey's client list takes only the networks, for example.
    static: StaticEntries | None = None
    # For an output without a path: the list it will replace (e.g. read from a mail host), the
    # baseline of the shrink and growth guards when the run has no state yet.
    baseline: str | None = None


@dataclass
class OutputPlan:
    fmt: str
    path: str | None
    # The rendered whitelist; None when it could not be computed completely.
    content: str | None
    previous_content: str | None
    changed: bool = False


@dataclass
class UpdatePlan:
    outputs: list[OutputPlan]
    state_path: str | None
    # True when apply_update() would write something. Always False for a refused plan.
    changed: bool
    state_content: str | None
    previous_state_content: str | None
    state_changed: bool
    kept_last_good: list[str] = field(default_factory=list)
    removed_roots: list[str] = field(default_factory=list)
    refused: str | None = None
    warnings: list[str] = field(default_factory=list)
    # Networks after merging the static networks and collapsing (the first output's static entries).
    network_count: int = 0
    # domain -> RootResult.as_dict() plus "source" ("fresh", "last_good", or None when the
    # root has nothing usable) and "network_count" (netblocks taken from it).
    roots: dict[str, dict] = field(default_factory=dict)

    # The single-output view, for callers that plan one file (the command line).
    @property
    def fmt(self) -> str:
        return self.outputs[0].fmt

    @property
    def output_path(self) -> str | None:
        return self.outputs[0].path

    @property
    def content(self) -> str | None:
        return self.outputs[0].content

    @property
    def previous_content(self) -> str | None:
        return self.outputs[0].previous_content

    @property
    def output_changed(self) -> bool:
        return self.outputs[0].changed


@dataclass(frozen=True)
class Limits:
    """How far one run may move a whitelist before it is refused as suspicious."""

    # Largest share of a root's previous addresses (per family) one run may drop.
    max_shrink: float = 0.25
    # Largest factor by which a root's address count (per family) may grow in one run.
    max_growth: float = 4.0
    # Accept a shrink or a growth beyond the limits (never a netblock the width guard refuses).
    force: bool = False
    guard: GuardPolicy = field(default_factory=GuardPolicy)

    def __post_init__(self):
        if not 0.0 <= self.max_shrink <= 1.0:
            raise ValueError(f"max_shrink must be between 0 and 1, got {self.max_shrink!r}")
        if not self.max_growth >= 1.0:
            raise ValueError(f"max_growth must be 1 or more, got {self.max_growth!r}")


def default_state_path(output_path: str) -> str:
    return output_path + ".state.json"


def pending_state_path(state_path: str) -> str:
    """Where a run that must not promote its state yet (a rollout in progress) leaves it."""
    return state_path + ".pending"


def _root_key(domain: str) -> str:
    return domain.strip().lower().rstrip(".")


# domain -> str(network) -> the SPF chains it came from (RootResult.provenance, per root).
Provenance = dict[str, dict[str, list[str]]]


def dump_state(roots: dict[str, list[Network]], provenance: Provenance | None = None) -> str:
    """Serialise the per-root netblocks deterministically (sorted keys, no timestamps).

    ``provenance`` (optional; older readers ignore it) keeps the chains of each root's netblocks.
    """
    data: dict = {
        "version": STATE_VERSION,
        "roots": {domain: [str(n) for n in collapse(nets)] for domain, nets in roots.items()},
    }
    chains = {
        domain: {network: sorted(set(found)) for network, found in by_network.items() if found}
        for domain, by_network in (provenance or {}).items()
        if domain in roots
    }
    chains = {domain: by_network for domain, by_network in chains.items() if by_network}
    if chains:
        data["provenance"] = chains
    return json.dumps(data, sort_keys=True, indent=2) + "\n"


def _corrupt(path: str, detail: str) -> StateError:
    return StateError(
        f"state file {path} is corrupt ({detail}). It holds the last known good netblocks, so it is "
        "not silently ignored: restore it from a backup, or delete it to start over (a root whose "
        "walk then fails is refused until it succeeds once)"
    )


def _state_data(text: str, path: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _corrupt(path, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _corrupt(path, "the top level is not a JSON object")
    if data.get("version") != STATE_VERSION:
        raise _corrupt(path, f"unsupported version {data.get('version')!r}, expected {STATE_VERSION}")
    return data


def parse_state(text: str, path: str = "<state>") -> dict[str, list[Network]]:
    """Parse a state file's text; raise StateError with a clear message when it is corrupt."""
    data = _state_data(text, path)
    roots = data.get("roots")
    if not isinstance(roots, dict):
        raise _corrupt(path, '"roots" is missing or not an object')
    result: dict[str, list[Network]] = {}
    for domain, nets in roots.items():
        if not isinstance(nets, list):
            raise _corrupt(path, f"the netblocks of {domain!r} are not a list")
        parsed = []
        for value in nets:
            if not isinstance(value, str):
                raise _corrupt(path, f"{domain!r} has a netblock that is not a string: {value!r}")
            try:
                parsed.append(parse_network(value)[0])
            except ValueError:
                raise _corrupt(path, f"{domain!r} has an invalid netblock {value!r}") from None
        result[_root_key(domain)] = collapse(parsed)
    return result


def parse_state_provenance(text: str, path: str = "<state>") -> Provenance:
    """The chains a state file keeps for its netblocks (empty for a state written without them)."""
    provenance = _state_data(text, path).get("provenance", {})
    if not isinstance(provenance, dict):
        raise _corrupt(path, '"provenance" is not an object')
    result: Provenance = {}
    for domain, by_network in provenance.items():
        if not isinstance(by_network, dict):
            raise _corrupt(path, f"the provenance of {domain!r} is not an object")
        chains: dict[str, list[str]] = {}
        for network, found in by_network.items():
            if not isinstance(found, list) or not all(isinstance(chain, str) for chain in found):
                raise _corrupt(path, f"the chains of {network!r} ({domain!r}) are not a list of strings")
            try:
                key = str(parse_network(network)[0])
            except ValueError:
                raise _corrupt(path, f"{domain!r} has provenance for an invalid netblock {network!r}") from None
            chains.setdefault(key, []).extend(found)
        result[_root_key(domain)] = chains
    return result


def read_state(path: str) -> tuple[str | None, dict[str, list[Network]]]:
    """Return (raw text, parsed roots). A missing file is a first run: (None, {})."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return None, {}
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"cannot read the state file {path}: {exc}") from None
    return text, parse_state(text, path)


def _read_output(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read the existing whitelist {path}: {exc}") from None


def networks_in(content: str) -> list[Network]:
    """The networks a whitelist file of any format holds (first word of each line).

    Host names and regexes are skipped; the partial IPv4 forms of postgrey and sqlgrey
    (a.b.c) count as the /24 they stand for. Used as the baseline of the growth and shrink
    guards when a run has no state yet but the file it replaces exists.
    """
    found = []
    for line in content.splitlines():
        word = line.split("#", 1)[0].split()[:1]
        if not word:
            continue
        text = word[0]
        if _CLASS_C.match(text):
            text += ".0/24"
        with contextlib.suppress(ValueError):
            found.append(parse_network(text)[0])
    return collapse(found)


_CLASS_C = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}$")


def guard_problems(root: RootResult, guard: GuardPolicy) -> list[str]:
    """Every netblock of a walked root that the width guard refuses, named with its chains."""
    problems = []
    for network in root.networks:
        why = guard.network_problem(network)
        if why:
            chains = "; ".join(root.provenance.get(str(network), [])) or "no chain recorded"
            problems.append(f"{network}: {why} (from {chains})")
    return problems


def _growth_problem(domain: str, old: list[Network], new: list[Network], limit: float) -> str | None:
    for version in (4, 6):
        before, after = address_count(old, version), address_count(new, version)
        if before and after > before * limit:
            return (f"{domain} grew from {before} to {after} IPv{version} addresses "
                    f"({after / before:.1f} times, more than the allowed {limit:g})")
    return None


def _movement_problems(domain: str, old: list[Network], new: list[Network], limits: Limits) -> list[str]:
    """A shrink beyond max_shrink or a growth beyond max_growth, each as a reason to refuse."""
    problems = []
    fraction = lost_fraction(old, new)
    if fraction > limits.max_shrink:
        problems.append(f"{domain} lost {fraction:.1%} of its previous addresses "
                        f"(more than the allowed {limits.max_shrink:.0%})")
    growth = _growth_problem(domain, old, new, limits.max_growth)
    if growth:
        problems.append(growth)
    return problems


def plan_update(
    report: WalkReport,
    fmt: str,
    static: StaticEntries | None,
    output_path: str | None,
    state_path: str | None,
    max_shrink: float = 0.25,
    force: bool = False,
    cidr_action: str = CIDR_ACTION,
    *,
    sqlgrey_cidr: bool = False,
    max_growth: float = 4.0,
    guard: GuardPolicy | None = None,
) -> UpdatePlan:
    """plan_outputs() for one file; ``state_path`` defaults to default_state_path(output_path)."""
    if state_path is None and output_path is not None:
        state_path = default_state_path(output_path)
    limits = Limits(max_shrink=max_shrink, max_growth=max_growth, force=force, guard=guard or GuardPolicy())
    return plan_outputs(report, [OutputSpec(fmt, output_path)], static, state_path, limits,
                        cidr_action=cidr_action, sqlgrey_cidr=sqlgrey_cidr)


def plan_outputs(
    report: WalkReport,
    outputs: list[OutputSpec],
    static: StaticEntries | None,
    state_path: str | None,
    limits: Limits | None = None,
    *,
    cidr_action: str = CIDR_ACTION,
    sqlgrey_cidr: bool = False,
) -> UpdatePlan:
    """Work out every output and the new state from one walk report; never writes anything.

    Raises StateError for an unreadable/corrupt state file and OutputError (or its subclass
    StaticEntryError) when the whitelist cannot be expressed in a format.
    """
    limits = limits or Limits()
    if not outputs:
        raise OutputError("no output to plan")
    formats = [spec.fmt for spec in outputs]
    for fmt in formats:
        if fmt not in FORMATS:
            raise OutputError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if len(set(formats)) != len(formats):
        raise OutputError(f"each format once per run, got {', '.join(formats)}")
    static = static or StaticEntries()

    previous_state_content, old_roots = read_state(state_path) if state_path else (None, {})
    has_state = previous_state_content is not None
    old_provenance = parse_state_provenance(previous_state_content, state_path) if has_state else {}

    warnings: list[str] = []
    kept: list[str] = []
    missing: list[str] = []
    suspicious: list[str] = []
    guard_refusals: list[str] = []
    summaries: dict[str, dict] = {}
    new_state: dict[str, list[Network]] = {}
    new_provenance: Provenance = {}
    header_roots: dict[str, str] = {}
    requested: set[str] = set()

    for domain, root in report.roots.items():
        key = _root_key(domain)
        requested.add(key)
        summary = root.as_dict()
        # The walk's own notes (unresolvable terms, fixed host bits, limits) reach the user too.
        warnings.extend(root.warnings)
        status, errors = root.status, list(root.errors)
        if root.ok:
            refused_nets = guard_problems(root, limits.guard)
            if refused_nets:
                # Like a broken record: a netblock this wide (or in private or reserved space)
                # would open the greylist to much of the Internet. The root counts as failed (its
                # last known good netblocks stand in), and the run fails: nothing is written and
                # someone must look, whatever force says.
                status = PERMERROR
                errors = [f"refused netblock {item}" for item in refused_nets]
                summary.update(status=status, errors=errors)
                guard_refusals.append(f"{domain}: {'; '.join(errors)}")
        if status == OK:
            nets = collapse(parse_network(str(n))[0] for n in root.networks)
            source = "fresh"
            chains = _chains_of(nets, root.provenance)
            if not nets:
                warnings.append(f"{domain}: the SPF walk succeeded but found no netblocks")
            if key in old_roots:
                suspicious.extend(_movement_problems(domain, old_roots[key], nets, limits))
        elif key in old_roots:
            nets = old_roots[key]
            source = "last_good"
            # The chains the netblocks came from when they were walked: the same comments as then.
            chains = _chains_of(nets, old_provenance.get(key, {}))
            kept.append(domain)
            why = "; ".join(errors) or "no details"
            warnings.append(
                f"{domain}: the SPF walk failed ({status}: {why}); kept its {len(nets)} last known "
                "good netblock(s)"
            )
        else:
            why = "; ".join(errors) or "no details"
            missing.append(f"{domain} ({status}: {why})")
            summary.update(source=None, network_count=0)
            summaries[domain] = summary
            continue
        # Same header for a fresh walk and a fallback: falling back must not touch a file whose
        # netblocks did not change (the warning and the report say which roots fell back).
        header_roots[key] = f"{domain}: {len(nets)} netblock(s)"
        summary.update(source=source, network_count=len(nets))
        summaries[domain] = summary
        new_state[key] = nets
        new_provenance[key] = chains

    removed = sorted(key for key in old_roots if key not in requested)

    reasons: list[str] = []
    if guard_refusals:
        reasons.append(
            "; ".join(guard_refusals) + ". Refusing the update: the whitelists stay as they are. If the "
            "provider really sends from there, lower the floor (min_prefix4/min_prefix6) or allow the network"
        )
    if missing:
        where = f"in {state_path}" if state_path else "(no state file)"
        reasons.append(
            f"no usable netblocks for {', '.join(missing)} and no last known good netblocks {where}; "
            "refusing to write a partial whitelist"
        )
    planned: list[OutputPlan] = []
    counts: list[int] = []
    for spec in outputs:
        rendered = None if missing else _render_output(
            spec, static, new_state, new_provenance, header_roots, cidr_action=cidr_action,
            sqlgrey_cidr=sqlgrey_cidr)
        previous = _read_output(spec.path) if spec.path else None
        planned.append(OutputPlan(
            fmt=spec.fmt, path=spec.path, content=rendered.content if rendered else None,
            previous_content=spec.baseline if previous is None else previous.decode("utf-8", errors="replace"),
        ))
        counts.append(rendered.network_count if rendered else 0)
        if rendered:
            warnings.extend(rendered.warnings)
            reasons.extend(rendered.problems)
            reasons.extend(_wide_after_merge(spec, rendered.networks, limits.guard))
            if not has_state:
                suspicious.extend(_baseline_problems(planned[-1], limits))
    warnings.extend(static.warnings)
    if suspicious:
        if limits.force:
            warnings.extend(f"{item}; written anyway because force is set" for item in suspicious)
        else:
            reasons.append(
                "; ".join(suspicious) + ". Refusing the update; set force to accept the change after "
                "checking it, or raise max_shrink / max_growth"
            )

    state_content = dump_state(new_state, new_provenance)
    refused = "; ".join(reasons) if reasons else None
    for output in planned:
        output.changed = (
            refused is None and output.path is not None and output.content is not None
            and output.previous_content != output.content
        )
    state_changed = refused is None and state_path is not None and state_content != previous_state_content

    return UpdatePlan(
        outputs=planned,
        state_path=state_path,
        changed=any(output.changed for output in planned) or state_changed,
        state_content=state_content,
        previous_state_content=previous_state_content,
        state_changed=state_changed,
        kept_last_good=kept,
        removed_roots=removed,
        refused=refused,
        warnings=warnings,
        network_count=counts[0],
        roots=summaries,
    )
@dataclass
class _RenderedOutput:
    content: str
    networks: list[Network]
    network_count: int
    warnings: list[str]
    problems: list[str]


def _chains_of(nets: list[Network], provenance: dict[str, list[str]]) -> dict[str, list[str]]:
    """``provenance`` (str(network) -> chains) for the collapsed ``nets``: each net gets the chains of
    the networks inside it (the walker's keys are its collapsed networks, so normally its own)."""
    found = []
    for text, chains in provenance.items():
        with contextlib.suppress(ValueError):
            network = parse_network(text)[0]
            found.extend((network, chain) for chain in chains)
    return {str(net): sorted(set(chains)) for net, chains in zip(nets, group_by_container(nets, found), strict=True)
            if chains}


def _render_output(spec: OutputSpec, static: StaticEntries, new_state: dict[str, list[Network]],
                   provenance: Provenance, header_roots: dict[str, str], *, cidr_action: str,
                   sqlgrey_cidr: bool) -> _RenderedOutput:
    static = static if spec.static is None else spec.static
    merged = collapse([*(n for nets in new_state.values() for n in nets), *static.networks])
    header = [header_roots[key] for key in sorted(header_roots)]
    header.append(
        f"static entries: {len(static.networks)} network(s), {len(static.hostnames)} host name(s), "
        f"{len(static.regexes)} regex(es)"
    )
    if spec.fmt in NAMES_ONLY_FORMATS:
        header.append(f"networks: none in this file; {len(merged)} after merging, in the cidr table asked first")
    else:
        header.append(f"total: {len(merged)} network(s) after merging and collapsing")
    # Each netblock with its chains; without recorded chains (a state from before they were kept),
    # at least the domain it belongs to.
    sources = [
        (net, chain)
        for key, nets in new_state.items()
        for net in nets
        for chain in provenance.get(key, {}).get(str(net)) or [key]
    ]
    rendered = render(spec.fmt, merged, static, header, cidr_action=cidr_action, sqlgrey_cidr=sqlgrey_cidr,
                      provenance=sources)
    empty = not rendered.entry_count and spec.fmt not in NAMES_ONLY_FORMATS
    problems = [f"the update would write an empty whitelist ({spec.fmt})"] if empty else []
    return _RenderedOutput(rendered.content, merged, len(merged), rendered.warnings, problems)


def _wide_after_merge(spec: OutputSpec, merged: list[Network], guard: GuardPolicy) -> list[str]:
    """Netblocks that pass one by one can still collapse into one the guard refuses."""
    return [f"{spec.fmt}: after merging, {network}: {why}"
            for network in merged if (why := guard.network_problem(network))]


def _baseline_problems(output: OutputPlan, limits: Limits) -> list[str]:
    """Without a state, the file being replaced is the baseline of the shrink and growth guards."""
    if output.previous_content is None or output.content is None or output.fmt in NAMES_ONLY_FORMATS:
        return []
    return _movement_problems(f"the {output.fmt} whitelist (no state yet: compared with the list it replaces)",
                              networks_in(output.previous_content), networks_in(output.content), limits)


def apply_update(plan: UpdatePlan, *, promote_state: bool = True) -> bool:
    """Write every changed output, then the state, each only if its content changed.

    With ``promote_state=False`` the new state goes to pending_state_path() instead: a
    rollout promotes it (promote_pending_state) only once every host took the new lists,
    so a list that failed on a host never becomes the last known good.
    Returns whether anything was written. Raises UpdateRefused for a refused plan.
    """
    if plan.refused:
        raise UpdateRefused(plan.refused)
    if plan.state_path is None and all(output.path is None for output in plan.outputs):
        raise ValueError("the plan has no output path and no state file: nothing to write")
    written = False
    for output in plan.outputs:
        if output.path is not None and output.content is not None:
            written = write_atomically(output.path, output.content) or written
    if plan.state_path is not None and plan.state_content is not None:
        if promote_state:
            written = write_atomically(plan.state_path, plan.state_content) or written
        elif plan.state_changed:
            written = write_atomically(pending_state_path(plan.state_path), plan.state_content) or written
    return written


def discard_pending_state(state_path: str) -> bool:
    """Remove a pending state left by a run that did not finish (False when there is none).

    A run whose new state equals the last known good one writes no pending state; a stale one
    from an earlier, failed rollout must not be promoted at its end instead.
    """
    try:
        os.unlink(pending_state_path(state_path))
    except FileNotFoundError:
        return False
    return True


def promote_pending_state(state_path: str) -> bool:
    """Make a pending state the last known good one; False when there is none."""
    pending = pending_state_path(state_path)
    try:
        os.replace(pending, state_path)
    except FileNotFoundError:
        return False
    _fsync_directory(os.path.dirname(os.path.abspath(state_path)))
    return True


def write_atomically(path: str, content: str, mode: int | None = None) -> bool:
    """Replace ``path`` with ``content`` atomically; return False (touching nothing) if it is unchanged.

    The new file keeps the mode (and, where permitted, the owner) of the file it replaces;
    a new file gets ``mode`` or 0644. On any error the temporary file is removed and the
    old file is left as it was.
    """
    data = content.encode("utf-8")
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    if old is not None:
        with contextlib.suppress(OSError), open(path, "rb") as fh:
            if fh.read() == data:
                return False
    if mode is None:
        mode = stat.S_IMODE(old.st_mode) if old is not None else DEFAULT_MODE

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(OSError):
                    os.fchown(fh.fileno(), old.st_uid, old.st_gid)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
    return True


def _fsync_directory(directory: str) -> None:
    """Make the rename durable; best effort (not every platform allows fsync on a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

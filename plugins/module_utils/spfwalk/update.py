"""Decide whether (and what) to write, so that an update never loses a working whitelist.

The rules:

* A root whose walk succeeded contributes its fresh netblocks.
* A root whose walk failed (none/permerror/temperror) contributes its last known good
  netblocks from the state file kept beside the output. A failed root without last known good
  netblocks refuses the whole update: a partial whitelist is never written.
* An update that would write an empty whitelist is refused.
* An update in which a root that was known before lost more than ``max_shrink`` of its
  addresses (per address family) is refused unless forced: a provider does not usually drop a
  quarter of its sending space overnight, a broken or hijacked SPF record might.
* Roots that are no longer requested are dropped from the state.

The output and the state are written atomically (temporary file in the same directory,
fsync, rename), and only when their content changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field

from .model import Network, WalkReport
from .netblocks import collapse, lost_fraction, parse_network
from .outputs import FORMATS, OutputError, StaticEntries, render

STATE_VERSION = 1
DEFAULT_MODE = 0o644


class StateError(ValueError):
    """The state file exists but cannot be read or is corrupt."""


class UpdateRefused(RuntimeError):
    """apply_update() was given a refused plan."""


@dataclass
class UpdatePlan:
    fmt: str
    output_path: str | None
    state_path: str | None
    # The rendered whitelist; None when it could not be computed completely (a failed root
    # without last known good netblocks). Also set for refused plans when it is complete,
    # so that the refused change can be shown.
    content: str | None
    previous_content: str | None
    # True when apply_update() would write something. Always False for a refused plan.
    changed: bool
    output_changed: bool
    state_content: str | None
    previous_state_content: str | None
    state_changed: bool
    kept_last_good: list[str] = field(default_factory=list)
    removed_roots: list[str] = field(default_factory=list)
    refused: str | None = None
    warnings: list[str] = field(default_factory=list)
    # Networks in the output after merging the static networks and collapsing.
    network_count: int = 0
    # domain -> RootResult.as_dict() plus "source" ("fresh", "last_good", or None when the
    # root has nothing usable) and "network_count" (netblocks taken from it).
    roots: dict[str, dict] = field(default_factory=dict)


def default_state_path(output_path: str) -> str:
    return output_path + ".state.json"


def _root_key(domain: str) -> str:
    return domain.strip().lower().rstrip(".")


def dump_state(roots: dict[str, list[Network]]) -> str:
    """Serialise the per-root netblocks deterministically (sorted keys, no timestamps)."""
    data = {
        "version": STATE_VERSION,
        "roots": {domain: [str(n) for n in collapse(nets)] for domain, nets in roots.items()},
    }
    return json.dumps(data, sort_keys=True, indent=2) + "\n"


def parse_state(text: str, path: str = "<state>") -> dict[str, list[Network]]:
    """Parse a state file's text; raise StateError with a clear message when it is corrupt."""

    def corrupt(detail: str) -> StateError:
        return StateError(
            f"state file {path} is corrupt ({detail}). It holds the last known good netblocks, so it is "
            "not silently ignored: restore it from a backup, or delete it to start over (a root whose "
            "walk then fails is refused until it succeeds once)"
        )

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise corrupt(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise corrupt("the top level is not a JSON object")
    if data.get("version") != STATE_VERSION:
        raise corrupt(f"unsupported version {data.get('version')!r}, expected {STATE_VERSION}")
    roots = data.get("roots")
    if not isinstance(roots, dict):
        raise corrupt('"roots" is missing or not an object')
    result: dict[str, list[Network]] = {}
    for domain, nets in roots.items():
        if not isinstance(nets, list):
            raise corrupt(f"the netblocks of {domain!r} are not a list")
        parsed = []
        for value in nets:
            if not isinstance(value, str):
                raise corrupt(f"{domain!r} has a netblock that is not a string: {value!r}")
            try:
                parsed.append(parse_network(value)[0])
            except ValueError:
                raise corrupt(f"{domain!r} has an invalid netblock {value!r}") from None
        result[_root_key(domain)] = collapse(parsed)
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


def plan_update(
    report: WalkReport,
    fmt: str,
    static: StaticEntries | None,
    output_path: str | None,
    state_path: str | None,
    max_shrink: float = 0.25,
    force: bool = False,
    cidr_action: str = "OK",
    *,
    sqlgrey_cidr: bool = False,
) -> UpdatePlan:
    """Work out the new whitelist and state from a walk report; never writes anything.

    ``state_path`` defaults to default_state_path(output_path) when an output path is given.
    Raises StateError for an unreadable/corrupt state file and OutputError (or its subclass
    StaticEntryError) when the whitelist cannot be expressed in ``fmt``.
    """
    if fmt not in FORMATS:
        raise OutputError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not 0.0 <= max_shrink <= 1.0:
        raise ValueError(f"max_shrink must be between 0 and 1, got {max_shrink!r}")
    static = static or StaticEntries()
    if state_path is None and output_path is not None:
        state_path = default_state_path(output_path)

    previous_state_content, old_roots = read_state(state_path) if state_path else (None, {})
    previous_bytes = _read_output(output_path) if output_path else None
    previous_content = None if previous_bytes is None else previous_bytes.decode("utf-8", errors="replace")

    warnings: list[str] = []
    kept: list[str] = []
    missing: list[str] = []
    shrunk: list[str] = []
    summaries: dict[str, dict] = {}
    new_state: dict[str, list[Network]] = {}
    header_roots: dict[str, str] = {}
    requested: set[str] = set()

    for domain, root in report.roots.items():
        key = _root_key(domain)
        requested.add(key)
        summary = root.as_dict()
        # The walk's own notes (unresolvable terms, fixed host bits, limits) reach the user too.
        warnings.extend(root.warnings)
        if root.ok:
            nets = collapse(parse_network(str(n))[0] for n in root.networks)
            source = "fresh"
            if not nets:
                warnings.append(f"{domain}: the SPF walk succeeded but found no netblocks")
            if key in old_roots:
                fraction = lost_fraction(old_roots[key], nets)
                if fraction > max_shrink:
                    shrunk.append(
                        f"{domain} lost {fraction:.1%} of its previous addresses "
                        f"(more than the allowed {max_shrink:.0%})"
                    )
            header_roots[key] = f"{domain}: {len(nets)} netblock(s)"
        elif key in old_roots:
            nets = old_roots[key]
            source = "last_good"
            kept.append(domain)
            why = "; ".join(root.errors) or "no details"
            warnings.append(
                f"{domain}: the SPF walk failed ({root.status}: {why}); kept its {len(nets)} last known "
                "good netblock(s)"
            )
            # Same header as a fresh walk: falling back must not touch a file whose netblocks
            # did not change (the warning and the report say which roots fell back).
            header_roots[key] = f"{domain}: {len(nets)} netblock(s)"
        else:
            why = "; ".join(root.errors) or "no details"
            missing.append(f"{domain} ({root.status}: {why})")
            summary.update(source=None, network_count=0)
            summaries[domain] = summary
            continue
        summary.update(source=source, network_count=len(nets))
        summaries[domain] = summary
        new_state[key] = nets

    removed = sorted(key for key in old_roots if key not in requested)

    reasons: list[str] = []
    content: str | None = None
    network_count = 0
    if missing:
        where = f"in {state_path}" if state_path else "(no state file)"
        reasons.append(
            f"no usable netblocks for {', '.join(missing)} and no last known good netblocks {where}; "
            "refusing to write a partial whitelist"
        )
    else:
        merged = collapse([*(n for nets in new_state.values() for n in nets), *static.networks])
        network_count = len(merged)
        header = [header_roots[key] for key in sorted(header_roots)]
        header.append(
            f"static entries: {len(static.networks)} network(s), {len(static.hostnames)} host name(s), "
            f"{len(static.regexes)} regex(es)"
        )
        header.append(f"total: {network_count} network(s) after merging and collapsing")
        rendered = render(fmt, merged, static, header, cidr_action=cidr_action, sqlgrey_cidr=sqlgrey_cidr)
        content = rendered.content
        warnings.extend(static.warnings)
        warnings.extend(rendered.warnings)
        if rendered.entry_count == 0:
            reasons.append("the update would write an empty whitelist")
    if shrunk:
        if force:
            warnings.extend(f"{item}; written anyway because force is set" for item in shrunk)
        else:
            reasons.append(
                "; ".join(shrunk) + ". Refusing the update; set force to accept the change, or "
                "raise max_shrink"
            )

    state_content = dump_state(new_state)
    refused = "; ".join(reasons) if reasons else None
    output_changed = (
        refused is None
        and output_path is not None
        and content is not None
        and previous_bytes != content.encode("utf-8")
    )
    state_changed = refused is None and state_path is not None and state_content != previous_state_content

    return UpdatePlan(
        fmt=fmt,
        output_path=output_path,
        state_path=state_path,
        content=content,
        previous_content=previous_content,
        changed=output_changed or state_changed,
        output_changed=output_changed,
        state_content=state_content,
        previous_state_content=previous_state_content,
        state_changed=state_changed,
        kept_last_good=kept,
        removed_roots=removed,
        refused=refused,
        warnings=warnings,
        network_count=network_count,
        roots=summaries,
    )


def apply_update(plan: UpdatePlan) -> bool:
    """Write the output and then the state, each only if its content changed.

    Returns whether anything was written. Raises UpdateRefused for a refused plan.
    """
    if plan.refused:
        raise UpdateRefused(plan.refused)
    if plan.output_path is None or plan.content is None:
        raise ValueError("the plan has no output path or no content to write")
    written = write_atomically(plan.output_path, plan.content)
    if plan.state_path is not None and plan.state_content is not None:
        written = write_atomically(plan.state_path, plan.state_content) or written
    return written


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

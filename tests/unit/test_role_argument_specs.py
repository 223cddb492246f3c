"""Each role's meta/argument_specs.yml documents its defaults/main.yml, so ansible-doc -t role shows them.

defaults/main.yml sets every variable before the role's argument validation runs: a spec's default
is documentation only, and nothing else keeps it in step with the real value. These tests do:

- every option with a literal value in defaults/main.yml (the role's own, else a dependency's, as
  postgrey_listen of roles/mailguard) has that value as its spec default;
- an option whose value is a Jinja expression has the expression, exactly, as its default, or no
  default and "Default: derived" in its description (a typed option whose string default would
  not validate);
- a required option has no default;
- every public variable of defaults/main.yml that belongs to the role (named after it, or listed
  in its spec) is an option of one of its entry points.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(path.parent.parent for path in (REPO / "roles").glob("*/meta/argument_specs.yml"))
DERIVED = "Default: derived"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None


def defaults_of(role: Path) -> dict[str, Any]:
    return load_yaml(role / "defaults" / "main.yml") or {}


def dependencies_of(role: Path) -> list[Path]:
    """The roles of meta/main.yml's dependencies, in order, transitively (FQCN or short names)."""
    found: list[Path] = []
    pending = [role]
    while pending:
        meta = load_yaml(pending.pop(0) / "meta" / "main.yml") or {}
        for dependency in meta.get("dependencies") or []:
            name = dependency["role"] if isinstance(dependency, dict) else dependency
            path = REPO / "roles" / name.rsplit(".", 1)[-1]
            if path.is_dir() and path not in found and path != role:
                found.append(path)
                pending.append(path)
    return found


def entry_points(role: Path) -> dict[str, dict]:
    return (load_yaml(role / "meta" / "argument_specs.yml") or {}).get("argument_specs") or {}


def options_of(role: Path, entry_point: str = "main") -> dict[str, dict]:
    return entry_points(role).get(entry_point, {}).get("options") or {}


def is_jinja(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(is_jinja(key) or is_jinja(item) for key, item in value.items())
    if isinstance(value, list):
        return any(is_jinja(item) for item in value)
    return False


def same(left: Any, right: Any) -> bool:
    """Equal after YAML loading, with types: true is not 1, 4.0 is not 4."""
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


def description_text(option: dict) -> str:
    description = option.get("description", "")
    return " ".join(description) if isinstance(description, list) else str(description)


def role_value(role: Path, name: str) -> tuple[bool, Any, str]:
    """(found, value, where) of a variable: the role's defaults, else its dependencies'."""
    for source in [role, *dependencies_of(role)]:
        defaults = defaults_of(source)
        if name in defaults:
            return True, defaults[name], f"roles/{source.name}/defaults/main.yml"
    return False, None, ""


def default_mismatches(role: Path) -> list[str]:
    problems = []
    checked: set[int] = set()
    for entry_point, spec in entry_points(role).items():
        options = (spec or {}).get("options") or {}
        if id(options) in checked:  # entry points sharing the main spec through a YAML alias
            continue
        checked.add(id(options))
        for name, option in options.items():
            where = f"{role.name}: {entry_point}: {name}"
            if option.get("required"):
                if "default" in option:
                    problems.append(f"{where}: required, yet has default {option['default']!r}")
                continue
            found, value, source = role_value(role, name)
            if not found:
                continue
            if not is_jinja(value):
                if "default" not in option:
                    problems.append(f"{where}: no default; {source} has {value!r}")
                elif not same(option["default"], value):
                    problems.append(f"{where}: default {option['default']!r} != {value!r} of {source}")
            elif "default" in option:
                if not same(option["default"], value):
                    problems.append(f"{where}: default {option['default']!r} != the expression {value!r} of {source}")
            elif DERIVED not in description_text(option):
                problems.append(f"{where}: no default and no {DERIVED!r} in the description; {source} has {value!r}")
    return problems


def undocumented(role: Path) -> list[str]:
    documented = {name for spec in entry_points(role).values() for name in ((spec or {}).get("options") or {})}
    prefix = f"{role.name}_"
    return [
        f"{role.name}: {name} (roles/{role.name}/defaults/main.yml) is no option of any entry point"
        for name in defaults_of(role)
        if not name.startswith("__") and name.startswith(prefix) and name not in documented
    ]


@pytest.mark.parametrize("role", ROLES, ids=lambda path: path.name)
def test_spec_defaults_are_the_roles_defaults(role):
    problems = default_mismatches(role)
    assert not problems, "argument_specs.yml out of step with defaults/main.yml:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("role", ROLES, ids=lambda path: path.name)
def test_every_public_default_is_documented(role):
    problems = undocumented(role)
    assert not problems, "undocumented role variables:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("role", ROLES, ids=lambda path: path.name)
def test_main_entry_point_has_options(role):
    assert options_of(role), f"{role.name}: argument_specs.yml has no options for the main entry point"


def test_every_role_has_a_spec():
    roles = sorted(path.name for path in (REPO / "roles").iterdir() if (path / "tasks").is_dir())
    assert roles == [role.name for role in ROLES], "roles without meta/argument_specs.yml"


def test_a_changed_default_is_caught(tmp_path):
    """The comparison itself: a spec default that differs from defaults/main.yml is reported."""
    role = tmp_path / "roles" / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "defaults" / "main.yml").write_text(
        "demo_port: 25\ndemo_flag: true\ndemo_name: '{{ inventory_hostname }}'\ndemo_hidden: 1\n__demo_private: 2\n"
    )
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    options:\n"
        "      demo_port: {type: int, default: 26}\n"
        "      demo_flag: {type: int, default: 1}\n"
        "      demo_name: {type: str}\n"
    )
    problems = default_mismatches(role)
    assert any("demo_port: default 26 != 25" in problem for problem in problems), problems
    assert any("demo_flag" in problem for problem in problems), problems  # true is not 1
    assert any("demo_name: no default" in problem for problem in problems), problems
    assert undocumented(role) == ["demo: demo_hidden (roles/demo/defaults/main.yml) is no option of any entry point"]

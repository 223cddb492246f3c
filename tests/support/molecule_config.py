"""A Molecule scenario's configuration as Molecule reads it: the base config, then molecule.yml on top."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# Molecule's base config (found at .config/molecule/config.yml of the repository).
BASE_CONFIG = REPO / ".config/molecule/config.yml"


def merged(base: dict, scenario: dict) -> dict:
    """Molecule's merge: mappings merged key by key, anything else (lists too) replaced."""
    result = dict(base)
    for key, value in scenario.items():
        both_dicts = isinstance(result.get(key), dict) and isinstance(value, dict)
        result[key] = merged(result[key], value) if both_dicts else value
    return result


def scenario_config(scenario: Path) -> dict:
    """The merged configuration of the scenario in directory ``scenario``."""
    own = yaml.safe_load((Path(scenario) / "molecule.yml").read_text())
    return merged(yaml.safe_load(BASE_CONFIG.read_text()), own)

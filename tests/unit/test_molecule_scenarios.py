"""Guards on the Molecule scenarios: a verify step that finds no tests passes silently."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

MOLECULE = Path(__file__).resolve().parents[2] / "molecule"
SCENARIOS = sorted(path.parent for path in MOLECULE.glob("*/molecule.yml"))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda path: path.name)
def test_every_scenario_verifies_with_real_tests(scenario):
    config = yaml.safe_load((scenario / "molecule.yml").read_text())
    verifier = config.get("verifier", {})
    assert verifier.get("name") == "testinfra", f"{scenario.name}: verify must run the testinfra tests"
    directory = (scenario / verifier.get("directory", "tests")).resolve()
    tests = sorted(directory.glob("test_*.py"))
    assert tests, f"{scenario.name}: no test_*.py in {directory}; molecule would skip verify and pass"
    sequence = config.get("scenario", {}).get("test_sequence", [])
    assert "verify" in sequence and "idempotence" in sequence, f"{scenario.name}: {sequence}"


def test_there_are_scenarios():
    assert {path.name for path in SCENARIOS} >= {"default", "smoke"}

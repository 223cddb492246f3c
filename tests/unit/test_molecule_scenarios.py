"""Guards on the Molecule scenarios: a verify step that finds no tests passes silently."""

from __future__ import annotations

import pytest

from tests.support.molecule_config import REPO, scenario_config

MOLECULE = REPO / "molecule"
SCENARIOS = sorted(path.parent for path in MOLECULE.glob("*/molecule.yml"))


# The outcome simulation is a measurement: its verify playbook sends the traffic and asserts the
# report's checks; it skips idempotence, which default and cluster-shared prove for the same roles.
MEASUREMENTS = {"outcome"}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda path: path.name)
def test_every_scenario_verifies_with_real_tests(scenario):
    config = scenario_config(scenario)
    verifier = config.get("verifier", {})
    sequence = config.get("scenario", {}).get("test_sequence", [])
    if scenario.name in MEASUREMENTS:
        assert verifier.get("name") == "ansible", f"{scenario.name}: verify is its playbook"
        playbook = scenario / config["provisioner"]["playbooks"]["verify"]
        assert "ansible.builtin.assert:" in playbook.read_text(), f"{playbook}: asserts nothing"
        assert "verify" in sequence, f"{scenario.name}: {sequence}"
        return
    assert verifier.get("name") == "testinfra", f"{scenario.name}: verify must run the testinfra tests"
    directory = (scenario / verifier.get("directory", "tests")).resolve()
    tests = sorted(directory.glob("test_*.py"))
    assert tests, f"{scenario.name}: no test_*.py in {directory}; molecule would skip verify and pass"
    assert "verify" in sequence and "idempotence" in sequence, f"{scenario.name}: {sequence}"


def test_there_are_scenarios():
    assert {path.name for path in SCENARIOS} >= {"default", "smoke"}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda path: path.name)
def test_every_scenario_finds_the_projects_roles_and_plugins(scenario):
    """Molecule does not read ansible.cfg: the base config's env must reach every scenario."""
    config = scenario_config(scenario)
    env = config["provisioner"]["env"]
    assert env["ANSIBLE_COLLECTIONS_PATH"] == "${MOLECULE_PROJECT_DIRECTORY}/collections"
    link = REPO / "collections/ansible_collections/mailguard/mail"
    assert link.resolve() == REPO, f"{link} must link back to the repository"
    assert config["driver"]["name"] == "docker"

"""The scenario itself keeps proving idempotence (behaviour 8): molecule's idempotence step runs the
converge again after the first and fails on any change; it must stay in the sequence."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.molecule_config import scenario_config


def test_idempotence_step_runs_between_converge_and_verify():
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    # As Molecule reads it: the base config (.config/molecule/config.yml) with molecule.yml on top.
    sequence = scenario_config(scenario)["scenario"]["test_sequence"]
    assert "idempotence" in sequence, sequence
    assert sequence.index("converge") < sequence.index("idempotence") < sequence.index("verify"), sequence

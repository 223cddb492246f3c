"""The scenario itself keeps proving idempotence (behaviour 8): molecule's idempotence step runs the
converge again after the first and fails on any change; it must stay in the sequence."""

from __future__ import annotations

from pathlib import Path

import yaml

SCENARIO = Path(__file__).resolve().parents[1]


def test_idempotence_step_runs_between_converge_and_verify():
    sequence = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["scenario"]["test_sequence"]
    assert "idempotence" in sequence, sequence
    assert sequence.index("converge") < sequence.index("idempotence") < sequence.index("verify"), sequence

"""examples/hot_swap/run.sh, the phase-C demo, runs with one command and reports OK."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_hot_swap_demo_replaces_the_policy_once_with_no_restart(tmp_path):
    env = dict(os.environ, HOT_SWAP_DIR=str(tmp_path), HOT_SWAP_RATE_HZ="50",
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    res = subprocess.run([str(ROOT / "examples/hot_swap/run.sh")], env=env, capture_output=True, text=True,
                         timeout=180, stdin=subprocess.DEVNULL)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "OK: replaced once with no restart and nothing missed" in out, out[-4000:]
    assert "load /hot_swap/policy__r1: ok" in out and "unchanged" in out, out[-4000:]

"""The setup command (scripts/setup.sh) on a clean clone of the committed HEAD.

- Run twice: both succeed; the second installs nothing (its "up to date (nothing to install)"
  line, an unchanged `pip freeze`) and is fast.
- Missing prerequisites (cmake, a C compiler, a supported Python) fail at once with a message
  naming them, before anything is installed.

setup.sh runs in an environment stripped of this workspace's venv and overlay, as in a fresh
shell, so the clone cannot borrow anything from the checkout running the tests.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Variables that env.sh or a sourced overlay set; a fresh shell has none of them.
_OVERLAY_VARS = ("VIRTUAL_ENV", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "COLCON_PREFIX_PATH",
                 "PYTHONPATH", "LD_LIBRARY_PATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE",
                 "RMW_IMPLEMENTATION", "PYTHONHOME", "CONDA_PREFIX")


def fresh_env(path_dirs=None) -> dict:
    root = str(REPO_ROOT.resolve())
    # Drop the overlay's variables and anything else pointing into this checkout.
    env = {k: v for k, v in os.environ.items()
           if k not in _OVERLAY_VARS and (k in ("PATH", "PWD", "OLDPWD") or root not in v)}
    if path_dirs is None:
        path_dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
                     if d and not Path(d).resolve().is_relative_to(REPO_ROOT.resolve())]
    env["PATH"] = os.pathsep.join(path_dirs)
    return env


def clone(dest: Path) -> Path:
    """A clean clone of the committed HEAD (uncommitted edits and ignored files stay behind)."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(dest)],
                   check=True, capture_output=True, timeout=120)
    return dest


def run_setup(repo: Path, env: dict, timeout: float) -> tuple:
    t0 = time.monotonic()
    r = subprocess.run(["/bin/bash", str(repo / "scripts" / "setup.sh")], cwd=repo, env=env,
                       capture_output=True, text=True, timeout=timeout)
    return r, time.monotonic() - t0


def pip_freeze(repo: Path, env: dict) -> str:
    r = subprocess.run([str(repo / ".venv" / "bin" / "python"), "-m", "pip", "freeze", "--all"],
                       env=env, capture_output=True, text=True, timeout=120, check=True)
    return r.stdout


@pytest.fixture
def clone_dir(tmp_path):
    # The clone holds a ~750 MB venv: remove it rather than leave it to pytest's tmp rotation.
    yield tmp_path / "clone"
    shutil.rmtree(tmp_path / "clone", ignore_errors=True)


@pytest.mark.slow
def test_setup_twice_on_a_clean_clone(clone_dir):
    repo = clone(clone_dir)
    env = fresh_env()

    first, t_first = run_setup(repo, env, timeout=1500)
    assert first.returncode == 0, f"first setup failed:\n{first.stdout[-4000:]}\n{first.stderr[-4000:]}"
    assert "done." in first.stdout
    assert (repo / ".venv" / "bin" / "python").exists()
    assert (repo / "install" / "schnitzel_msgs").is_dir() and (repo / "install" / "schnitzel_core").is_dir()
    frozen = pip_freeze(repo, env)

    second, t_second = run_setup(repo, env, timeout=900)
    out = second.stdout + second.stderr
    assert second.returncode == 0, f"second setup failed:\n{out[-4000:]}"
    assert "up to date (nothing to install)" in out
    assert "installing pinned" not in out and "creating .venv" not in out
    assert pip_freeze(repo, env) == frozen, "the second run changed the installed packages"
    print(f"setup on a clean clone: first run {t_first:.1f}s, second run {t_second:.1f}s")
    # Fast: nothing is installed and colcon only checks what it built. Relative to the first
    # run (machine load scales both), with an absolute ceiling.
    assert t_second < max(0.6 * t_first, 20.0) and t_second < 300, (t_first, t_second)

    # The built workspace is usable: the messages import in the clone's environment.
    check = subprocess.run(
        ["/bin/bash", "-c", "source scripts/env.sh && python -c "
         "'from schnitzel_msgs.msg import StreamPacket; import schnitzel_core.codecs.ros; print(\"ok\")'"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and check.stdout.strip().endswith("ok"), check.stderr[-2000:]


def path_without(tmp_path: Path, missing: set) -> list:
    """A PATH of one directory holding links to every program on PATH except ``missing``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in fresh_env()["PATH"].split(os.pathsep):
        p = Path(d)
        if not p.is_dir():
            continue
        for exe in p.iterdir():
            name = exe.name
            if (name in missing or any(name.startswith(m + "-") for m in missing)
                    or (bin_dir / name).exists() or (bin_dir / name).is_symlink()):
                continue
            if exe.is_file() and os.access(exe, os.X_OK):
                (bin_dir / name).symlink_to(exe)
    return [str(bin_dir)]


PYTHONS = {"python", "python3", "python3.10", "python3.11", "python3.12", "python3.13", "pyenv"}


@pytest.mark.parametrize("missing, message", [
    ({"cmake"}, "cmake is missing"),
    ({"cc", "gcc", "clang", "x86_64-linux-gnu-gcc"}, "C compiler is missing"),
    ({"c++", "g++", "clang++", "x86_64-linux-gnu-g++"}, "C++ compiler is missing"),
    (PYTHONS, "no supported Python found"),
], ids=["cmake", "c-compiler", "cxx-compiler", "python"])
def test_missing_prerequisite_fails_fast_and_clearly(tmp_path, missing, message):
    repo = clone(tmp_path / "clone")
    env = fresh_env(path_without(tmp_path, missing))
    env.pop("SCHNITZEL_PYTHON", None)
    env.pop("ROS_DISTRO", None)
    r, took = run_setup(repo, env, timeout=120)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert "error" in r.stderr and "Traceback" not in r.stderr
    assert not (repo / ".venv").exists() and not (repo / "build").exists(), "setup.sh installed before checking"
    assert took < 30, took

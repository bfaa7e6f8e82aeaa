"""Shared pytest fixtures for the cross-package tests in test/.

- ``ros_env``: an environment dict for subprocesses that run DDS code (localhost-only
  discovery, this session's ROS_DOMAIN_ID, unbuffered output).
- ``free_port``: a TCP port on 127.0.0.1 that was free a moment ago.
- ``spawn``: starts subprocesses in their own process group and kills the whole group on
  teardown (``spawn.module("pkg.mod", "--arg")``, ``spawn.script(path)``, ``spawn(argv)``);
  each process's stdout and stderr go to a log file, read with ``spawn.output(proc)``.

Marker ``slow``: tests that take a minute or more; they run by default
(deselect with ``-m "not slow"``).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


#: The lock file that holds this xdist worker's ROS domain (kept open for the worker's life).
_DOMAIN_LOCK = None


def _claim_domain() -> Optional[int]:
    """A ROS domain no other test process on this machine holds: the lock pool scripts/test.sh
    uses (/tmp/schnitzel-domain-N.lock, flock held while the process lives)."""
    global _DOMAIN_LOCK
    import random

    from schnitzel_core.lifetime import hold_free
    got = hold_free("/tmp/schnitzel-domain-{}.lock", random.sample(range(1, 101), 100))
    if got is None:
        return None
    domain, _DOMAIN_LOCK = got
    return domain


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes a minute or more (still part of the default suite)")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        # scripts/test.sh runs these tests on several workers (pytest-xdist): each worker gets a
        # ROS domain and a state folder of its own, so two workers' graphs never meet.
        domain = _claim_domain()
        if domain is not None:
            os.environ["ROS_DOMAIN_ID"] = str(domain)
        if os.environ.get("SCHNITZEL_STATE_DIR"):
            os.environ["SCHNITZEL_STATE_DIR"] = os.path.join(os.environ["SCHNITZEL_STATE_DIR"], worker)
            os.makedirs(os.environ["SCHNITZEL_STATE_DIR"], exist_ok=True)
    # scripts/test.sh picks a domain per run; a bare `pytest test/...` gets one per process
    # rather than domain 0, so it cannot meet another run's nodes.
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


@pytest.fixture
def ros_env() -> Dict[str, str]:
    """Environment for subprocesses that speak DDS (a fresh copy per test)."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Spawner:
    """Starts processes in new sessions; ``stop_all`` ends each whole process group."""

    def __init__(self, log_dir: Path, env: Dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.procs: List[subprocess.Popen] = []

    def __call__(self, argv: Sequence[str], env: Optional[Dict[str, str]] = None,
                 cwd: Optional[os.PathLike] = None, name: Optional[str] = None) -> subprocess.Popen:
        name = name or Path(str(argv[-1] if len(argv) > 1 else argv[0])).name
        log = self.log_dir / f"{len(self.procs):02d}-{''.join(c if c.isalnum() else '_' for c in name)[:40]}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(list(argv), env=env or self.env, cwd=cwd or REPO_ROOT,
                                    stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        proc.log_path = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def module(self, module: str, *args: str, **kw) -> subprocess.Popen:
        return self([sys.executable, "-m", module, *args], name=kw.pop("name", module), **kw)

    def script(self, path: os.PathLike, *args: str, **kw) -> subprocess.Popen:
        return self([sys.executable, str(path), *args], name=kw.pop("name", Path(path).stem), **kw)

    @staticmethod
    def output(proc: subprocess.Popen) -> str:
        return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    @staticmethod
    def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 60.0) -> bool:
        """Wait until ``text`` appears in the process's output (False on timeout or exit)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in Spawner.output(proc):
                return True
            if proc.poll() is not None:
                return text in Spawner.output(proc)
            time.sleep(0.05)
        return False

    @staticmethod
    def kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=wait)
                # The leader is gone; children of the group may linger: one more SIGKILL.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.kill_group(proc)


@pytest.fixture
def spawn(tmp_path, ros_env):
    s = Spawner(tmp_path, ros_env)
    yield s
    s.stop_all()

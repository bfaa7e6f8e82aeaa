"""Helpers for the runtime system tests (schnitzel run, containers, manager).

Every process a test starts inherits a unique tag in its environment
(``SZ_RUNTIME_TAG``), so the process table can be checked for *this test's*
schnitzel processes only (other runs may share the machine), and teardown can
SIGKILL whatever a failed test left behind.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, List, Optional


TAG_VAR = "SZ_RUNTIME_TAG"


def tagged_processes(tag: str) -> Dict[int, str]:
    """pid -> command line of every live process whose environment carries ``tag``."""
    found = {}
    needle = f"{TAG_VAR}={tag}".encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle not in (d / "environ").read_bytes().split(b"\0"):
                continue
            stat = (d / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie is already dead (its parent has not reaped it yet)
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found[int(d.name)] = cmd
    return found


def schnitzel_processes(tag: str) -> Dict[int, str]:
    return {p: c for p, c in tagged_processes(tag).items()
            if "schnitzel_container" in c or "schnitzel_manager" in c or "schnitzel_bringup" in c
            or "schnitzel_nodes" in c or " run " in f" {c} "}


class Tagged:
    def __init__(self, env: Dict[str, str]) -> None:
        self.tag = uuid.uuid4().hex
        self.env = dict(env)
        self.env[TAG_VAR] = self.tag

    def processes(self) -> Dict[int, str]:
        return tagged_processes(self.tag)

    def reap(self) -> List[str]:
        left = self.processes()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return list(left.values())


def schnitzel_cmd(*args: str) -> List[str]:
    return [sys.executable, "-m", "schnitzel_bringup.cli", *args]


def read_status(run_dir: Path) -> Optional[dict]:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None


def read_lines(path: Path) -> List[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def start_run(graph: Path, run_dir: Path, env: Dict[str, str], *extra: str, log: Optional[Path] = None):
    log = log or run_dir.with_suffix(".runner.log")
    fh = open(log, "wb")
    proc = subprocess.Popen(schnitzel_cmd("run", str(graph), "--run-dir", str(run_dir), *extra),
                            env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    fh.close()
    proc.log_path = log  # type: ignore[attr-defined]
    return proc


def output(proc) -> str:
    return Path(proc.log_path).read_text(errors="replace")

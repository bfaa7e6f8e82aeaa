"""Process helpers for the delivery fault tests: the reference backend and the delivery
worker (test/delivery/_worker.py) as real processes that the tests kill and restart."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

from schnitzel_core.packet import Packet
from schnitzel_core.testing import wait_for as wait_until  # noqa: F401 - the fault tests' name

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def packet(seq: int, stream: str = "cam0", epoch: int = 0, **extra: Any) -> Packet:
    return Packet.from_json(stream, seq, "event", {"seq": seq, "pad": "x" * 120, **extra}, epoch=epoch)


class Backend:
    def __init__(self, tmp: Path, port: Optional[int] = None, reject_marker: str = "") -> None:
        self.port = port or free_port()
        self.db = tmp / "backend.db"
        self.log = tmp / "backend.log"
        self.reject_marker = reject_marker
        self.proc: Optional[subprocess.Popen] = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> float:
        args = [sys.executable, "-m", "schnitzel_bringup.reference_backend", "--port", str(self.port),
                "--db", str(self.db)]
        if self.reject_marker:
            args += ["--reject-marker", self.reject_marker]
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        ok = wait_until(lambda: self._up(), timeout)
        assert ok, f"backend did not start: {self.log.read_text()[-2000:]}"
        return time.monotonic()

    def _up(self) -> bool:
        try:
            self.stats()
            return True
        except (OSError, urllib.error.URLError):
            return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stats(self) -> Dict[str, Any]:
        return json.loads(urllib.request.urlopen(self.url + "/stats", timeout=5).read())

    def keys(self) -> Dict[str, int]:
        return json.loads(urllib.request.urlopen(self.url + "/keys", timeout=10).read())["keys"]

    def control(self, **kw: Any) -> Dict[str, Any]:
        req = urllib.request.Request(self.url + "/_control", data=json.dumps(kw).encode(),
                                     headers={"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req, timeout=5).read())


class Worker:
    """durable_queue + a sink's logic (http_sink, or ``sink_plugin``) in one process; packets in on
    stdin, status out on stdout."""

    def __init__(self, tmp: Path, url: str, queue_params: Optional[Dict[str, Any]] = None,
                 sink_params: Optional[Dict[str, Any]] = None, sink_plugin: str = "") -> None:
        self.db = tmp / "queue.db"
        self.url = url + "/events" if url else ""
        self.sink_plugin = sink_plugin
        self.log = tmp / "worker.log"
        self.qp = {"commit_ms": 2.0, **(queue_params or {})}
        self.sp = {"backoff_base_s": 0.05, "backoff_cap_s": 0.5, "probe_interval_s": 1.0, **(sink_params or {})}
        self.proc: Optional[subprocess.Popen] = None
        self.status: Dict[str, Any] = {}
        self.statuses: List[Dict[str, Any]] = []

    def start(self, crash_after_delivered: int = 0, **qp: Any) -> None:
        args = [sys.executable, str(HERE / "_worker.py"), "--db", str(self.db), "--url", self.url,
                "--queue-params", json.dumps({**self.qp, **qp}), "--sink-params", json.dumps(self.sp)]
        if self.sink_plugin:
            args += ["--sink-plugin", self.sink_plugin]
        if crash_after_delivered:
            args += ["--crash-after-delivered", str(crash_after_delivered)]
        self.status = {}
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(self.log, "ab"), start_new_session=True)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        assert wait_until(lambda: self.status.get("ready") or "t" in self.status, 20), self.log.read_text()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if proc is self.proc:
                self.status = doc
                if "t" in doc:
                    self.statuses.append(doc)

    def send(self, p: Packet) -> float:
        """Write one packet to the worker's input; returns how long the write blocked."""
        t0 = time.monotonic()
        assert self.proc and self.proc.stdin
        self.proc.stdin.write((json.dumps(p.to_dict()) + "\n").encode())
        self.proc.stdin.flush()
        return time.monotonic() - t0

    def counter(self, name: str) -> int:
        return int(self.status.get("counters", {}).get(name, 0))

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def alive(self) -> bool:
        return bool(self.proc) and self.proc.poll() is None


def queue_stats(db: Path) -> Dict[str, Any]:
    """Read the queue's stats from outside, as an operator would (the CLI, JSON)."""
    out = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", "queue", "stats", str(db),
                          "--format", "json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def graph_pids(name: str, container: str = ""):
    """pids of this graph's processes (matched on its unique graph name)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
        except OSError:
            continue
        if f"--graph {name} " in cmd + " " and (not container or f"--container {container} " in cmd + " "):
            out.append(int(d.name))
    return sorted(out)


def stop_graph(runner: subprocess.Popen, name: str) -> None:
    """Teardown of a `schnitzel run` started by a test: SIGINT, then SIGKILL what is left."""
    if runner.poll() is None:
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
    for pid in graph_pids(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

"""The built-in runner: what ``schnitzel run`` executes where no launch system is installed.

It starts one ``schnitzel_container`` process per container of the plan and one
``schnitzel_manager`` (the lifecycle manager does the ordered bring-up), shows a
live status line from the manager's status file, restarts a container that
dies per its policy (``restart: on-failure`` with exponential backoff and a
limit; the manager re-loads the container's nodes), and stops the graph on
Ctrl-C / SIGTERM / ``--duration`` / ``--max-packets``:

1. SIGTERM to the manager: it deactivates sources first, drains, deactivates
   and shuts down every node in data-flow order, and exits;
2. SIGTERM to every container's process group, SIGKILL after a timeout;
3. nothing the runner started is left behind (each child runs in its own
   session, so its whole process group is signalled).

The runner itself does not import rclpy: it is a process supervisor.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from schnitzel_core.lifetime import die_with_parent

from .plan import Plan

MAX_BACKOFF_S = 30.0
#: A container that has run this long since its last (re)start counts as healthy again: its
#: restart backoff and its restart count towards ``restart_limit`` start over.
RESTART_RESET_S = 60.0
TIMELINE_MAX = 3600       # run report time series: samples kept (the interval doubles when full)
STOP_TIMEOUT_S = 30.0     # manager's ordered tear-down
KILL_TIMEOUT_S = 5.0      # SIGTERM -> SIGKILL for containers


def container_command(plan: Plan, cid: str) -> List[str]:
    c = plan.container(cid)
    exe = shutil.which(c.executable)
    if exe is None:
        # Installed ROS-style under lib/<package> (for `ros2 run`); fall back to that.
        for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
            cand = Path(prefix) / "lib" / c.package / c.executable
            if prefix and cand.is_file():
                exe = str(cand)
                break
    cmd = [exe] if exe else [sys.executable, "-m", "schnitzel_nodes.container"]
    return cmd + list(c.arguments) + ["--ros-args", "-r", f"__node:={c.node_name}", "-r", f"__ns:={c.namespace}"]


def manager_command(plan_path: str, status_path: str) -> List[str]:
    exe = shutil.which("schnitzel_manager")
    m = [exe] if exe else [sys.executable, "-m", "schnitzel_bringup.manager"]
    return m + ["--plan", plan_path, "--status-file", status_path]


def controller_command(plan_path: str, run_dir: str) -> List[str]:
    """The autonomic controllers' host (schnitzel_bringup.controller_node, docs/autonomic.md)."""
    return [sys.executable, "-m", "schnitzel_bringup.controller_node", "--plan", plan_path, "--run-dir", run_dir]


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the runner dies (even by SIGKILL), so no orphan
    is left (the entry points ask again themselves, for launch; schnitzel_core.lifetime)."""
    die_with_parent(signal.SIGTERM)


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Child:
    """One supervised process (a container or the manager), in its own process group."""

    def __init__(self, name: str, cmd: List[str], log_path: Path,
                 env: Optional[Dict[str, str]] = None) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env                  # None: the runner's own environment
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None
        self.exit_codes: List[int] = []
        self.restarts = 0               # restarts during the run (the report's figure)
        self.streak = 0                 # restarts since it last ran RESTART_RESET_S without dying
        self.started_mono = 0.0         # monotonic time of the last (re)start
        self.restart_at: Optional[float] = None
        self.gave_up: str = ""
        self.pids: List[int] = []

    def start(self) -> None:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=log, env=self.env,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        finally:
            log.close()
        self.pids.append(self.proc.pid)
        self.started_mono = time.monotonic()

    def poll(self) -> Optional[int]:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def group_alive(self) -> bool:
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def timeline_sample(snap: Dict[str, Any], t: float) -> Dict[str, Any]:
    """One point of the run report's ``timeline``: cumulative per-node counts at ``t`` s after start,
    latency percentiles over the node's recent window, and the queue gauges (depth, oldest age)."""
    nodes: Dict[str, Any] = {}
    for nid, s in (snap.get("nodes") or {}).items():
        d = {"in": int(s.get("packets_in", 0) or 0), "out": int(s.get("packets_out", 0) or 0),
             "drops": int(s.get("drops", 0) or 0), "errors": int(s.get("errors", 0) or 0),
             "p50": round(float(s.get("latency_p50_ms", 0.0) or 0.0), 3),
             "p99": round(float(s.get("latency_p99_ms", 0.0) or 0.0), 3)}
        counters = s.get("counters") or {}
        for k in ("depth", "oldest_age_ms"):
            if k in counters:
                try:
                    d[k] = int(float(counters[k]))
                except (TypeError, ValueError):
                    pass
        nodes[nid] = d
    return {"t": round(t, 3), "state": snap.get("state", "?"), "status": snap.get("status", "?"),
            "nodes": nodes}


def status_line(graph: str, snap: Optional[Dict[str, Any]], elapsed: float, rate: float,
                restarts: int) -> str:
    if not snap:
        return f"[{graph}] {elapsed:6.1f}s starting..."
    nodes = snap.get("nodes", {})
    drops = sum(int(n.get("drops", 0) or 0) for n in nodes.values())
    errors = sum(int(n.get("errors", 0) or 0) for n in nodes.values())
    status = snap.get("status", "?")
    why = list(snap.get("problems") or []) if status == "degraded" else []
    return (f"[{graph}] {elapsed:6.1f}s {snap.get('state', '?'):<11} active {snap.get('nodes_active', 0)}/"
            f"{snap.get('nodes_total', 0)} | {rate:8.1f} pkt/s | drops {drops} | errors {errors}"
            f" | restarts {restarts} | {status}"
            + (f": {why[0]}" + (f" (+{len(why) - 1} more)" if len(why) > 1 else "") if why else ""))


class Runner:
    def __init__(self, plan: Plan, plan_path: str, run_dir: str, *, duration: Optional[float] = None,
                 max_packets: Optional[int] = None, live: bool = True,
                 out: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
                 restart_reset_s: float = RESTART_RESET_S, host: str = "") -> None:
        self.plan = plan
        # ``--host NAME`` (docs/multi-host.md): only that host's containers, the manager only on the
        # manager host, every process under the host's DDS settings (plan.dds_env)
        self.host = host
        self.env: Optional[Dict[str, str]] = ({**os.environ, **plan.dds_env} if host and plan.dds_env else None)
        self.runs_manager = not host or host == plan.manager_host
        self.aux: List[Child] = []      # the Fast DDS discovery server, on its host
        self.plan_path = plan_path
        self.run_dir = Path(run_dir)
        self.duration = duration
        self.max_packets = max_packets
        self.live = live
        self.out = out
        self.status_path = str(self.run_dir / "status.json")
        self.containers: Dict[str, Child] = {}
        self.manager: Optional[Child] = None
        self.controller: Optional[Child] = None   # only when the graph declares controllers:
        self.stop_reason = ""
        self.signals = 0
        self.snap: Optional[Dict[str, Any]] = None
        self.started_at = time.time()
        self.active_at: Optional[float] = None
        self.timeline: List[Dict[str, Any]] = []
        self.timeline_every_s = 1.0
        self.restart_reset_s = restart_reset_s

    # ---- signals ----------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signals += 1
        if not self.stop_reason:
            self.stop_reason = "signal:" + signal.Signals(signum).name
        if self.signals >= 3:  # impatient user: stop waiting for a clean tear-down
            self._kill_all(signal.SIGKILL)

    # ---- supervision ----------------------------------------------------------------------
    def _read_status(self) -> Optional[Dict[str, Any]]:
        try:
            with open(self.status_path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return self.snap

    def _check_containers(self, now: float) -> None:
        for cid, child in self.containers.items():
            if child.gave_up:
                continue
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    child.restarts += 1
                    child.streak += 1
                    child.start()
                    self.out(f"\nschnitzel run: restarted container {cid!r} (pid {child.proc.pid}, "
                             f"restart {child.restarts})")
                continue
            code = child.poll()
            if child.streak and child.started_mono and now - child.started_mono >= self.restart_reset_s:
                child.streak = 0     # it ran long enough: the next failure starts the backoff over
            if code is None:
                continue
            child.exit_codes.append(code)
            policy = self.plan.container(cid).restart
            tail = child.log_tail(8)
            self.out(f"\nschnitzel run: container {cid!r} exited with code {code}" +
                     (f"; last lines of {child.log_path}:\n{tail}" if tail else ""))
            if policy.policy != "on-failure":
                child.gave_up = f"restart policy is {policy.policy!r}"
            elif child.streak >= policy.limit:
                child.gave_up = f"restart limit {policy.limit} reached"
            else:
                delay = min(MAX_BACKOFF_S, policy.backoff_s * (2 ** child.streak))
                child.restart_at = now + delay
            if child.gave_up:
                self.out(f"schnitzel run: container {cid!r} is not restarted ({child.gave_up})")

    def _bounded(self, snap: Optional[Dict[str, Any]], now: float) -> Optional[str]:
        if snap and snap.get("state") == "active" and self.active_at is None:
            self.active_at = now
        if self.duration is not None and self.active_at is not None and now - self.active_at >= self.duration:
            return "duration"
        if self.max_packets is not None and snap:
            nodes = snap.get("nodes", {})
            sinks = self.plan.sinks or [n.id for n in self.plan.nodes if not any(
                n.id in m.upstream for m in self.plan.nodes)]
            got = sum(int(nodes.get(i, {}).get("packets_in", 0) or 0) for i in sinks)
            if got >= self.max_packets:
                return "max-packets"
        return None

    def _sample(self) -> None:
        self.timeline.append(timeline_sample(self.snap or {}, time.time() - self.started_at))
        if len(self.timeline) > TIMELINE_MAX:   # long runs: halve the resolution, keep the span
            self.timeline = self.timeline[::2]
            self.timeline_every_s *= 2

    # ---- stop ---------------------------------------------------------------------------
    def _children(self) -> List[Child]:
        return (list(self.containers.values()) + ([self.manager] if self.manager else [])
                + ([self.controller] if self.controller else []) + self.aux)

    def _kill_all(self, sig: int) -> None:
        for child in self._children():
            if child.proc is not None:
                _kill_group(child.proc, sig)

    def _wait_groups(self, children: List[Child], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for c in children:
                if c.proc is not None:
                    c.proc.poll()
            if not any(c.group_alive() for c in children):
                return True
            time.sleep(0.05)
        return False

    def _stop(self) -> None:
        self.out(f"\nschnitzel run: stopping ({self.stop_reason}): sources first, then draining")
        for c in self.containers.values():
            c.restart_at = None   # no respawn during tear-down
        if self.controller is not None and self.controller.alive():
            # the control plane first: no knob moves while the graph drains
            _kill_group(self.controller.proc, signal.SIGTERM)
            self._wait_groups([self.controller], KILL_TIMEOUT_S)
        if self.manager is not None and self.manager.alive():
            _kill_group(self.manager.proc, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self.manager.alive() and time.monotonic() < deadline and self.signals < 3:
                time.sleep(0.1)
        children = self._children()
        for c in children:
            if c.proc is not None:
                _kill_group(c.proc, signal.SIGTERM)
        if not self._wait_groups(children, KILL_TIMEOUT_S):
            stuck = [c.name for c in children if c.group_alive()]
            self.out(f"schnitzel run: {', '.join(stuck)} did not exit in {KILL_TIMEOUT_S:.0f} s; killing")
            self._kill_all(signal.SIGKILL)
            self._wait_groups(children, KILL_TIMEOUT_S)
        for c in children:
            if c.proc is not None:
                try:
                    c.proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    pass

    def _start_discovery_server(self) -> None:
        """``discovery: {mode: server, server: HOST}``: the host's share starts the Fast DDS
        discovery server (eProsima's fast-discovery-server, as ``fastdds discovery`` runs it)."""
        srv = self.plan.discovery_server if self.host else {}   # set in this host's share
        if not srv:
            return
        addr, port = srv["address"], srv["port"]
        exe = shutil.which("fast-discovery-server")
        if exe:
            cmd = [exe, "42", "-l", addr, "-p", port]     # 42: the tool's "server" command
        elif shutil.which("fastdds"):
            cmd = ["fastdds", "discovery", "-l", addr, "-p", port]
        else:
            self.out("schnitzel run: no Fast DDS discovery server found (fast-discovery-server or fastdds); "
                     f"start one on {addr}:{port} yourself")
            return
        child = Child("discovery server", cmd, self.run_dir / "discovery-server.log", env=self.env)
        child.start()
        self.aux.append(child)
        self.out(f"schnitzel run: Fast DDS discovery server on {addr}:{port} (log {child.log_path})")

    def _run_worker(self, old_handlers: Dict[int, Any]) -> Dict[str, Any]:
        """A worker host's share: supervise its containers (restart policy as usual) until a signal
        or ``--duration``; the manager on the manager host loads, activates, watches and stops
        their nodes. No status of its own (``snap`` stays None)."""
        self.out(f"schnitzel run: graph {self.plan.graph!r}, host {self.host}: {len(self.containers)} "
                 f"container(s) (the lifecycle manager runs on {self.plan.manager_host}); logs in {self.run_dir}")
        try:
            start = time.monotonic()
            while not self.stop_reason:
                now = time.monotonic()
                self._check_containers(now)
                if self.duration is not None and now - start >= self.duration:
                    self.stop_reason = "duration"
                    break
                time.sleep(0.2)
            self._stop()
        finally:
            if any(c.group_alive() for c in list(self.containers.values()) + self.aux):
                self._kill_all(signal.SIGKILL)
            for s, h in old_handlers.items():
                signal.signal(s, h)
        return self._result()

    # ---- main --------------------------------------------------------------------------
    def run(self) -> Dict[str, Any]:
        """Run until bounded or signalled; returns what the report needs."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        Path(self.status_path).unlink(missing_ok=True)  # a previous run's status must not be read as ours
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._start_discovery_server()
            mine = self.plan.containers_on(self.host) if self.host else self.plan.containers
            for c in mine:
                child = Child(f"container {c.id}", container_command(self.plan, c.id),
                              self.run_dir / f"container-{c.id}.log", env=self.env)
                self.containers[c.id] = child
                child.start()
            if not self.runs_manager:
                return self._run_worker(old)
            self.manager = Child("manager", manager_command(self.plan_path, self.status_path),
                                 self.run_dir / "manager.log", env=self.env)
            self.manager.start()
            if self.plan.controllers:
                self.controller = Child("controller", controller_command(self.plan_path, str(self.run_dir)),
                                        self.run_dir / "controller.log", env=self.env)
                self.controller.start()
            self.out(f"schnitzel run: graph {self.plan.graph!r}: {len(mine)} container(s), "
                     f"{len(self.plan.nodes)} node(s)" + (f" (host {self.host})" if self.host else "")
                     + f"; logs in {self.run_dir}")
            last_print = 0.0
            last_count: Optional[tuple] = None
            rate = 0.0
            tty = sys.stderr.isatty()
            while not self.stop_reason:
                now = time.monotonic()
                self._check_containers(now)
                self.snap = self._read_status()
                if self.manager.poll() is not None:
                    self.stop_reason = "manager-exited"
                    if self.manager.proc.returncode not in (0, None):
                        # Its reason (the status message) is printed once, with the run's problems;
                        # here only where to look, or the log's tail when it wrote no status.
                        code = self.manager.proc.returncode
                        self.out(f"\nschnitzel run: the lifecycle manager stopped (exit code {code}); "
                                 f"process logs: {self.run_dir}"
                                 + ("" if (self.snap or {}).get("message") else f"\n{self.manager.log_tail(10)}"))
                        self.stop_reason = "error"
                    break
                reason = self._bounded(self.snap, now)
                if reason:
                    self.stop_reason = reason
                    break
                if self.snap and (not self.timeline or time.time() - self.started_at
                                  >= self.timeline[-1]["t"] + self.timeline_every_s):
                    self._sample()
                if self.snap:
                    produced = sum(int(self.snap["nodes"].get(i, {}).get("packets_out", 0) or 0)
                                   for i in self.plan.sources)
                    if last_count is not None and now > last_count[0]:
                        rate = 0.7 * rate + 0.3 * (produced - last_count[1]) / (now - last_count[0])
                    last_count = (now, produced)
                if self.live and now - last_print >= (0.5 if tty else 5.0):
                    restarts = sum(c.restarts for c in self.containers.values())
                    line = status_line(self.plan.graph, self.snap, time.time() - self.started_at, rate, restarts)
                    if tty:  # one line, rewritten in place
                        sys.stderr.write("\r" + line + "\x1b[K")
                        sys.stderr.flush()
                    else:
                        self.out(line)
                    last_print = now
                time.sleep(0.2)
            self._stop()
            self.snap = self._read_status()
            if self.snap:
                self._sample()
        finally:
            if any(c.group_alive() for c in self._children()):
                self._kill_all(signal.SIGKILL)
            for s, h in old.items():
                signal.signal(s, h)
        return self._result()

    def _result(self) -> Dict[str, Any]:
        containers = {cid: {"restarts": c.restarts, "exit_codes": c.exit_codes, "pids": c.pids,
                            "policy": self.plan.container(cid).restart.policy, "gave_up": c.gave_up}
                      for cid, c in self.containers.items()}
        result = {"status": self.snap, "containers": containers, "stopped_by": self.stop_reason,
                  "started_at": self.started_at, "ended_at": time.time(), "timeline": self.timeline}
        if self.plan.controllers:   # the controllers' decisions (controller_node's summary)
            try:
                result["control"] = json.loads((self.run_dir / "control-summary.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                result["control"] = {"controllers": {}, "decisions": [], "error": "the controller wrote no summary; "
                                     f"see {self.run_dir / 'controller.log'}"}
        return result

"""Chaos profiles: run the whole graph under `schnitzel run`, fire faults at their times, then
check invariants (docs/testing-graphs.md#chaos-profiles).

A graph whose `hosts:` declares two or more hosts runs, where network namespaces can be made
(root, `ip netns`), as one `schnitzel run --host NAME` per host, each in its own namespace of a
:class:`netns.Sandbox` (veth pairs to a bridge); `cut_link` takes a host's link down there.

A fault that did not fire (no process killed, no connection hit) fails the profile; a fault
that cannot be made on this machine (a small filesystem cannot be mounted, a single-host graph
has no link to cut, namespaces are not permitted) makes the profile SKIP with the reason, never
pass. The invariants are judged after the run, in ``invariants.py``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from . import netns
# the invariants, judged after the run
from .invariants import _get, _jsonl_keys, _queue_ids, check, queue_delivered_count
from .proxy import FaultProxy
from .result import Result
from .spec import Chaos, Fault, TestFile


class Skip(Exception):
    pass


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Backend:
    """The reference backend (python -m schnitzel_bringup.reference_backend) on 127.0.0.1, or on
    this machine's address in the namespace sandbox (multi-host runs)."""

    def __init__(self, work: Path, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = _free_port(host)
        self.db = work / "backend.db"
        self.log = work / "backend.log"
        self.proc: Optional[subprocess.Popen] = None
        self.url = f"http://{host}:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.reference_backend", "--host",
                                          self.host, "--port", str(self.port), "--db", str(self.db)], stdout=fh,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.up():
                return
            time.sleep(0.1)
        raise RuntimeError(f"the reference backend did not start: {self.log.read_text()[-1000:]}")

    def up(self) -> bool:
        try:
            _get(self.url + "/stats")
            return True
        except OSError:
            return False

    def stop(self) -> bool:
        """SIGKILL it; True when it was running and is now unreachable."""
        if not self.proc or self.proc.poll() is not None:
            return False
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        return not self.up()

    def count(self) -> int:
        try:
            return int(_get(self.url + "/stats")["unique_keys"])
        except OSError:
            return -1


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


class Run:
    """One chaos run: the processes, what was observed, what each fault did."""

    def __init__(self, tf: TestFile, graph: Any, prof: Chaos) -> None:
        self.tf, self.graph, self.prof = tf, graph, prof
        self.work = Path(tempfile.mkdtemp(prefix="schnitzel-chaos-"))
        self.name = f"{graph.name}_c{uuid.uuid4().hex[:6]}"
        self.backend: Optional[Backend] = None
        self.proxy: Optional[FaultProxy] = None
        self.status_seq: List[str] = []           # graph status, consecutive repeats collapsed
        self.samples: List[Tuple[float, int]] = []  # (t, packets held by the sinks)
        # named queues (`queue:`) -> [(t, rows delivered per its ledger)], for resume_within_s
        self.queue_samples: Dict[str, List[Tuple[float, int]]] = {}
        self._queue_dbs: Optional[Dict[str, Path]] = None
        self.fired: Dict[int, str] = {}           # fault index -> what happened
        self.not_fired: Dict[int, str] = {}
        self.fault_end = 0.0
        self.t0 = 0.0
        self.status_path = self.work / "run" / "status.json"
        self.env: Dict[str, str] = {}
        self.box: Optional[netns.Sandbox] = None   # multi-host: one network namespace per host
        self.router: Optional[Tuple[str, str]] = None   # (host, endpoint) of the Zenoh router to start
        self.procs: List[subprocess.Popen] = []    # the per-host runs besides the manager's, the router

    # ---- set-up -----------------------------------------------------------------------
    def prepare(self) -> Path:
        prof = self.prof
        hosts = [h.name for h in self.graph.hosts]
        why = netns.unavailable() if len(hosts) >= 2 else None
        for f in prof.faults:
            if f.do == "cut_link":
                if len(hosts) < 2:
                    raise Skip("cut_link: the graph runs on one host (its `hosts:` declares fewer than two), so "
                               "there is no link between hosts to cut")
                if why:
                    raise Skip(f"cut_link: each host's share must run in its own network namespace, and {why}")
            if f.do == "fill_disk":
                self._mount_small_fs()
        if len(hosts) >= 2 and why is None:
            netns.sweep()
            self.box = netns.Sandbox(hosts, netns.free_subnet(os.getpid()), attach_here=prof.backend)
        here = self.box.here_addr if self.box and self.box.here_addr else "127.0.0.1"
        url = ""
        if prof.backend:
            self.backend = Backend(self.work, here)
            self.backend.start()
            url = self.backend.url
            if any(f.do == "proxy" for f in prof.faults):
                self.proxy = FaultProxy(self.backend.port, here, listen_host=here)
                url = f"http://{here}:{self.proxy.port}"
        data = self.disk or self.work / "data"
        data.mkdir(exist_ok=True)
        subst = {"{tmp}": str(data), "{backend}": url}
        env = {"SCHNITZEL_DATA": str(data), **({"SCHNITZEL_BACKEND_URL": url + "/events"} if url else {})}
        # the file's env too: its "{tmp}" is this run's data directory (a fresh one per run, so a
        # durable queue never finds the keys of an earlier run in its ledger)
        for k, v in {**self.tf.env, **prof.env}.items():
            for a, b in subst.items():
                v = v.replace(a, b)
            env[k] = v
        self.env = env
        doc = yaml.safe_load(self.tf.graph.read_text(encoding="utf-8"))
        doc["name"] = self.name
        if self.box is not None:
            self._place(doc)
        for f in prof.faults:
            if f.do == "skew_clock":
                self._skew(doc, f)
        self._tap(doc)
        gfile = self.work / "graph.yaml"
        gfile.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return gfile

    disk: Optional[Path] = None
    taps: List[Path] = []
    tap_queue: Dict[Path, str] = {}               # tap file -> the queue its edge feeds

    def _place(self, doc: Dict[str, Any]) -> None:
        """Each host at its namespace's address; a Zenoh router at a host's address moves with it
        (the run starts it in that host's namespace)."""
        from schnitzel_core.graph_loader import load_graph
        g = load_graph(str(self.tf.graph), env={**os.environ, **self.env})
        assert self.box is not None
        for h in doc.get("hosts", []):
            h["address"] = self.box.addr[h["name"]]
        if (g.zenoh or {}).get("mode") == "client":
            router = str(g.zenoh.get("router", ""))
            m = re.fullmatch(r"(tcp|udp)/([^:/]+):(\d+)", router)
            host = next((h.name for h in g.hosts if m and h.address == m.group(2)), None)
            if host is None:
                raise Skip(f"the graph's Zenoh router {router} is not at one of its hosts' addresses, so the "
                           "namespace sandbox cannot start it")
            doc["zenoh"]["router"] = f"{m.group(1)}/{self.box.addr[host]}:{m.group(3)}"
            self.router = (host, doc["zenoh"]["router"])

    def _tap(self, doc: Dict[str, Any]) -> None:
        """Record what the sources' side emitted toward the durable queue: a graphtest_capture
        node on every edge into the queue, in the sending node's container (so it gets the
        packets in-process and dies with the sender, never with the queue)."""
        nodes = {n.get("id"): n for n in doc.get("nodes", []) if isinstance(n, dict)}
        qids = _queue_ids(self.prof.check, [i for i, n in nodes.items() if n.get("plugin") == "durable_queue"])
        if not qids:
            return
        self.taps, self.tap_queue = [], {}
        for k, e in enumerate([e for e in doc.get("edges", []) if str(e.get("to", "")).split(".")[0] in qids]):
            src = nodes.get(str(e["from"]).split(".")[0], {})
            path = self.work / f"tap{k}.jsonl"
            tap = {"id": f"graphtest_tap{k}", "plugin": "graphtest_capture", "params": {"path": str(path)}}
            if "container" in src:
                tap["container"] = src["container"]
            doc["nodes"].append(tap)
            doc["edges"].append({"from": e["from"], "to": f"graphtest_tap{k}.in"})
            self.taps.append(path)
            self.tap_queue[path] = str(e["to"]).split(".")[0]

    def _mount_small_fs(self) -> None:
        d = self.work / "smallfs"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)], capture_output=True, text=True)
        if r.returncode != 0:
            raise Skip("fill_disk: a small filesystem cannot be mounted here "
                       f"(mount -t tmpfs: {(r.stderr or r.stdout).strip() or 'exit ' + str(r.returncode)}); "
                       "run as root with CAP_SYS_ADMIN to include this fault")
        self.disk = d

    def _skew(self, doc: Dict[str, Any], f: Fault) -> None:
        node = next((n for n in doc.get("nodes", []) if n.get("id") == f.args["node"]), None)
        if node is None:
            raise ValueError(f"skew_clock: the graph has no node {f.args['node']!r}")
        if node.get("plugin") != "synthetic_source":
            raise Skip(f"skew_clock: {node['plugin']} has no clock that can be skewed (synthetic_source can: "
                       "deterministic_stamps with start_ns)")
        if f.at:
            raise Skip("skew_clock: synthetic_source takes its clock at start only; use `at: 0`")
        off = float(f.args.get("offset_s", 30.0))
        node.setdefault("params", {}).update({"deterministic_stamps": True, "start_ns": time.time_ns() + int(off * 1e9)})
        self.skew = (f, off)

    skew: Optional[Tuple[Fault, float]] = None

    # ---- the run ----------------------------------------------------------------------
    def execute(self, gfile: Path) -> Dict[str, Any]:
        prof = self.prof
        report = self.work / "report.json"
        run = [sys.executable, "-m", "schnitzel_bringup.cli", "run", str(gfile), "-q"]
        main = ["--duration", str(prof.duration_s), "--run-dir", str(self.work / "run"), "--report", str(report)]
        if self.box is None:
            proc = self._start(run + main, "run.log")
        else:
            # one `schnitzel run --host` per host, each in its namespace; the manager host's run
            # lasts duration_s and reports, the others run until it is done
            if self.router is not None:
                self.procs.append(self._start([sys.executable, "-m", "schnitzel_bringup.zenoh_router", "--listen",
                                               self.router[1]], "router.log", self.router[0]))
            boss = next(h.name for h in self.graph.hosts if h.role == "manager")
            for h in self.graph.hosts:
                if h.name != boss:
                    argv = run + ["--host", h.name, "--run-dir", str(self.work / f"run-{h.name}")]
                    self.procs.append(self._start(argv, f"run-{h.name}.log", h.name))
            proc = self._start(run + ["--host", boss] + main, "run.log", boss)
        try:
            # t = 0 is when the graph is first active (all nodes up), as --duration counts
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                st = self._status()
                if st.get("state") == "active" or st.get("ever_active"):
                    break
                time.sleep(0.1)
            self.t0 = time.monotonic()
            todo = sorted(enumerate(prof.faults), key=lambda x: x[1].at)
            threads = []
            while proc.poll() is None:
                now = time.monotonic() - self.t0
                while todo and todo[0][1].at <= now:
                    i, f = todo.pop(0)
                    t = threading.Thread(target=self._fire, args=(i, f), daemon=True)
                    t.start()
                    threads.append(t)
                self._observe(now)
                time.sleep(0.2)
            for t in threads:
                t.join(60)
            for i, f in todo:
                self.not_fired[i] = f"{f.do} at {f.at:g} s: the run ended at {time.monotonic() - self.t0:.1f} s, first"
        finally:
            if proc.poll() is None:      # interrupted: SIGTERM first, so the run stops its manager and containers
                self.procs.insert(0, proc)
            self._stop_procs()
        try:
            return json.loads(report.read_text())
        except (OSError, ValueError):
            return {}

    def _start(self, argv: List[str], log: str, host: Optional[str] = None) -> subprocess.Popen:
        if host is not None:
            assert self.box is not None
            argv = self.box.exec_argv(host, argv)
        with open(self.work / log, "wb") as fh:
            return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
                                    start_new_session=True)

    def _stop_procs(self) -> None:
        """SIGTERM (a worker host's run stops its containers), then SIGKILL what is left."""
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(p.pid, signal.SIGKILL)    # the group: containers that outlived their runner
            except (ProcessLookupError, PermissionError):
                pass
            p.wait(10)
        self.procs.clear()

    def _status(self) -> Dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def _held(self) -> int:
        if self.backend is not None:
            return self.backend.count()
        return sum(len(_jsonl_keys(p)) for p in self._jsonl_paths())

    def _observe(self, now: float) -> None:
        st = self._status().get("status")
        if st and (not self.status_seq or self.status_seq[-1] != st):
            self.status_seq.append(st)
        self.samples.append((now, self._held()))
        if "resume_within_s" in self.prof.check:
            for qid, db in self._named_queue_dbs().items():
                n = queue_delivered_count(db)
                if n is not None:
                    self.queue_samples.setdefault(qid, []).append((now, n))

    def _named_queue_dbs(self) -> Dict[str, Path]:
        """The files of the queues the profile names (`queue:`), once the graph is known."""
        if self._queue_dbs is None:
            try:
                g = self._interp_graph()
            except Exception:  # noqa: BLE001 - not written yet: try again next time
                return {}
            named = self.prof.check.get("queue")
            named = [named] if isinstance(named, str) else list(named or [])
            self._queue_dbs = {q: Path(g.node(q).params["path"]) for q in named
                               if g.node(q) is not None and g.node(q).plugin == "durable_queue"
                               and "path" in g.node(q).params}
        return self._queue_dbs

    def _container_pid(self, cid: str) -> int:
        """The container's pid: from the run's status.json, else found in /proc by the graph's
        unique name and the container id on its command line."""
        c = self._status().get("containers", {}).get(cid, {})
        pid = int(c.get("pid") or 0)
        if pid and _pid_alive(pid):
            return pid
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace") + " "
                except OSError:
                    continue
                if f"--graph {self.name} " in cmd and f"--container {cid} " in cmd and _pid_alive(int(d.name)):
                    return int(d.name)
        return pid

    def _fire(self, i: int, f: Fault) -> None:
        a = f.args
        span = float(a.get("for_s", 0.0))
        try:
            if f.do == "kill_container":
                pid = self._container_pid(a["container"])
                if not pid or not _pid_alive(pid):
                    self.not_fired[i] = f"kill_container {a['container']}: no running process found"
                    return
                os.kill(pid, signal.SIGKILL)
                self.fault_end = max(self.fault_end, time.monotonic() - self.t0)   # recovery counts from here
                gone = _wait(lambda: not _pid_alive(pid), 10)
                back = _wait(lambda: self._container_pid(a["container"]) not in (0, pid), 30)
                (self.fired if gone else self.not_fired)[i] = (
                    f"kill_container {a['container']} at {f.at:g} s: SIGKILL pid {pid}"
                    + (f", restarted as pid {self._container_pid(a['container'])}" if back else ", not restarted"))
            elif f.do == "stop_backend":
                assert self.backend is not None
                if not self.backend.stop():
                    self.not_fired[i] = "stop_backend: the backend was not running"
                    return
                self.fired[i] = f"stop_backend at {f.at:g} s: SIGKILL, unreachable confirmed"
                if span:
                    time.sleep(span)
                    self.backend.start()
                    self.fired[i] += f"; restarted after {span:g} s on the same port and database"
                self.fault_end = max(self.fault_end, time.monotonic() - self.t0)
            elif f.do == "proxy":
                assert self.proxy is not None
                toxic = a["toxic"]
                before = self.proxy.affected[toxic]
                self.proxy.set_toxic(toxic, latency_ms=float(a.get("latency_ms", 1000)))
                end = time.monotonic() + (span or 5.0)
                while time.monotonic() < end:
                    if toxic == "refuse" and self.proxy.refused_probe():
                        self.proxy.affected["refuse"] += 1
                    time.sleep(0.5)
                self.proxy.set_toxic(None)
                n = self.proxy.affected[toxic] - before
                (self.fired if n else self.not_fired)[i] = (
                    f"proxy {toxic} at {f.at:g} s for {span or 5.0:g} s: {n} connection(s) hit"
                    + ("" if n else " (nothing connected while the toxic was on)"))
                self.fault_end = max(self.fault_end, time.monotonic() - self.t0)
            elif f.do == "drop_source":
                node = self.graph.node(a["node"])
                if node is None:
                    self.not_fired[i] = f"drop_source: the graph has no node {a['node']!r}"
                    return
                pid = self._container_pid(node.container)
                if not pid:
                    self.not_fired[i] = f"drop_source {a['node']}: container {node.container} has no process"
                    return
                os.kill(pid, signal.SIGSTOP)
                stopped = _wait(lambda: _proc_state(pid) == "T", 5)
                time.sleep(span or 3.0)
                os.kill(pid, signal.SIGCONT)
                others = [n.id for n in self.graph.nodes if n.container == node.container and n.id != node.id]
                (self.fired if stopped else self.not_fired)[i] = (
                    f"drop_source {a['node']} at {f.at:g} s: container {node.container} (pid {pid}) frozen (SIGSTOP) "
                    f"for {span or 3.0:g} s" + (f"; it also hosts {', '.join(others)}" if others else ""))
                self.fault_end = max(self.fault_end, time.monotonic() - self.t0)
            elif f.do == "cut_link":
                assert self.box is not None
                host, span = a["host"], span or 5.0
                self.box.link(host, up=False)
                cut = _wait(lambda: not self.box.carrier(host), 5)
                if cut:
                    time.sleep(span)
                self.box.link(host, up=True)
                back = _wait(lambda: self.box.carrier(host), 10)
                if not cut:
                    self.not_fired[i] = f"cut_link {host}: its link was set down but {host}'s eth0 kept its carrier"
                elif not back:
                    self.not_fired[i] = f"cut_link {host}: the link was cut but did not come back up"
                else:
                    self.fired[i] = (f"cut_link {host} at {f.at:g} s: {host}'s link down for {span:g} s (no carrier "
                                     f"on its eth0, confirmed), then up again")
                self.fault_end = max(self.fault_end, time.monotonic() - self.t0)
            elif f.do == "skew_clock":
                self.fired[i] = "skew_clock: pending the check of the delivered stamps"
            elif f.do == "fill_disk":
                assert self.disk is not None
                filler = self.disk / "filler"
                with open(filler, "wb") as fh:
                    try:
                        while True:
                            fh.write(b"\0" * 65536)
                            fh.flush()
                    except OSError:
                        pass
                self.fired[i] = f"fill_disk at {f.at:g} s: {filler.stat().st_size} bytes written until the disk was full"
                time.sleep(span or 3.0)
                filler.unlink()
                self.fault_end = max(self.fault_end, time.monotonic() - self.t0)
        except Exception as exc:  # noqa: BLE001 - a fault that broke is reported, not raised
            self.not_fired[i] = f"{f.do}: {type(exc).__name__}: {exc}"

    # ---- the checks -------------------------------------------------------------------
    def _interp_graph(self) -> Any:
        from schnitzel_core.graph_loader import load_graph
        return load_graph(str(self.work / "graph.yaml"), env={**os.environ, **self.env})

    def _jsonl_paths(self) -> List[Path]:
        try:
            g = self._interp_graph()
        except Exception:  # noqa: BLE001
            return []
        return [Path(n.params["path"]) for n in g.nodes if n.plugin.endswith("jsonl_sink") and "path" in n.params]

    def cleanup(self) -> None:
        self._stop_procs()
        if self.backend is not None:
            self.backend.stop()
        if self.proxy is not None:
            self.proxy.close()
        if self.disk is not None:
            subprocess.run(["umount", str(self.disk)], capture_output=True)
        if self.box is not None:
            self.box.close()


def _wait(cond: Any, timeout: float) -> bool:
    from schnitzel_core.testing import wait_for
    return bool(wait_for(cond, timeout, 0.05))


def run_profile(tf: TestFile, graph: Any, prof: Chaos) -> Result:
    t0 = time.monotonic()
    res = Result(str(tf.path), f"chaos: {prof.name}", "pass")
    run = Run(tf, graph, prof)
    try:
        try:
            gfile = run.prepare()
        except Skip as exc:
            res.status, res.details = "skip", [str(exc)]
            return res
        rep = run.execute(gfile)
        fails, notes = check(run, rep)
        for i, f in enumerate(prof.faults):
            if i in run.fired:
                res.notes.append(f"fired: {run.fired[i]}")
            else:
                fails.append(f"{tf.path}:{f.line}: fault {f.do} did not fire: {run.not_fired.get(i, 'no reason recorded')}")
        res.notes.append(f"chaos run {run.name}: report status {rep.get('status', '?')}"
                         + (f", files kept in {run.work}" if fails else ""))
        res.notes += notes
        if fails:
            res.status, res.details = "fail", fails
    except Exception as exc:  # noqa: BLE001 - the harness reports, it does not crash
        res.status, res.details = "error", [f"{type(exc).__name__}: {exc} (files in {run.work})"]
    finally:
        run.cleanup()
        if res.status in ("pass", "skip"):   # a failed run keeps its directory for the user to look into
            shutil.rmtree(run.work, ignore_errors=True)
        res.seconds = time.monotonic() - t0
    return res

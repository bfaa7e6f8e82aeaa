"""Network namespaces as hosts: the sandbox the chaos harness (`cut_link`, multi-host graphs)
and the multi-host tests run each host's share in. Pure stdlib and the `ip` command; root needed.

``Sandbox(hosts, subnet)`` makes one namespace per host, each with a veth pair whose other end
sits in a hub namespace holding a bridge; host i gets ``10.251.<subnet>.<i>``, a range that exists
only inside these namespaces, so no packet leaves them. ``attach_here=True`` also joins this
machine's own namespace to the bridge as ``10.251.<subnet>.254`` (the chaos harness serves the
reference backend and the fault proxy there). ``link(host, up)`` cuts or restores a host's only
link, ``impair(host, delay_ms, loss_pct)`` delays and loses packets on it; ``close()`` deletes
every namespace it made (their veths go with them, the one in this machine's namespace too),
also after a failure, and ``sweep()`` removes namespaces a killed process left behind.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from typing import Any, Dict, List, Optional, Tuple

_COUNTER = itertools.count()
_NS = re.compile(r"^sz(\d+)-\d+-")     # sz<pid>-<n>-<host>: the namespaces a Sandbox makes


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip() or 'exit ' + str(r.returncode)}")
    return r


def unavailable() -> Optional[str]:
    """Why namespaces cannot be made here (None when they can)."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    name = f"szprobe{os.getpid()}"
    r = _ip("netns", "add", name, check=False)
    if r.returncode != 0:
        return f"`ip netns add` is not permitted here: {r.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


def netem_unavailable() -> Optional[str]:
    """Why ``tc netem`` cannot be used here (None when it can); call it with namespaces available."""
    if shutil.which("tc") is None:
        return "the `tc` command (iproute2) is not installed"
    name = f"sznetem{os.getpid()}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "add", "name", "szq0", "type", "veth", "peer", "name", "szq1")
        r = subprocess.run(["tc", "-n", name, "qdisc", "add", "dev", "szq0", "root", "netem", "delay", "1ms"],
                           capture_output=True, text=True, timeout=10)
        return None if r.returncode == 0 else f"tc netem is not available here: {r.stderr.strip()}"
    finally:
        _ip("netns", "del", name, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def namespaces() -> List[str]:
    return [line.split()[0] for line in _ip("netns", "list", check=False).stdout.splitlines() if line.strip()]


def sweep() -> List[str]:
    """Delete the namespaces of Sandboxes whose process is gone (killed before its close())."""
    gone = [ns for ns in namespaces() if (m := _NS.match(ns)) and not _alive(int(m.group(1)))]
    for ns in gone:
        _ip("netns", "del", ns, check=False)
    return gone


#: subnet -> the lock file this process holds on it (free_subnet; released by Sandbox.close)
_SUBNET_LOCKS: Dict[int, Any] = {}


def free_subnet(start: int) -> int:
    """A subnet 10.251.<n>.0/24 with no route in this machine's namespace (for attach_here),
    held for this process (an flock on /tmp/schnitzel-subnet-<n>.lock) until the Sandbox using
    it closes: two runs starting at the same moment never pick the same one."""
    from schnitzel_core.lifetime import hold_free

    routes = _ip("-4", "route", "show", check=False).stdout
    got = hold_free("/tmp/schnitzel-subnet-{}.lock",
                    (n for n in (1 + (start + k) % 250 for k in range(250))
                     if f"10.251.{n}.0/24" not in routes and n not in _SUBNET_LOCKS))
    if got is None:
        raise RuntimeError("every 10.251.<n>.0/24 subnet is routed or held on this machine already")
    _SUBNET_LOCKS[got[0]] = got[1]
    return got[0]


class Sandbox:
    def __init__(self, hosts: List[str], subnet: int, attach_here: bool = False) -> None:
        n = next(_COUNTER)
        self.prefix = f"sz{os.getpid()}-{n}-"                 # namespace names
        self.tag = f"sz{os.getpid() % 10000}{n % 10}"         # interface names (15 characters at most)
        self.hub = f"{self.prefix}hub"
        self.subnet = subnet
        self.made: List[str] = []
        self.addr: Dict[str, str] = {}
        self.ns: Dict[str, str] = {}
        self.peer: Dict[str, str] = {}          # host -> its veth end in the hub (cut the link there)
        self.here_addr = ""                     # this machine's address on the bridge (attach_here)
        self.relays: Dict[str, Tuple[subprocess.Popen, str]] = {}   # host -> (link emulator, its stats file)
        try:
            self._add(self.hub)
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "link", "set", "br0", "up")
            for i, h in enumerate(hosts, start=1):
                ns = f"{self.prefix}{h}"
                self._add(ns)
                here, there = f"{self.tag}{i}a", f"{self.tag}{i}b"
                _ip("link", "add", here, "netns", ns, "type", "veth", "peer", "name", there, "netns", self.hub)
                _ip("-n", ns, "link", "set", here, "name", "eth0")
                _ip("-n", ns, "addr", "add", f"10.251.{subnet}.{i}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                self._bridge(there)
                self.ns[h], self.addr[h], self.peer[h] = ns, f"10.251.{subnet}.{i}", there
            if attach_here:
                mine, there = f"{self.tag}h", f"{self.tag}hb"
                _ip("link", "add", mine, "type", "veth", "peer", "name", there, "netns", self.hub)
                _ip("addr", "add", f"10.251.{subnet}.254/24", "dev", mine)
                _ip("link", "set", mine, "up")
                self._bridge(there)
                self.here_addr = f"10.251.{subnet}.254"
        except BaseException:
            self.close()
            raise

    def _add(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.made.append(ns)

    def _bridge(self, dev: str) -> None:
        _ip("-n", self.hub, "link", "set", dev, "master", "br0")
        _ip("-n", self.hub, "link", "set", dev, "up")

    def exec_argv(self, host: str, argv: List[str]) -> List[str]:
        return ["ip", "netns", "exec", self.ns[host], *argv]

    def link(self, host: str, up: bool) -> None:
        """Cut (or restore) the host's only link: its veth end in the hub goes down (up)."""
        _ip("-n", self.hub, "link", "set", self.peer[host], "up" if up else "down")

    def carrier(self, host: str) -> bool:
        """Whether the host's own end of its link has a carrier (False while the link is cut)."""
        flags = _ip("-n", self.ns[host], "-o", "link", "show", "dev", "eth0").stdout
        return "NO-CARRIER" not in flags and "state UP" in flags

    def impair(self, host: str, delay_ms: float, loss_pct: float) -> str:
        """Delay every packet on the host's link by ``delay_ms`` and lose ``loss_pct`` % of them,
        each direction; returns how. With ``tc netem`` where the kernel has it (on both ends of
        the link), else with the user-space link emulator (linkem.py): the host's veth end leaves
        the bridge, a second veth pair joins the bridge in its place, and linkem passes the frames
        between the two in the hub namespace. ``link(host, up)`` still cuts the link."""
        if netem_unavailable() is None:
            for where in (["-n", self.hub, "qdisc", "replace", "dev", self.peer[host]],
                          ["-n", self.ns[host], "qdisc", "replace", "dev", "eth0"]):
                subprocess.run(["tc", *where, "root", "netem", "delay", f"{delay_ms}ms", "loss", f"{loss_pct}%"],
                               capture_output=True, text=True, check=True, timeout=10)
            return f"tc netem delay {delay_ms:g}ms loss {loss_pct:g}% on both ends of {host}'s link"
        i = list(self.peer).index(host) + 1
        there, inner, outer = self.peer[host], f"{self.tag}{i}c", f"{self.tag}{i}d"
        _ip("-n", self.hub, "link", "add", inner, "type", "veth", "peer", "name", outer)
        _ip("-n", self.hub, "link", "set", outer, "up")
        _ip("-n", self.hub, "link", "set", there, "nomaster")
        self._bridge(inner)
        stats = f"/tmp/{self.prefix}{host}.linkem.json"
        proc = subprocess.Popen(["ip", "netns", "exec", self.hub, sys.executable, "-m",
                                 "schnitzel_bringup.graphtest.linkem", there, outer, "--delay-ms", str(delay_ms),
                                 "--loss-pct", str(loss_pct), "--stats", stats],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.relays[host] = (proc, stats)
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "ready":
            raise RuntimeError(f"the link emulator did not start: {line}{proc.stdout.read() if proc.stdout else ''}")
        return (f"user-space link emulator (linkem, no sch_netem in this kernel): every frame on {host}'s link, "
                f"each direction, lost with probability {loss_pct:g} %, the rest delayed {delay_ms:g} ms")

    def impair_stats(self, host: str) -> Dict[str, int]:
        """The link emulator's frame counts for the host's link ({} with netem, or none running)."""
        try:
            with open(self.relays[host][1], encoding="utf-8") as fh:
                return json.load(fh)
        except (KeyError, OSError, ValueError):
            return {}

    def close(self) -> None:
        for proc, stats in self.relays.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            for f in (stats, stats + ".tmp"):
                if os.path.exists(f):
                    os.unlink(f)
        self.relays.clear()
        for ns in reversed(self.made):
            _ip("netns", "del", ns, check=False)
        self.made.clear()
        held = _SUBNET_LOCKS.pop(self.subnet, None)
        if held is not None:
            held.close()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

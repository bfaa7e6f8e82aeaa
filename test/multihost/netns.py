"""Network namespaces as hosts, for the multi-host tests (root and `ip netns` needed).

``Sandbox`` makes one namespace per host, each with a veth pair whose other end sits in a hub
namespace holding a bridge; addresses come from 10.251.<domain>.0/24, which exists only inside
these namespaces, so no packet leaves them. ``close()`` deletes every namespace it made (their
veths go with them), also after a failure.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Dict, List, Optional


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


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


class Sandbox:
    def __init__(self, hosts: List[str], subnet: int) -> None:
        self.tag = f"sz{os.getpid() % 10000}"
        self.hub = f"{self.tag}hub"
        self.made: List[str] = []
        self.addr: Dict[str, str] = {}
        self.ns: Dict[str, str] = {}
        self.peer: Dict[str, str] = {}          # host -> its veth end in the hub (cut the link there)
        try:
            self._add(self.hub)
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "link", "set", "br0", "up")
            for i, h in enumerate(hosts, start=1):
                ns = f"{self.tag}{h}"
                self._add(ns)
                here, there = f"{self.tag}{i}a", f"{self.tag}{i}b"
                _ip("link", "add", here, "netns", ns, "type", "veth", "peer", "name", there, "netns", self.hub)
                _ip("-n", ns, "link", "set", here, "name", "eth0")
                _ip("-n", ns, "addr", "add", f"10.251.{subnet}.{i}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", self.hub, "link", "set", there, "master", "br0")
                _ip("-n", self.hub, "link", "set", there, "up")
                self.ns[h], self.addr[h], self.peer[h] = ns, f"10.251.{subnet}.{i}", there
        except BaseException:
            self.close()
            raise

    def _add(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.made.append(ns)

    def exec_argv(self, host: str, argv: List[str]) -> List[str]:
        return ["ip", "netns", "exec", self.ns[host], *argv]

    def link(self, host: str, up: bool) -> None:
        """Cut (or restore) the host's only link: its veth end in the hub goes down (up)."""
        _ip("-n", self.hub, "link", "set", self.peer[host], "up" if up else "down")

    def impair(self, host: str, delay_ms: int, loss_pct: float) -> None:
        """Delay and lose packets on the host's link, both directions (tc netem)."""
        for where in (["-n", self.hub, "qdisc", "replace", "dev", self.peer[host]],
                      ["-n", self.ns[host], "qdisc", "replace", "dev", "eth0"]):
            subprocess.run(["tc", *where, "root", "netem", "delay", f"{delay_ms}ms", "loss", f"{loss_pct}%"],
                           capture_output=True, text=True, check=True, timeout=10)

    def close(self) -> None:
        for ns in reversed(self.made):
            _ip("netns", "del", ns, check=False)
        self.made.clear()

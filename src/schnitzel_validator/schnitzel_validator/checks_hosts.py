"""Placement on hosts (SCH7xx, docs/multi-host.md): a mixin of the validator's checker."""
from __future__ import annotations

import re
from typing import Any, Dict, Set

from .hints import _did_you_mean

HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class HostChecks:
    """``hosts:``, containers placed on them, discovery and Zenoh settings, edges between sites."""

    def check_hosts(self) -> None:
        g = self.g
        if not g.hosts:
            if g.discovery.get("mode") == "server" or any(e.transport == "zenoh" for e in g.edges):
                what = "discovery: {mode: server}" if g.discovery.get("mode") == "server" else "transport: zenoh"
                self.add("SCH707", f"{what} needs the graph's hosts: the graph declares none",
                         g.key_pos.get("discovery", g.pos),
                         "declare `hosts:` (name, address, role) and place containers on them with `host:`")
            return
        hosts: Dict[str, Any] = {}
        for h in g.hosts:
            if not h.name:
                continue
            where = h.key_pos.get("name", h.pos)
            if h.name in hosts:
                self.add("SCH706", f"host {h.name!r} is declared twice (first at line {hosts[h.name].pos.line})",
                         where, "give each host its own name")
                continue
            hosts[h.name] = h
            if not HOST_NAME.match(h.name):
                self.add("SCH706", f"host name {h.name!r} is not valid (it names the host's plan and launch files)",
                         where, f"use letters, digits, '_' and '-', e.g. `name: {re.sub(r'[^A-Za-z0-9_-]', '_', h.name)}`")
        managers = [h for h in hosts.values() if h.role == "manager"]
        if len(managers) != 1:
            where = managers[1].key_pos.get("role", managers[1].pos) if managers else g.key_pos.get("hosts", g.pos)
            self.add("SCH702", (f"{len(managers)} hosts have role manager ({', '.join(h.name for h in managers)}); "
                                "one lifecycle manager owns the graph" if managers else
                                "no host has role manager: nothing would run the lifecycle manager"), where,
                     "give exactly one host `role: manager` (the others `role: worker`, the default)")
        used: Set[str] = set()
        for c in self.containers.values():
            if c.implicit and c.host not in hosts and len(hosts) == 1:
                continue   # a one-host graph without containers: everything goes to that host
            if c.host not in hosts:
                where = c.key_pos.get("host", c.key_pos.get("id", c.pos))
                self.add("SCH701", f"container {c.id!r} is placed on host {c.host!r}, which the graph does not "
                         "declare" + ("" if "host" in c.key_pos else " (containers without `host:` go to "
                                      f"{c.host!r})"), where,
                         _did_you_mean(c.host, list(hosts)) + f"declared hosts: {', '.join(hosts)}; write "
                         f"`host: NAME` on the container")
            else:
                used.add(c.host)
        if len(hosts) > 1:
            # DDS reaches a host through its address (static peers / discovery server); without one
            # the manager could never load or watch its nodes.
            for h in hosts.values():
                if not h.address and (h.name in used or h.role == "manager"):
                    self.add("SCH703", f"host {h.name!r} has no address: the lifecycle manager "
                             + ("cannot be reached by the other hosts" if h.role == "manager" else
                                "cannot reach its containers") + " (DDS peers are listed by address)",
                             h.key_pos.get("name", h.pos), "add `address: IP` (or a DNS name) to the host")
        mode = g.discovery.get("mode", "static")
        if mode == "server":
            srv = g.discovery.get("server", "")
            if srv not in hosts:
                self.add("SCH707", "discovery: {mode: server} needs `server: HOST`, a declared host that runs the "
                         "Fast DDS discovery server" + (f" (got {srv!r})" if srv else ""),
                         g.key_pos.get("discovery.server", g.key_pos.get("discovery", g.pos)),
                         f"write e.g. `discovery: {{mode: server, server: {next(iter(hosts), 'base')}}}`")
        if g.zenoh.get("mode") == "client" and not g.zenoh.get("router"):
            self.add("SCH707", "zenoh: {mode: client} needs `router:` (the router's endpoint every site connects "
                     "to)", g.key_pos.get("zenoh", g.pos), "write e.g. `zenoh: {mode: client, router: "
                     "tcp/10.0.0.1:7447}`, or `mode: peer` for a mesh")
        for e in self.linked:
            src, dst = self.nodes.get(e.src_node), self.nodes.get(e.dst_node)
            if src is None or dst is None:
                continue
            sc, dc = self.container_of(src), self.container_of(dst)
            if sc is None or dc is None:
                continue
            sh, dh = hosts.get(sc.host), hosts.get(dc.host)
            inter_site = sh is not None and dh is not None and (sh.site or "") != (dh.site or "")
            tpos = e.key_pos.get("transport", e.pos)
            if inter_site and e.transport == "dds":
                self.add("SCH705", f"transport dds between sites: {src.id} runs on {sh.name!r} (site "
                         f"{sh.site or '-'!r}) and {dst.id} on {dh.name!r} (site {dh.site or '-'!r}); DDS "
                         "discovery and reliability are made for one site's network", tpos,
                         "use `transport: zenoh` (or auto, which picks zenoh between sites)", edge=e.label)
            if (inter_site and e.transport in ("auto", "zenoh")) or e.transport == "zenoh":
                sspec = self.specs.get(src.id)
                if sspec is not None and not getattr(sspec, "durable_queue", False):
                    why = "goes between sites" if inter_site else "goes over zenoh"
                    self.add("SCH704", f"edge {e.label} {why}, but {src.id} ({src.plugin}) is not a durable "
                             "queue: packets sent while the link is down would be lost", e.key_pos.get("from", e.pos),
                             f"send it from a durable queue on {sh.name if sh else 'the sending host'}: "
                             f"{e.src_node}.{e.src_port} -> queue.in, queue.out -> {e.dst_node}.{e.dst_port}",
                             edge=e.label)

    # ---- names and placement ---------------------------------------------------

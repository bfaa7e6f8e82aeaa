"""One graph, many hosts (docs/multi-host.md): each host's share of a plan and its DDS settings.

A host's share is the whole plan (the lifecycle manager owns every host's nodes, so it needs
them all) with ``host`` naming the host that runs it and ``dds_env`` the environment its
processes run under:

- ``FASTDDS_BUILTIN_TRANSPORTS=UDPv4``: Fast DDS would otherwise use shared memory with any
  participant it believes is on the same machine; between hosts (and network namespaces of one
  machine) only UDP reaches the other side;
- ``discovery: {mode: static}`` (the default): ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` and
  ``ROS_STATIC_PEERS`` listing the addresses of the hosts this one talks DDS to: the hosts of
  its own site, and the manager host (the manager host lists every host);
- ``discovery: {mode: server, server: HOST}``: ``ROS_DISCOVERY_SERVER=ADDRESS:PORT`` of the
  Fast DDS discovery server on that host, and ``ROS_SUPER_CLIENT=TRUE`` on the manager host (the
  manager looks services up by name, so it must see the whole graph).
"""
from __future__ import annotations

import copy
from typing import Dict, List

from schnitzel_core.graph import DEFAULT_DISCOVERY_PORT

from .plan import Plan


class HostError(ValueError):
    """A host name the plan does not declare."""


def host_names(plan: Plan) -> List[str]:
    return [h["name"] for h in plan.hosts]


def _host(plan: Plan, name: str) -> Dict[str, str]:
    for h in plan.hosts:
        if h["name"] == name:
            return h
    known = ", ".join(host_names(plan)) or "none (the graph declares no hosts:)"
    raise HostError(f"host {name!r} is not declared in graph {plan.graph!r} (hosts: {known})")


def dds_peers(plan: Plan, name: str) -> List[str]:
    """Addresses of the hosts ``name`` talks DDS to: its site's hosts and the manager host (all
    hosts, for the manager host itself); its own address is not listed."""
    me = _host(plan, name)
    out: List[str] = []
    for h in plan.hosts:
        if h["name"] == name or not h.get("address"):
            continue
        if me.get("role") == "manager" or h.get("role") == "manager" or h.get("site", "") == me.get("site", ""):
            if h["address"] not in out:
                out.append(h["address"])
    return out


def dds_env(plan: Plan, name: str) -> Dict[str, str]:
    """The environment a host's processes run under (see the module's doc)."""
    _host(plan, name)
    env = {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}
    if plan.discovery.get("mode") == "server":
        srv = _host(plan, plan.discovery["server"])
        port = int(plan.discovery.get("port", DEFAULT_DISCOVERY_PORT))
        env["ROS_DISCOVERY_SERVER"] = f"{srv.get('address') or '127.0.0.1'}:{port}"
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"
        if _host(plan, name).get("role") == "manager":
            # a plain client learns only the endpoints it matches; the manager looks every
            # container's services up by name, so it must see the whole graph
            env["ROS_SUPER_CLIENT"] = "TRUE"
        return env
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"
    env["ROS_STATIC_PEERS"] = ";".join(dds_peers(plan, name))
    return env


def discovery_server(plan: Plan, name: str) -> Dict[str, str]:
    """``{address, port}`` of the Fast DDS discovery server host ``name`` runs (``discovery:
    {mode: server, server: NAME}``), else ``{}``."""
    d = plan.discovery or {}
    if d.get("mode") != "server" or d.get("server") != name:
        return {}
    return {"address": _host(plan, name).get("address") or "0.0.0.0",
            "port": str(int(d.get("port", DEFAULT_DISCOVERY_PORT)))}


def host_share(plan: Plan, name: str) -> Plan:
    """The plan ``<graph>.<host>.plan.json`` holds: the whole plan, ``host``, ``dds_env`` and,
    on the discovery server's host, ``discovery_server`` set."""
    share = copy.deepcopy(plan)
    share.host = name
    share.dds_env = dds_env(plan, name)
    share.discovery_server = discovery_server(plan, name)
    return share


def on_one_machine(plan: Plan) -> Plan:
    """The plan for running every host's containers on this machine (``schnitzel run`` without
    ``--host``, ``<graph>.launch.py``): Zenoh sessions meet on 127.0.0.1 instead of the hosts'
    addresses. The i-th container with a Zenoh edge listens on ``127.0.0.1:<zenoh port + i>`` and
    connects to the others', so whichever starts later reaches the earlier ones."""
    zen = [n for n in plan.nodes if "zenoh" in n.ports]
    if not zen:
        return plan
    local = copy.deepcopy(plan)
    port = int(plan.zenoh.get("port", 7447))
    cids = [c.id for c in local.containers if any(n.container == c.id for n in zen)]
    ends = {cid: f"tcp/127.0.0.1:{port + i}" for i, cid in enumerate(cids)}
    for n in local.nodes:
        if "zenoh" in n.ports:
            n.ports["zenoh"] = {"mode": "peer", "listen": [ends[n.container]],
                                "connect": [e for cid, e in ends.items() if cid != n.container]}
    return local


def env_file_text(share: Plan) -> str:
    """``<graph>.<host>.env``: the same settings for a shell (``set -a; . FILE; set +a``)."""
    lines = [f"# DDS settings of host {share.host!r} of graph {share.graph!r} (generated by schnitzel compile)"]
    lines += [f"{k}='{v}'" for k, v in sorted(share.dds_env.items())]
    return "\n".join(lines) + "\n"

"""A case on the real runtime: the part of the graph the case touches (the same nodes the
in-process path wires) runs under `schnitzel run` in one container, fed by graphtest_source at
each input port and read by graphtest_capture at each expected output port."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Dict, List, Tuple

import yaml

from schnitzel_core.packet import Packet

from .inproc import CaseError, check_ports, subgraph
from .spec import Case, TestFile, resolved_env

SETTLE_S = 3.0   # after the last input: time for the packets to reach the captures


def derived_graph(graph: Any, registry: Any, case: Case, work: Path, name: str) -> Tuple[Dict[str, Any], Dict[str, List[Path]]]:
    ids = subgraph(graph, case)
    nodes: List[Dict[str, Any]] = []
    for n in graph.nodes:
        if n.id in ids:
            d: Dict[str, Any] = {"id": n.id, "plugin": n.plugin, "container": "test", "params": dict(n.params)}
            if n.qos:
                d["qos"] = n.qos
            nodes.append(d)
    edges = [{"from": f"{e.src_node}.{e.src_port}", "to": f"{e.dst_node}.{e.dst_port}",
              **({"qos": e.qos} if e.qos else {})}
             for e in graph.edges if e.src_node in ids and e.dst_node in ids]
    for k, inp in enumerate(case.inputs):
        f = work / f"input{k}.jsonl"
        f.write_text("".join(json.dumps(p) + "\n" for p in inp.packets), encoding="utf-8")
        nodes.append({"id": f"graphtest_in{k}", "plugin": "graphtest_source", "container": "test",
                      "params": {"path": str(f)}})
        edges.append({"from": f"graphtest_in{k}.out", "to": inp.at})
    captures: Dict[str, List[Path]] = {}
    for k, e in enumerate(case.expect):
        nid, _, port = e.at.partition(".")
        spec = registry.load_class(graph.node(nid).plugin).spec
        for j, pname in enumerate([port] if port else [p.name for p in spec.outputs]):
            f = work / f"output{k}_{j}.jsonl"
            cid = f"graphtest_out{k}_{j}"
            nodes.append({"id": cid, "plugin": "graphtest_capture", "container": "test", "params": {"path": str(f)}})
            edges.append({"from": f"{nid}.{pname}", "to": f"{cid}.in"})
            captures.setdefault(e.at, []).append(f)
    doc = {"schnitzel": 1, "name": name, "containers": [{"id": "test", "restart": "never"}],
           "nodes": nodes, "edges": edges}
    if graph.payload_ref:
        doc["payload_ref"] = graph.raw.get("payload_ref")
    return doc, captures


def run_case(tf: TestFile, graph: Any, registry: Any, case: Case) -> Tuple[Dict[str, List[Packet]], List[Packet]]:
    check_ports(graph, registry, case)
    work = Path(tempfile.mkdtemp(prefix="schnitzel-test-"))
    name = f"t{uuid.uuid4().hex[:8]}"
    doc, captures = derived_graph(graph, registry, case, work, name)
    gfile = work / "graph.yaml"
    gfile.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    n = max(len(i.packets) for i in case.inputs)
    duration = 1.0 + n / 200.0 + SETTLE_S
    env = {**os.environ, **resolved_env(tf)}
    proc = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(gfile), "--duration",
                           f"{duration:.1f}", "--run-dir", str(work / "run"), "--report", str(work / "report.json"), "-q"],
                          capture_output=True, text=True, env=env, timeout=duration + 120)
    if proc.returncode not in (0, 3):
        raise CaseError(f"the runtime run failed (exit {proc.returncode}; files in {work}):\n"
                        + (proc.stderr or proc.stdout)[-2000:])
    outs: Dict[str, List[Packet]] = {}
    for at, files in captures.items():
        outs[at] = [Packet.from_dict(json.loads(line)) for f in files if f.is_file()
                    for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    inputs = [Packet.from_dict(p) for i in case.inputs for p in i.packets]
    shutil.rmtree(work, ignore_errors=True)
    return outs, inputs

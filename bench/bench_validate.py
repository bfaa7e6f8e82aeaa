#!/usr/bin/env python3
"""Validator benchmark: a generated 1,000-node, 2,000-edge graph.

Measures, on the same file and in the same run (median of --repeat runs):
  yaml_c      plain YAML load with libyaml (yaml.load, CSafeLoader)  <- the baseline of the ratio
  yaml_py     plain YAML load, pure Python (yaml.safe_load)
  load        schnitzel_core.graph_loader.parse_graph (positions, interpolation, shape checks)
  validate    schnitzel_validator.validate_path (load + every check)
Targets: validate < 1 s and < 10x yaml_c. Prints a table and records it in bench/RESULTS.md
under "## Validator" (unless --no-record).

    source scripts/env.sh && python bench/bench_validate.py [--nodes 1000 --edges 2000 --repeat 5]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from schnitzel_core.graph_loader import parse_graph
from schnitzel_core.plugin import Category, In, NodeLogic, Out, Param, PluginSpec
from schnitzel_core.registry import Registry
from schnitzel_validator import validate_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record as record_result  # noqa: E402

HERE = Path(__file__).resolve().parent


class BenchSource(NodeLogic):
    spec = PluginSpec(name="bench_source", category=Category.SOURCE, version="1.0.0",
                      ports=(Out("out", ["video.frame"], qos="frames"),),
                      params=(Param("uri", "str"), Param("fps", "float", 15.0, minimum=0.1, maximum=240)))


class BenchStage(NodeLogic):
    spec = PluginSpec(name="bench_stage", category=Category.TRANSFORM, version="1.0.0",
                      ports=(In("a", ["video.*"]), In("b", ["*"]), Out("out", ["video.frame"], qos="frames"),
                             Out("aux", ["telemetry"])),
                      params=(Param("scale", "float", 1.0, minimum=0.01, maximum=10),
                              Param("mode", "str", "fast", enum=("fast", "exact")),
                              Param("tags", "list", [], items="str")))


class BenchSink(NodeLogic):
    spec = PluginSpec(name="bench_sink", category=Category.SINK, version="1.0.0",
                      ports=(In("in", ["*"]),), params=(Param("path", "str", "out.jsonl"),))


def generate(n_nodes: int, n_edges: int, seed: int = 7) -> str:
    """A layered DAG written the way people write graphs (block style, params, some qos/transport)."""
    rnd = random.Random(seed)
    n_src = max(1, n_nodes // 20)
    n_sink = max(1, n_nodes // 20)
    n_stage = n_nodes - n_src - n_sink
    lines = ["schnitzel: 1", "name: bench", "containers:"]
    for c in range(4):
        lines += [f"  - id: c{c}", "    host: localhost"]
    lines.append("nodes:")
    ids = []
    for i in range(n_src):
        ids.append(f"src{i}")
        lines += [f"  - id: src{i}", "    plugin: bench_source", f"    container: c{i % 4}", "    params:",
                  f"      uri: ${{env:BENCH_URI_{i}:-file:///data/cam{i}.mp4}}", "      fps: 15"]
    for i in range(n_stage):
        ids.append(f"st{i}")
        lines += [f"  - id: st{i}", "    plugin: bench_stage", f"    container: c{i % 4}", "    params:",
                  f"      scale: {rnd.choice([0.5, 1, 2])}", "      mode: fast", "      tags: [a, b]"]
    for i in range(n_sink):
        ids.append(f"sink{i}")
        lines += [f"  - id: sink{i}", "    plugin: bench_sink", f"    container: c{i % 4}"]
    lines.append("edges:")
    edges = set()
    stage0 = n_src
    # each stage gets an "a" input (video) from an earlier source/stage; sinks get the rest
    for i in range(n_stage):
        j = stage0 + i
        edges.add((ids[rnd.randrange(0, j)], "out", ids[j], "a"))
    sinks = list(range(n_src + n_stage, n_nodes))
    while len(edges) < n_edges:
        j = rnd.randrange(stage0, n_nodes)
        src = ids[rnd.randrange(0, min(j, n_src + n_stage))]
        port = "out" if src.startswith("src") else rnd.choice(["out", "aux"])
        dst_port = "in" if j in sinks else "b"
        edges.add((src, port, ids[j], dst_port))
    for k, (s, sp, d, dp) in enumerate(sorted(edges)):
        lines += [f"  - from: {s}.{sp}", f"    to: {d}.{dp}"]
        if k % 5 == 0:
            lines.append("    qos: {depth: 2}")
    return "\n".join(lines) + "\n"


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--edges", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-record", action="store_true", help="do not record the figures in bench/RESULTS.md")
    args = ap.parse_args(argv)

    text = generate(args.nodes, args.edges)
    reg = Registry.from_classes([BenchSource, BenchStage, BenchSink])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(text)
        report = validate_path(path, reg, env={})
        g = report.graph
        assert report.valid and g is not None, report.format_text()[:2000]
        assert len(g.nodes) == args.nodes and len(g.edges) == args.edges
        steps = [lambda: yaml.load(path.read_text(), Loader=yaml.CSafeLoader),
                 lambda: yaml.safe_load(path.read_text()),
                 lambda: parse_graph(path, env={}),
                 lambda: validate_path(path, reg, env={})]
        # Interleaved rounds: on a shared machine, load spikes then hit every step alike.
        samples = [[] for _ in steps]
        for _ in range(args.repeat):
            for i, fn in enumerate(steps):
                samples[i].append(median_time(fn, 1))
        t_c, t_py, t_load, t_val = (statistics.median(s) for s in samples)

    ratio_c = t_val / t_c
    ratio_py = t_val / t_py
    ok = t_val < 1.0 and ratio_c < 10
    rows = [("yaml.load (libyaml C, baseline)", t_c, 1.0),
            ("yaml.safe_load (pure Python)", t_py, t_py / t_c),
            ("schnitzel load_graph (shape only)", t_load, t_load / t_c),
            ("schnitzel validate (load + all checks)", t_val, ratio_c)]
    table = [f"{args.nodes} nodes, {args.edges} edges, {len(text.splitlines())} lines, {len(text) // 1024} KiB "
             f"({len(report.warnings)} warnings, 0 errors); median of {args.repeat}", "",
             "| step | time (ms) | x libyaml load |", "| --- | ---: | ---: |"]
    table += [f"| {name} | {t * 1000:.1f} | {r:.2f} |" for name, t, r in rows]
    table += ["", f"validate / pure-Python yaml.safe_load: {ratio_py:.2f}x. "
              f"Targets (< 1 s, < 10x libyaml load): {'met' if ok else 'NOT met'}."]
    print("\n".join(table))
    if not args.no_record:
        record(table)
    return 0 if ok else 1


def record(table) -> None:
    record_result("bench_validate.py", table,
                  section=("## Validator", "Validating a generated graph; ratio to plain YAML loading of the same file."))


if __name__ == "__main__":
    sys.exit(main())

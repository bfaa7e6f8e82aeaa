"""``schnitzel record info|recover``, ``schnitzel replay`` and ``schnitzel trace`` (docs/record-replay.md).

- ``record info FILE``: profile, time range, per-topic type, count and offered QoS.
- ``record recover FILE [-o OUT]``: a clean copy of a recording whose recorder was killed:
  every message in a complete chunk, with summary and rosbag2 metadata.
- ``replay FILE GRAPH``: run GRAPH with every source whose output topic was recorded replaced
  by a ``replay_source`` of that topic (``--remap RECORDED:=GRAPH_TOPIC`` when names differ).
- ``trace KEY --run DIR`` (or ``--queue DB [--recording FILE]``): one timeline for the packet
  with that idempotency key: captured, topics it passed, queued, each delivery attempt, acks,
  and where it is now.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import typer


def _fail(cmd: str, msg: str, code: int = 2) -> None:
    typer.echo(f"schnitzel {cmd}: {msg}", err=True)
    raise typer.Exit(code)


def _iso(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ---------------------------------------------------------------------------
# replay: the graph with its recorded sources replaced

def parse_remaps(remaps: List[str]) -> Dict[str, str]:
    """``RECORDED:=GRAPH_TOPIC`` pairs -> {graph topic: recorded topic}."""
    out: Dict[str, str] = {}
    for r in remaps:
        src, sep, dst = r.partition(":=")
        if not sep or not src.startswith("/") or not dst.startswith("/"):
            raise ValueError(f"--remap {r!r}: expected /recorded/topic:=/graph/topic")
        out[dst] = src
    return out


def replay_graph(doc: Dict[str, Any], recorded: List[str], path: str, registry: Any, *, rate: float,
                 start_s: float, end_s: float, remaps: Dict[str, str]) -> Tuple[Dict[str, Any], List[str], List[str]]:
    """(new graph document, replaced source ids, sources left live). A source node is replaced when
    a recorded topic is ``/<graph>/<node>/<port>`` of one of its outputs (after remapping)."""
    import copy

    doc = copy.deepcopy(doc)
    name = str(doc.get("name", ""))
    replaced: List[str] = []
    live: List[str] = []
    port_of: Dict[str, str] = {}
    for n in doc.get("nodes") or []:
        entry = registry.get(n.get("plugin"))
        spec = getattr(entry, "spec", None)
        if spec is None or getattr(spec.category, "value", spec.category) != "source":
            continue
        topics = []
        for p in spec.outputs:
            want = f"/{name}/{n['id']}/{p.name}"
            rec = remaps.get(want, want)
            if rec in recorded:
                topics.append(rec)
                port_of[f"{n['id']}.{p.name}"] = f"{n['id']}.out"
        if not topics:
            live.append(n["id"])
            continue
        n["plugin"] = "replay_source"
        n.pop("version", None)
        n.pop("qos", None)
        n["params"] = {"path": os.path.abspath(path), "topics": topics, "rate": rate, "start_s": start_s,
                       "end_s": end_s}
        replaced.append(n["id"])
    for e in doc.get("edges") or []:
        if isinstance(e, dict) and e.get("from") in port_of:
            e["from"] = port_of[e["from"]]
    return doc, replaced, live


def _replay(file: Path, graph: Path, rate: float, start: float, end: float, remap: List[str],
            duration: Optional[float], max_packets: Optional[int], run_dir: Optional[Path],
            report: Optional[Path], quiet: bool) -> int:
    import tempfile

    import yaml

    from schnitzel_core.recording import RecordingError, STREAM_PACKET, info
    from schnitzel_core.registry import load_registry

    if not graph.is_file():
        _fail("replay", f"graph file {graph} does not exist")
    try:
        meta = info(str(file))
    except RecordingError as exc:
        _fail("replay", str(exc), 1)
    try:
        remaps = parse_remaps(remap)
    except ValueError as exc:
        _fail("replay", str(exc))
    from .compiler import validate_and_compile

    vreport, plan = validate_and_compile(str(graph))
    if plan is None:
        print(vreport.format_text(), file=sys.stderr)
        _fail("replay", f"{graph} is not valid; nothing was started", 1)
    doc = yaml.safe_load(graph.read_text(encoding="utf-8"))
    recorded = [t for t, d in meta["topics"].items() if d["type"] == STREAM_PACKET]
    new, replaced, live = replay_graph(doc, recorded, str(file), load_registry(), rate=rate, start_s=start,
                                       end_s=end, remaps=remaps)
    if not replaced:
        _fail("replay", f"no source of {graph} has a recorded topic in {file} (recorded: "
              f"{', '.join(recorded) or 'none'}); name them with --remap /recorded/topic:=/{plan.graph}/<source>/<port>",
              1)
    rdir = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix=f"schnitzel-replay-{plan.graph}-"))
    rdir.mkdir(parents=True, exist_ok=True)
    gfile = rdir / f"{plan.graph}.replay.yaml"
    gfile.write_text(f"# {graph} with its recorded sources replayed from {file}\n"
                     + yaml.safe_dump(new, sort_keys=False), encoding="utf-8")
    print(f"schnitzel replay: {', '.join(replaced)} replayed from {file} at rate {rate:g}"
          + (f"; live sources: {', '.join(live)}" if live else ""), file=sys.stderr)
    if duration is None and max_packets is None:
        span = max(0.0, (meta["end_ns"] - meta["start_ns"]) / 1e9)
        if end:
            span = min(span, end)
        span = max(0.0, span - start)
        duration = (span / rate if rate > 0 else 0.0) + 5.0   # the recording's span, then 5 s to drain
    args = ["run", str(gfile), "--run-dir", str(rdir)]
    if duration is not None:
        args += ["--duration", str(duration)]
    if max_packets is not None:
        args += ["--max-packets", str(max_packets)]
    if report is not None:
        args += ["--report", str(report)]
    if quiet:
        args += ["--quiet"]
    from .cli import main
    return main(args)


# ---------------------------------------------------------------------------
# trace

def _recording_events(path: str, key: str, topic_nodes: Dict[str, str]) -> List[Dict[str, Any]]:
    from schnitzel_core.recording import decode_packet, read_messages

    needle = key.encode("utf-8")
    out: List[Dict[str, Any]] = []
    first = True
    for m in read_messages(path):
        if needle not in m.data:
            continue
        try:
            p = decode_packet(m.data)
        except ValueError:
            continue
        if p.idempotency_key != key:
            continue
        if first:
            out.append({"t": p.stamp_ns, "event": "captured", "where": "recording",
                        "node": p.stream_id, "detail": f"stream {p.stream_id} epoch {p.epoch} seq {p.seq} "
                        f"kind {p.kind} (source stamp; packet {p.packet_id})"})
            first = False
        node = topic_nodes.get(m.topic, "")
        out.append({"t": m.log_time_ns, "event": "passed", "where": "recording", "node": node,
                    "detail": f"on {m.topic}" + (f" (output of {node})" if node else "")})
    return out


def _log_events(run_dir: str, key: str) -> List[Dict[str, Any]]:
    from schnitzel_core.tracelog import read_events

    out = []
    for ev in read_events(run_dir, key):
        e = ev.get("event")
        if e == "queued":
            d = f"committed to queue {ev.get('queue')} ({ev.get('status')})"
        elif e == "sent":
            d = f"row {ev.get('row')} forwarded to the sinks, attempt {ev.get('attempt')}"
        elif e == "attempt":
            d = f"delivery attempt by {ev.get('sink')}: {ev.get('result')}" + (
                f" ({ev['reason']})" if ev.get("reason") else "")
        elif e == "ack":
            d = f"{ev.get('sink')} acknowledged to the queue: {ev.get('outcome')}" + (
                f" ({ev['reason']})" if ev.get("reason") else "")
        else:
            d = json.dumps(ev)
        out.append({"t": int(ev.get("t", 0)), "event": e, "where": "run", "node": ev.get("node", ""), "detail": d})
    return out


def _queue_state(db: str, key: str) -> Optional[Dict[str, Any]]:
    from schnitzel_core.store import DurableStore, StoreError

    if not os.path.exists(db):
        return None
    try:
        st = DurableStore(db)
    except StoreError as exc:
        return {"t": 0, "event": "state", "where": "queue", "node": db, "detail": f"cannot open: {exc}"}
    try:
        for r in st.dlq(1_000_000):
            if r.key == key:
                return {"t": r.dead_ns, "event": "dead_lettered", "where": "queue", "node": db,
                        "detail": f"dead letter after {r.attempts} attempt(s): {r.reason}"}
        for r in st.peek(1_000_000):
            if r.key == key:
                return {"t": r.enq_ns, "event": "pending", "where": "queue", "node": db,
                        "detail": f"still queued (row {r.id}), {r.attempts} attempt(s)"
                                  + (f", last error: {r.last_error}" if r.last_error else "")}
        if st.in_ledger(key):
            return {"t": 0, "event": "delivered", "where": "queue", "node": db,
                    "detail": "in the delivered-key ledger: delivered; a re-send is not delivered again"}
        return {"t": 0, "event": "unknown", "where": "queue", "node": db, "detail": "not in this queue"}
    finally:
        st.close()


def build_trace(key: str, *, run_dir: Optional[str] = None, queue: Optional[str] = None,
                recording: Optional[str] = None) -> Dict[str, Any]:
    """The timeline of ``key``: events sorted by time; the queue's current state last."""
    topic_nodes: Dict[str, str] = {}
    queues: List[str] = [queue] if queue else []
    if run_dir:
        from .plan import Plan, PlanError

        for pf in sorted(Path(run_dir).glob("*.plan.json")):
            try:
                plan = Plan.read(pf)
            except PlanError:
                continue
            for e in plan.edges:
                topic_nodes.setdefault(e.topic, e.src.split(".", 1)[0])
            for n in plan.nodes:
                if n.plugin == "durable_queue" and n.params.get("path") and not queue:
                    queues.append(str(n.params["path"]))
        rec_spec = Path(run_dir) / "record.json"
        if not recording and rec_spec.is_file():
            try:
                recording = json.loads(rec_spec.read_text(encoding="utf-8")).get("path")
            except ValueError:
                pass
    events: List[Dict[str, Any]] = []
    problems: List[str] = []
    if recording and os.path.exists(recording):
        from schnitzel_core.recording import RecordingError

        try:
            events += _recording_events(recording, key, topic_nodes)
        except RecordingError as exc:   # e.g. its recorder was killed: trace the rest
            problems.append(str(exc))
    if run_dir:
        events += _log_events(run_dir, key)
    events.sort(key=lambda e: e["t"])
    states = [s for s in (_queue_state(q, key) for q in queues) if s is not None]
    return {"key": key, "run_dir": run_dir, "recording": recording, "queues": queues, "events": events,
            "state": states, "problems": problems}


def format_trace(tr: Dict[str, Any]) -> str:
    lines = [f"trace {tr['key']}"]
    if not tr["events"] and not any(s["event"] != "unknown" for s in tr["state"]):
        lines.append("  nothing known about this key (not in the recording, the run's delivery logs or the queue)")
    t0 = tr["events"][0]["t"] if tr["events"] else 0
    for e in tr["events"]:
        lines.append(f"  {_iso(e['t'])}  +{(e['t'] - t0) / 1e9:8.3f}s  {e['event']:<10} {e['node']:<12} {e['detail']}")
    for s in tr["state"]:
        lines.append(f"  now: {s['event']}: {s['detail']} [{s['node']}]")
    for p in tr.get("problems", []):
        lines.append(f"  note: {p}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------

def register(app: typer.Typer) -> None:
    rec_app = typer.Typer(help="Inspect and repair MCAP recordings.", no_args_is_help=True)
    app.add_typer(rec_app, name="record")

    @rec_app.command("info")
    def info_cmd(file: Path = typer.Argument(..., help="MCAP recording"),
                 fmt: str = typer.Option("text", "--format", help="text or json")) -> None:
        """Profile, time range and per-topic type, count and offered QoS of FILE."""
        from schnitzel_core.recording import RecordingError, info

        try:
            meta = info(str(file))
        except RecordingError as exc:
            _fail("record info", str(exc), 1)
        if fmt == "json":
            typer.echo(json.dumps(meta, indent=2))
            return
        span = (meta["end_ns"] - meta["start_ns"]) / 1e9 if meta["messages"] else 0.0
        typer.echo(f"{file}: profile {meta['profile']}, {meta['messages']} messages in {meta['chunks']} chunk(s), "
                   f"{span:.3f} s" + (f" from {_iso(meta['start_ns'])}" if meta["messages"] else ""))
        for t, d in meta["topics"].items():
            typer.echo(f"  {t}  {d['type']}  {d['count']} msgs  ({d['message_encoding']})")

    @rec_app.command("recover")
    def recover_cmd(file: Path = typer.Argument(..., help="MCAP recording whose recorder was killed"),
                    out: Optional[Path] = typer.Option(None, "--output", "-o",
                                                       help="clean copy to write (default FILE.recovered.mcap)")) -> None:
        """Write a clean, finished copy of FILE: every message in a complete chunk."""
        from schnitzel_core.recording import RecordingError, recover

        dst = out or file.with_name(file.stem + ".recovered.mcap")
        if not file.is_file():
            _fail("record recover", f"no recording at {file}")
        try:
            res = recover(str(file), str(dst))
        except RecordingError as exc:
            _fail("record recover", str(exc), 1)
        typer.echo(f"schnitzel record recover: {res['messages']} messages from {res['chunks']} complete chunk(s) "
                   f"written to {dst}" + (f"; {res['problem']}" if res["problem"] else ""), err=True)

    @app.command("replay")
    def replay_cmd(
        file: Path = typer.Argument(..., help="MCAP recording"),
        graph: Path = typer.Argument(..., help="graph file (YAML) to feed"),
        rate: float = typer.Option(1.0, "--rate", min=0.0, help="1.0 real time, 2.0 twice as fast, 0 as fast as possible"),
        start: float = typer.Option(0.0, "--start", min=0.0, help="seconds into the recording to start at"),
        end: float = typer.Option(0.0, "--end", min=0.0, help="seconds into the recording to stop at (0 = its end)"),
        remap: List[str] = typer.Option([], "--remap", help="/recorded/topic:=/graph/source/port (repeatable)"),
        duration: Optional[float] = typer.Option(None, "--duration", min=0.0,
                                                 help="stop after S s (default: the replayed span / rate + 5 s)"),
        max_packets: Optional[int] = typer.Option(None, "--max-packets", min=1,
                                                  help="stop once the sinks have taken in N packets"),
        run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="where the plan, logs and replay graph go"),
        report: Optional[Path] = typer.Option(None, "--report", help="write the run report (JSON) here"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no live status line"),
    ) -> None:
        """Run GRAPH fed from FILE: recorded sources are replaced by replay_source nodes."""
        raise typer.Exit(_replay(file, graph, rate, start, end, remap, duration, max_packets, run_dir, report, quiet))

    @app.command("trace")
    def trace_cmd(
        key: str = typer.Argument(..., help="idempotency key"),
        run: Optional[Path] = typer.Option(None, "--run", help="run directory of schnitzel run (--run-dir)"),
        queue: Optional[Path] = typer.Option(None, "--queue", help="durable queue database"),
        recording: Optional[Path] = typer.Option(None, "--recording", help="MCAP recording"),
        fmt: str = typer.Option("text", "--format", help="text or json"),
    ) -> None:
        """One timeline for the packet with KEY: captured, passed, queued, delivery attempts, acks."""
        if run is None and queue is None:
            _fail("trace", "give --run DIR, or --queue DB (with --recording FILE)")
        if run is not None and not run.is_dir():
            _fail("trace", f"no run directory at {run}")
        if fmt not in ("text", "json"):
            _fail("trace", f"--format must be text or json, got {fmt!r}")
        tr = build_trace(key, run_dir=str(run) if run else None, queue=str(queue) if queue else None,
                         recording=str(recording) if recording else None)
        typer.echo(json.dumps(tr, indent=2) if fmt == "json" else format_trace(tr))


__all__ = ["build_trace", "format_trace", "parse_remaps", "register", "replay_graph"]

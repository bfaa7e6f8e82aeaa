"""``schnitzel run GRAPH``: validate, compile and run a graph with the built-in runner.
``--host NAME`` runs one host's share of a graph with ``hosts:`` (docs/multi-host.md).

Exit codes: 0 the run ended ok, 1 the graph is invalid or the run ended in error
(nothing is started for an invalid graph), 2 bad command-line use, 3 the run
ended degraded (a container was restarted or a node raised errors), 130 (SIGINT)
or 143 (SIGTERM) the run was cancelled before the graph became active.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

EXIT = {"ok": 0, "error": 1, "degraded": 3}
#: A cancelled run exits as a shell reports a process ended by that signal: 128 + its number.
CANCEL_EXIT = {"signal:SIGINT": 130, "signal:SIGTERM": 143}


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        graph: Path = typer.Argument(..., help="graph file (YAML)"),
        duration: Optional[float] = typer.Option(None, "--duration", min=0.0,
                                                 help="stop after S seconds of the graph being active"),
        max_packets: Optional[int] = typer.Option(None, "--max-packets", min=1,
                                                  help="stop once the sinks have taken in N packets"),
        report: Optional[Path] = typer.Option(None, "--report", help="write the run report (JSON) here"),
        run_dir: Optional[Path] = typer.Option(None, "--run-dir",
                                               help="where the plan, status and process logs go (default: a temporary directory)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no live status line"),
        metrics_port: Optional[int] = typer.Option(None, "--metrics-port", min=0, max=65535,
                                                   help="serve Prometheus metrics at http://127.0.0.1:P/metrics "
                                                        "(overrides the graph's runtime: metrics_port; 0: off)"),
        ui: bool = typer.Option(False, "--ui", help="serve the live graph page at http://127.0.0.1:<ui-port>/"),
        ui_port: int = typer.Option(8710, "--ui-port", min=1, max=65535, help="port of the live page (with --ui)"),
        record: Optional[Path] = typer.Option(None, "--record",
                                              help="record the graph's StreamPacket topics to this MCAP file"),
        record_frames: bool = typer.Option(False, "--record-frames", help="with --record: frame topics too"),
        host: Optional[str] = typer.Option(None, "--host",
                                           help="run only this host's share of a graph with hosts: "
                                                "(docs/multi-host.md)"),
    ) -> None:
        """Validate, compile and run GRAPH: one process per container plus the lifecycle manager.

        Ctrl-C or SIGTERM stop it in order (sources first, then drain). Exit code: 0 ok,
        1 invalid graph or run ended in error, 3 run ended degraded, 130 (Ctrl-C) or
        143 (SIGTERM) cancelled before the graph became active.
        """
        if not graph.is_file():
            print(f"schnitzel run: graph file {graph} does not exist", file=sys.stderr)
            raise typer.Exit(2)
        from .compiler import validate_and_compile

        vreport, plan = validate_and_compile(str(graph))
        if plan is None:
            print(vreport.format_text(), file=sys.stderr)
            print(f"schnitzel run: {graph} is not valid; nothing was started", file=sys.stderr)
            raise typer.Exit(1)
        from .report import build_report, write_report
        from .runner import Runner

        if host is not None:
            from .hosts import HostError, host_share
            try:
                plan = host_share(plan, host)
            except HostError as exc:
                print(f"schnitzel run: {exc}; pick one with --host NAME", file=sys.stderr)
                raise typer.Exit(2)
        else:
            from .hosts import on_one_machine
            plan = on_one_machine(plan)   # every host's containers here: Zenoh meets on 127.0.0.1
        if metrics_port is not None:
            plan.runtime["metrics_port"] = metrics_port   # the manager serves it (docs/observability.md)
        if ui:
            plan.runtime["ui_port"] = ui_port
            print(f"schnitzel run: live page on http://{plan.runtime.get('ui_host') or '127.0.0.1'}:{ui_port}/",
                  file=sys.stderr)
        stem = f"{plan.graph}.{host}" if host else plan.graph
        rdir = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix=f"schnitzel-run-{stem}-"))
        try:
            rdir.mkdir(parents=True, exist_ok=True)
            recorder = None
            if record is not None:   # docs/record-replay.md
                from .record_proc import prepare
                recorder = prepare(plan, rdir, str(record), frames=record_frames)
            plan_path = plan.write(rdir / f"{stem}.plan.json")
        except OSError as exc:
            print(f"schnitzel run: cannot write to {rdir}: {exc.strerror or exc}", file=sys.stderr)
            raise typer.Exit(1)
        remote = [f"{c.id} ({c.host})" for c in plan.containers if c.host not in ("localhost", "127.0.0.1", "")]
        if remote and host is None:
            print("schnitzel run: note: the built-in runner starts every container on this machine; "
                  f"declared elsewhere: {', '.join(remote)}", file=sys.stderr)
        runner = Runner(plan, str(plan_path), str(rdir), duration=duration, max_packets=max_packets,
                        live=not quiet, host=host or "")
        os.environ["SCHNITZEL_RUN_DIR"] = str(rdir.resolve())   # delivery logs for `schnitzel trace`
        if recorder is not None:
            try:
                recorder.start()
            except RuntimeError as exc:
                print(f"schnitzel run: cannot record to {record}: {exc}", file=sys.stderr)
                raise typer.Exit(1)
        try:
            result = runner.run()
        finally:
            if recorder is not None and recorder.stop() != 0:
                print(f"schnitzel run: the recorder failed; see {recorder.log}", file=sys.stderr)
        if not runner.runs_manager:
            # a worker host: its containers ran; the graph's status is the manager host's
            gave_up = {cid: c["gave_up"] for cid, c in result["containers"].items() if c["gave_up"]}
            print(f"schnitzel run: host {host} stopped ({result['stopped_by']}): "
                  + ", ".join(f"container {cid}: {c['restarts']} restart(s)" for cid, c in result["containers"].items())
                  + "".join(f"; {cid} given up: {why}" for cid, why in gave_up.items()), file=sys.stderr)
            raise typer.Exit(1 if gave_up else 0)
        rep = build_report(plan, result["status"], started_at=result["started_at"], ended_at=result["ended_at"],
                           stopped_by=result["stopped_by"], containers=result["containers"],
                           timeline=result.get("timeline"))
        if "control" in result:   # autonomic controllers: their decisions (docs/autonomic.md)
            rep["control"] = result["control"]
        if report is not None:
            try:
                write_report(rep, str(report))
            except OSError as exc:
                print(f"schnitzel run: cannot write the report to {report}: {exc.strerror or exc}", file=sys.stderr)
                raise typer.Exit(1)
        t = rep["totals"]
        if rep["status"] == "cancelled":
            print(f"schnitzel run: cancelled after {rep['duration_s']:.1f} s ({rep['stopped_by']}), before the "
                  "graph became active; everything it started was stopped"
                  + (f"; report: {report}" if report else ""), file=sys.stderr)
            raise typer.Exit(CANCEL_EXIT.get(rep["stopped_by"], 130))
        print(f"schnitzel run: {rep['status']} after {rep['duration_s']:.1f} s ({rep['stopped_by']}): "
              f"sources sent {t['source_packets_out']}, sinks took {t['sink_packets_in']}, drops {t['drops']}, "
              f"errors {t['errors']}" + (f"; report: {report}" if report else ""), file=sys.stderr)
        for p in rep["problems"]:
            print(f"  problem: {p}", file=sys.stderr)
        raise typer.Exit(EXIT[rep["status"]])

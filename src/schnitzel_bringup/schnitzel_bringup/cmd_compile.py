"""``schnitzel compile GRAPH -o DIR``: validate, then write DIR/<name>.plan.json and
DIR/<name>.launch.py (run it with ``ros2 launch DIR/<name>.launch.py``); a graph with ``hosts:``
also gets DIR/<name>.<host>.plan.json, .launch.py and .env per host (docs/multi-host.md)."""
from __future__ import annotations

import sys
from pathlib import Path

import typer


def _fail(message: str, code: int = 1) -> "typer.Exit":
    print(f"schnitzel compile: {message}", file=sys.stderr)
    return typer.Exit(code)


def compile_to(graph_path: str, out_dir: str):
    """(report, outputs dict or None). Raises nothing the user should see as a traceback."""
    from .compiler import validate_and_compile
    from .launch_gen import write_outputs

    report, plan = validate_and_compile(graph_path)
    if plan is None:
        return report, None
    return report, write_outputs(plan, out_dir)


def register(app: typer.Typer) -> None:
    @app.command("compile")
    def compile_cmd(
        graph: Path = typer.Argument(..., help="graph file (YAML)"),
        out: Path = typer.Option(Path("."), "-o", "--out", help="directory for <name>.plan.json and <name>.launch.py"),
    ) -> None:
        """Validate GRAPH and compile it into a run plan and a ROS 2 launch file."""
        if not graph.is_file():
            raise _fail(f"graph file {graph} does not exist", 2)
        try:
            report, outputs = compile_to(str(graph), str(out))
        except OSError as exc:
            raise _fail(f"cannot write to {out}: {exc.strerror or exc}")
        if outputs is None:
            print(report.format_text(), file=sys.stderr)
            raise _fail(f"{graph} is not valid; nothing was written")
        for w in getattr(report, "warnings", []) or []:
            print(f"warning: {getattr(w, 'message', w)}", file=sys.stderr)
        print(f"wrote {outputs['plan']}")
        print(f"wrote {outputs['launch']}")
        for host, files in (outputs.get("hosts") or {}).items():
            print(f"wrote {files['plan']}, {files['launch']} and {files['env']}   (host {host}: "
                  f"ros2 launch {files['launch'].resolve()}, or: schnitzel run {graph} --host {host})")
        print(f"run it with: ros2 launch {outputs['launch'].resolve()}   (or: schnitzel run {graph})")

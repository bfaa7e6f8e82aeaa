"""``schnitzel test [FILES|DIR]``: graph tests and chaos profiles (docs/testing-graphs.md);
``schnitzel init NAME``: a new graph with its test file.

Exit codes: 0 every case passed, 1 a case failed (its diff is printed), 2 bad input (a test
file or its graph is invalid: file:line and the fix, nothing run).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("test")
    def test_cmd(
        targets: List[Path] = typer.Argument(None, help="test files, or directories searched for *.test.yaml "
                                             "and tests/*.yaml (default: the current directory)"),
        junit: Optional[Path] = typer.Option(None, "--junit", help="write a JUnit XML report here"),
        case: Optional[str] = typer.Option(None, "--case", "-k", help="run only cases whose name contains this"),
        mode: Optional[str] = typer.Option(None, "--mode", help="run every case in this mode: inproc or runtime"),
        no_chaos: bool = typer.Option(False, "--no-chaos", help="skip the chaos profiles"),
    ) -> None:
        """Run graph tests: packets in at node ports, conditions on what comes out; chaos profiles
        inject faults into a running graph and check invariants. Exit 0 pass, 1 fail, 2 bad input."""
        from .graphtest.driver import GraphError, run_file
        from .graphtest.spec import SpecError, find_files, parse

        if mode not in (None, "inproc", "runtime"):
            print(f"schnitzel test: --mode {mode} is not known; use inproc or runtime", file=sys.stderr)
            raise typer.Exit(2)
        files = find_files(list(targets or [Path(".")]))
        missing = [f for f in files if not f.is_file()]
        if missing:
            print(f"schnitzel test: {missing[0]} does not exist; name a test file or a directory", file=sys.stderr)
            raise typer.Exit(2)
        if not files:
            print("schnitzel test: no test files found (*.test.yaml, tests/*.yaml); `schnitzel init NAME` "
                  "creates a graph with one", file=sys.stderr)
            raise typer.Exit(2)
        try:
            parsed = [parse(f) for f in files]
        except SpecError as exc:
            print(f"schnitzel test: {exc}", file=sys.stderr)
            raise typer.Exit(2)
        results = []
        for tf in parsed:
            print(f"{tf.path} (graph {tf.graph})")
            try:
                results += run_file(tf, only=case, mode=mode, chaos=not no_chaos, say=lambda s: print("  " + s))
            except GraphError as exc:
                print(f"schnitzel test: {tf.path}: its graph {tf.graph} is not valid:\n{exc}", file=sys.stderr)
                raise typer.Exit(2)
            except SpecError as exc:     # a fault naming what the graph does not have (a host)
                print(f"schnitzel test: {exc}", file=sys.stderr)
                raise typer.Exit(2)
        if junit is not None:
            from .graphtest.junit import write
            try:
                write(results, str(junit))
            except OSError as exc:
                print(f"schnitzel test: cannot write {junit}: {exc.strerror or exc}", file=sys.stderr)
                raise typer.Exit(2)
        bad = [r for r in results if r.status in ("fail", "error")]
        n = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "error", "skip")}
        print(f"schnitzel test: {n['pass']} passed, {n['fail']} failed, {n['error']} errors, {n['skip']} skipped")
        raise typer.Exit(1 if bad else 0)

    @app.command("init")
    def init_cmd(
        name: str = typer.Argument(..., help="graph name (a directory of this name is created)"),
        directory: Optional[Path] = typer.Option(None, "--dir", help="where to create it (default: ./NAME)"),
    ) -> None:
        """Create NAME/graph.yaml (a small runnable graph) and NAME/graph.test.yaml (its tests)."""
        import re

        from .graphtest.template import write_template

        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            print(f"schnitzel init: {name!r} is not a valid graph name; use letters, digits and _, "
                  "starting with a letter", file=sys.stderr)
            raise typer.Exit(2)
        target = directory or Path(name)
        if (target / "graph.yaml").exists() or (target / "graph.test.yaml").exists():
            print(f"schnitzel init: {target} already holds a graph; choose another name or --dir", file=sys.stderr)
            raise typer.Exit(2)
        for p in write_template(target, name):
            print(f"created {p}")
        print(f"next: schnitzel test {target}   then: schnitzel run {target / 'graph.yaml'} --duration 10")

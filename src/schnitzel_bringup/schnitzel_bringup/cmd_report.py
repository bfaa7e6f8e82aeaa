"""``schnitzel report RUN.json [--html OUT.html]``: read a run report, print a summary, render a page.

Exit codes: 0 done, 1 the file is not a readable run report, 2 bad command-line use (the file
does not exist, the page cannot be written).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        run_report: Path = typer.Argument(..., metavar="RUN.json",
                                          help="run report written by `schnitzel run --report`"),
        html: Optional[Path] = typer.Option(None, "--html",
                                            help="write a self-contained HTML page with plots here"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no text summary"),
    ) -> None:
        """Summarise a run report; with --html, render it as a page (rates, latency, queue depth, nodes)."""
        from .report_html import ReportFormatError, check_report, summary_lines, write_html

        if not run_report.is_file():
            print(f"schnitzel report: {run_report} does not exist (write one with "
                  f"`schnitzel run GRAPH --report {run_report}`)", file=sys.stderr)
            raise typer.Exit(2)
        try:
            doc = json.loads(run_report.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            print(f"schnitzel report: {run_report} is not a text file", file=sys.stderr)
            raise typer.Exit(1)
        except ValueError as exc:
            print(f"schnitzel report: {run_report} is not valid JSON ({exc})", file=sys.stderr)
            raise typer.Exit(1)
        except OSError as exc:
            print(f"schnitzel report: cannot read {run_report}: {exc.strerror or exc}", file=sys.stderr)
            raise typer.Exit(2)
        try:
            rep = check_report(doc)
            if not quiet:
                print("\n".join(summary_lines(rep)))
            if html is not None:
                write_html(rep, str(html))
        except ReportFormatError as exc:
            print(f"schnitzel report: {run_report}: {exc}", file=sys.stderr)
            raise typer.Exit(1)
        except OSError as exc:
            print(f"schnitzel report: cannot write {html}: {exc.strerror or exc}", file=sys.stderr)
            raise typer.Exit(2)
        except (TypeError, AttributeError, KeyError) as exc:
            print(f"schnitzel report: {run_report}: the run report is malformed ({exc!r})", file=sys.stderr)
            raise typer.Exit(1)
        if html is not None:
            print(f"report page: {html.resolve()}", file=sys.stderr)

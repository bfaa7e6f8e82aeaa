"""The ``schnitzel`` command line.

Each command group lives in its own module exposing ``register(app)``; this
file only assembles them, so one place owns each command. A module that cannot
import (e.g. a missing optional dependency) hides its commands and says why
under ``schnitzel --help`` instead of breaking every other command.
"""
from __future__ import annotations

import importlib
import sys
from typing import List, Tuple

import typer

COMMAND_MODULES = (
    "schnitzel_validator.cli",      # validate, plugins
    "schnitzel_bringup.cmd_compile",  # compile
    "schnitzel_bringup.cmd_run",      # run
    "schnitzel_bringup.cmd_queue",    # queue stats|peek|dlq|redrive|purge
    "schnitzel_bringup.cmd_backend",  # backend (reference HTTP backend)
    "schnitzel_bringup.cmd_replace",  # replace, apply
    "schnitzel_bringup.cmd_report",   # report
    "schnitzel_bringup.cmd_draft",    # draft (LLM-assisted authoring)
    "schnitzel_bringup.cmd_test",     # test, init (graph tests and chaos profiles)
    "schnitzel_bringup.cmd_top",      # top
    "schnitzel_bringup.cmd_record",   # record info|recover, replay, trace
    "schnitzel_bringup.cmd_control",  # control pin|release|suspend|resume (autonomic controllers)
)


def build_app() -> Tuple[typer.Typer, List[str]]:
    app = typer.Typer(
        name="schnitzel",
        help="schnitzel: validate, compile and run stream graphs on ROS 2.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    problems: List[str] = []
    for mod_name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name == mod_name:
                continue  # not written yet
            problems.append(f"{mod_name}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - one broken module must not break the CLI
            problems.append(f"{mod_name}: {exc}")
            continue
        mod.register(app)

    @app.callback()
    def _root() -> None:
        """schnitzel: validate, compile and run stream graphs on ROS 2."""

    return app, problems


def main(argv: List[str] | None = None) -> int:
    app, problems = build_app()
    for p in problems:
        print(f"schnitzel: some commands are unavailable: {p}", file=sys.stderr)
    try:
        app(args=argv, prog_name="schnitzel", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

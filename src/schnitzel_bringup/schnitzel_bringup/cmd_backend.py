"""``schnitzel backend``: run the reference HTTP backend (tests, demo)."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("backend")
    def backend(
        port: int = typer.Option(8080, "--port", help="TCP port (0 = any free port, printed at start)"),
        db: str = typer.Option(":memory:", "--db", help="SQLite file storing events by idempotency key"),
        host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
        reject_marker: str = typer.Option("", "--reject-marker",
                                          help="answer 400 for events whose JSON contains this text"),
        fail_for: float = typer.Option(0.0, "--fail-for", help="answer 503 for this many seconds after start"),
    ) -> None:
        """Run the reference backend: POST /events (idempotent by key), GET /stats, GET /keys."""
        from .reference_backend import run

        raise typer.Exit(run(host, port, db, reject_marker, fail_for))

"""``schnitzel queue stats|peek|dlq|redrive|purge DB``: inspect and repair a durable queue.

Safe beside a running queue node (SQLite WAL: readers never block the writer). Redrive and
purge change the file; a running node picks redriven rows up on its next poll.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from typing import Any, Dict, List, Optional

import typer

FORMATS = ("text", "json")


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"schnitzel queue: {msg}", err=True)
    raise typer.Exit(code)


def _open(db: str) -> Any:
    from schnitzel_core.store import DurableStore, StoreError

    if not os.path.exists(db):
        _fail(f"no queue database at {db}")
    try:
        return DurableStore(db)
    except StoreError as exc:
        _fail(str(exc))


def _fmt_ok(fmt: str) -> None:
    if fmt not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _age(ns: int) -> str:
    import time

    s = max(0.0, (time.time_ns() - ns) / 1e9)
    if s < 120:
        return f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.1f}h"


def _row_doc(r: Any, dead: bool = False) -> Dict[str, Any]:
    p = r.packet
    d = {"id": r.id, "key": r.key, "stream_id": p.stream_id, "seq": p.seq, "epoch": p.epoch, "kind": p.kind,
         "schema": p.schema, "content_type": p.content_type, "size": r.size, "sinks": list(r.sinks),
         "attempts": r.attempts, "last_error": r.last_error,
         "enqueued": datetime.datetime.fromtimestamp(r.enq_ns / 1e9, datetime.timezone.utc).isoformat()}
    if dead:
        d["reason"] = r.reason
        d["dead_at"] = datetime.datetime.fromtimestamp(r.dead_ns / 1e9, datetime.timezone.utc).isoformat()
    return d


def _rows_out(rows: List[Any], fmt: str, dead: bool, title: str) -> None:
    if fmt == "json":
        typer.echo(json.dumps([_row_doc(r, dead) for r in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    if not rows:
        typer.echo(f"{title}: empty")
        return
    t = Table(title=title)
    for c in ("id", "stream/seq", "kind", "size", "sinks", "attempts", "age"):
        t.add_column(c, justify="right" if c in ("id", "size", "attempts") else "left")
    t.add_column("reason" if dead else "last error", overflow="fold")
    for r in rows:
        t.add_row(str(r.id), f"{r.packet.stream_id}/{r.packet.epoch}/{r.packet.seq}", r.packet.kind, str(r.size),
                  ",".join(r.sinks), str(r.attempts), _age(r.dead_ns if dead else r.enq_ns),
                  (r.reason if dead else r.last_error) or "")
    Console(width=max(100, Console().width)).print(t)


def register(app: typer.Typer) -> None:
    q = typer.Typer(help="Inspect and repair a durable queue database (stats, peek, dlq, redrive, purge).",
                    no_args_is_help=True)

    @q.command("stats")
    def stats(db: str = typer.Argument(..., help="queue database file"),
              fmt: str = typer.Option("text", "--format", help="text | json")) -> None:
        """Depth, bytes, oldest age, dead letters and every counter."""
        _fmt_ok(fmt)
        s = _open(db)
        st = s.stats()
        s.close()
        if fmt == "json":
            typer.echo(json.dumps(st.as_dict(), indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"queue {st.path}", show_header=False)
        t.add_column("", style="bold")
        t.add_column("", justify="right")
        t.add_row("depth (rows waiting)", f"{st.depth:,}")
        t.add_row("bytes", f"{st.bytes:,}")
        t.add_row("oldest age", f"{st.oldest_age_s:.1f} s" if st.depth else "-")
        t.add_row("dead letters", f"{st.dead:,}")
        t.add_row("delivered keys remembered", f"{st.ledger:,}")
        for k in ("accepted", "delivered", "duplicates", "dropped_overflow", "rejected_full", "dead_lettered",
                  "redriven", "nacks", "purged"):
            t.add_row(k.replace("_", " "), f"{st.counters.get(k, 0):,}")
        t.add_row("schema version", str(st.schema_version))
        Console().print(t)

    @q.command("peek")
    def peek(db: str = typer.Argument(..., help="queue database file"),
             n: int = typer.Option(10, "-n", "--limit", help="rows to show, oldest first"),
             fmt: str = typer.Option("text", "--format", help="text | json")) -> None:
        """The oldest rows waiting for delivery."""
        _fmt_ok(fmt)
        s = _open(db)
        rows = s.peek(n)
        s.close()
        _rows_out(rows, fmt, False, f"oldest {len(rows)} queued rows")

    @q.command("dlq")
    def dlq(db: str = typer.Argument(..., help="queue database file"),
            n: int = typer.Option(20, "-n", "--limit", help="rows to show"),
            fmt: str = typer.Option("text", "--format", help="text | json")) -> None:
        """Dead-lettered rows with the reason each was given up."""
        _fmt_ok(fmt)
        s = _open(db)
        rows = s.dlq(n)
        s.close()
        _rows_out(rows, fmt, True, f"{len(rows)} dead-lettered rows")

    @q.command("redrive")
    def redrive(db: str = typer.Argument(..., help="queue database file"),
                ids: Optional[List[int]] = typer.Option(None, "--id", help="only these dead-letter ids (repeatable)"),
                fmt: str = typer.Option("text", "--format", help="text | json")) -> None:
        """Move dead-lettered rows back to the queue (tail, attempts reset)."""
        from schnitzel_core.store import StoreError

        _fmt_ok(fmt)
        s = _open(db)
        try:
            n = s.redrive(ids or None)
        except StoreError as exc:
            s.close()
            _fail(str(exc))
        s.close()
        typer.echo(json.dumps({"redriven": n}) if fmt == "json" else f"redriven {n} row(s) back to the queue")

    @q.command("purge")
    def purge(db: str = typer.Argument(..., help="queue database file"),
              what: str = typer.Option("dlq", "--what", help="dlq | queue | all"),
              yes: bool = typer.Option(False, "--yes", help="really delete (required)"),
              fmt: str = typer.Option("text", "--format", help="text | json")) -> None:
        """Delete dead letters (default), queued rows, or both. Counted as 'purged'."""
        from schnitzel_core.store import StoreError

        _fmt_ok(fmt)
        if what not in ("dlq", "queue", "all"):
            _fail(f"--what must be dlq, queue or all, got {what!r}")
        if not yes:
            _fail(f"purge deletes rows for good: add --yes to delete the {what} rows of {db}")
        s = _open(db)
        try:
            n = s.purge(dead=what in ("dlq", "all"), queue=what in ("queue", "all"))
        except StoreError as exc:
            s.close()
            _fail(str(exc))
        s.close()
        typer.echo(json.dumps({"purged": n}) if fmt == "json" else f"purged {n} row(s) ({what})")

    app.add_typer(q, name="queue")


if __name__ == "__main__":  # pragma: no cover
    _app = typer.Typer()
    register(_app)
    sys.exit(_app())

"""Reference HTTP backend for tests and the demo (aiohttp, 127.0.0.1 by default).

- ``POST /events``: one event (JSON object, key in the ``Idempotency-Key`` header or the
  body's ``idempotency_key``) or a batch ``{"batch": [event, ...]}`` (each item keyed by its
  ``idempotency_key``). Each key is stored once in SQLite; a repeated key is counted as a
  duplicate and answered as success (exactly-once effect). A batch answers 200 with
  ``{"results": [{"key", "status": "stored|duplicate|rejected", "reason"}]}``.
- ``GET /stats``: requests, events received, unique keys, duplicates, rejected, failed
  (503), dropped connections.
- ``GET /keys``: stored keys with how often each was received.
- ``POST /_control``: fault knobs for tests: ``{"fail_for_s": 20}`` (answer 503 for that
  long), ``{"reject_marker": "POISON"}`` (400 / rejected for events whose JSON contains it),
  ``{"drop_next": 3}`` (close the next 3 connections without any response), ``{"reset": true}``.

Run: ``schnitzel backend --port 8080 --db events.db`` or
``python -m schnitzel_bringup.reference_backend --port 0`` (prints the port it bound).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from aiohttp import web


class Backend:
    def __init__(self, db: str = ":memory:", reject_marker: str = "", fail_for_s: float = 0.0) -> None:
        self.db_path = db
        self.conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        if db != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL: WAL survives a SIGKILL of this process (what the tests do); a power cut
            # may lose the last commits, which a reference backend may.
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS events (key TEXT PRIMARY KEY, body TEXT NOT NULL, "
                          "first_ns INTEGER NOT NULL, received INTEGER NOT NULL DEFAULT 1)")
        self.conn.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        self.reject_marker = reject_marker
        self.fail_until = time.monotonic() + fail_for_s if fail_for_s > 0 else 0.0
        self.drop_next = 0
        self.mem = {"requests": 0, "failed": 0, "dropped": 0, "rejected": 0, "bad_requests": 0}
        self.first_request_ns = 0
        self.last_stored_ns = 0

    # ---- storage
    def _store(self, items: List[Tuple[str, str]]) -> List[str]:
        """Store (key, body) pairs; returns 'stored' or 'duplicate' per item."""
        out: List[str] = []
        now = time.time_ns()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for key, body in items:
                cur = self.conn.execute("INSERT OR IGNORE INTO events(key, body, first_ns) VALUES (?, ?, ?)",
                                        (key, body, now))
                if cur.rowcount == 1:
                    out.append("stored")
                else:
                    self.conn.execute("UPDATE events SET received = received + 1 WHERE key = ?", (key,))
                    out.append("duplicate")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        if "stored" in out:
            self.last_stored_ns = now
        return out

    def stats(self) -> Dict[str, Any]:
        unique, received = self.conn.execute("SELECT count(*), coalesce(sum(received), 0) FROM events").fetchone()
        return {"requests": self.mem["requests"], "events_received": int(received) + self.mem["rejected"],
                "unique_keys": int(unique), "duplicates": int(received) - int(unique),
                "rejected": self.mem["rejected"], "failed": self.mem["failed"], "dropped": self.mem["dropped"],
                "bad_requests": self.mem["bad_requests"], "last_stored_ns": self.last_stored_ns,
                "failing": time.monotonic() < self.fail_until}

    # ---- handlers
    async def events(self, request: web.Request) -> web.StreamResponse:
        self.mem["requests"] += 1
        if self.drop_next > 0:
            self.drop_next -= 1
            self.mem["dropped"] += 1
            await request.read()
            if request.transport is not None:
                request.transport.abort()  # no response at all
            raise asyncio.CancelledError()
        if time.monotonic() < self.fail_until:
            self.mem["failed"] += 1
            return web.json_response({"error": "backend unavailable (test knob)"}, status=503)
        raw = await request.read()
        try:
            doc = json.loads(raw)
        except ValueError:
            self.mem["bad_requests"] += 1
            return web.json_response({"error": "body is not JSON"}, status=400)
        if isinstance(doc, dict) and isinstance(doc.get("batch"), list):
            results: List[Dict[str, Any]] = []
            todo: List[Tuple[int, str, str]] = []
            for i, item in enumerate(doc["batch"]):
                key = item.get("idempotency_key") if isinstance(item, dict) else None
                body = json.dumps(item, separators=(",", ":"), sort_keys=True)
                if not key:
                    results.append({"key": None, "status": "rejected", "reason": "item has no idempotency_key"})
                    self.mem["rejected"] += 1
                elif self.reject_marker and self.reject_marker in body:
                    results.append({"key": key, "status": "rejected",
                                    "reason": f"payload contains the reject marker {self.reject_marker!r}"})
                    self.mem["rejected"] += 1
                else:
                    results.append({"key": key, "status": "?"})
                    todo.append((i, key, body))
            statuses = self._store([(k, b) for _, k, b in todo])
            for (i, _, _), st in zip(todo, statuses):
                results[i]["status"] = st
            return web.json_response({"results": results})
        if not isinstance(doc, dict):
            self.mem["bad_requests"] += 1
            return web.json_response({"error": "expected a JSON object or {\"batch\": [...]}"}, status=400)
        key = request.headers.get("Idempotency-Key") or doc.get("idempotency_key")
        if not key:
            self.mem["bad_requests"] += 1
            return web.json_response({"error": "missing Idempotency-Key header"}, status=400)
        body = json.dumps(doc, separators=(",", ":"), sort_keys=True)
        if self.reject_marker and self.reject_marker in body:
            self.mem["rejected"] += 1
            return web.json_response({"error": f"payload contains the reject marker {self.reject_marker!r}"},
                                     status=400)
        st = self._store([(key, body)])[0]
        return web.json_response({"key": key, "status": st}, status=201 if st == "stored" else 200)

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def get_keys(self, request: web.Request) -> web.Response:
        rows = self.conn.execute("SELECT key, received FROM events ORDER BY first_ns, key").fetchall()
        return web.json_response({"keys": {k: n for k, n in rows}})

    async def control(self, request: web.Request) -> web.Response:
        try:
            doc = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        if "fail_for_s" in doc:
            v = float(doc["fail_for_s"])
            self.fail_until = time.monotonic() + v if v > 0 else 0.0
        if "reject_marker" in doc:
            self.reject_marker = str(doc["reject_marker"] or "")
        if "drop_next" in doc:
            self.drop_next = int(doc["drop_next"])
        if doc.get("reset"):
            self.conn.execute("DELETE FROM events")
            self.mem = {k: 0 for k in self.mem}
        return web.json_response({"ok": True, "stats": self.stats()})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/events", self.events)
        app.router.add_get("/stats", self.get_stats)
        app.router.add_get("/keys", self.get_keys)
        app.router.add_post("/_control", self.control)
        return app


def make_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Nagle + delayed ACK cost ~40 ms per small request on loopback: disable it
    # (accepted sockets inherit TCP_NODELAY on Linux; aiohttp sets it per connection too).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


async def serve(host: str = "127.0.0.1", port: int = 8080, db: str = ":memory:", reject_marker: str = "",
                fail_for_s: float = 0.0, ready: Optional[Any] = None) -> None:
    backend = Backend(db, reject_marker, fail_for_s)
    runner = web.AppRunner(backend.app(), access_log=None, handle_signals=False)
    await runner.setup()
    sock = make_socket(host, port)
    site = web.SockSite(runner, sock)
    await site.start()
    bound = sock.getsockname()[1]
    print(f"schnitzel reference backend listening on http://{host}:{bound}/events (db {db})", flush=True)
    if ready is not None:
        ready(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await stop.wait()
    await runner.cleanup()
    backend.conn.close()


def run(host: str = "127.0.0.1", port: int = 8080, db: str = ":memory:", reject_marker: str = "",
        fail_for_s: float = 0.0) -> int:
    if db != ":memory:":
        d = os.path.dirname(os.path.abspath(db))
        if not os.path.isdir(d):
            print(f"schnitzel backend: directory {d} does not exist", file=sys.stderr)
            return 2
    try:
        asyncio.run(serve(host, port, db, reject_marker, fail_for_s))
    except OSError as exc:
        print(f"schnitzel backend: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"schnitzel backend: cannot open database {db}: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Optional[List[str]] = None) -> None:
    """``python -m schnitzel_bringup.reference_backend``: the ``schnitzel backend`` command
    itself (one definition of the options, in cmd_backend); exits with its status."""
    import typer

    from .cmd_backend import register

    app = typer.Typer(add_completion=False)
    register(app)
    app(args=argv, prog_name="python -m schnitzel_bringup.reference_backend")


if __name__ == "__main__":
    main()

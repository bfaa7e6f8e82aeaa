"""DurableStore: the on-disk queue behind the ``durable_queue`` node.

SQLAlchemy 2 (Core) over SQLite in WAL mode. One file holds:

- ``queue``: accepted rows, oldest first (``id`` is AUTOINCREMENT, never reused).
  ``sinks`` is the comma-separated set of sinks that still have to confirm the row
  (``*`` = any one sink). ``state`` 0 = ready, 1 = leased. ``avail_ns`` is when the
  row may be leased again (lease expiry or next-attempt time after a nack).
- ``dead``: dead-lettered rows with their reason; ``redrive`` moves them back.
- ``ledger``: 128-bit hashes of the idempotency keys of delivered rows, append-only, kept
  for ``ledger_retention_s`` and looked up in memory (:class:`_KeySet`); a re-enqueued key
  found there is a no-op (counted as ``duplicates``).
- ``counters``: persistent counters (depth, bytes, accepted, delivered, drops, ...),
  updated in the same transaction as the rows they count.
- ``meta``: schema version and the store's identity.

Guarantee: :meth:`enqueue` returns only after the rows are committed (with
``synchronous=FULL`` they survive a power cut, with ``NORMAL`` a process crash but
not a power cut). :class:`GroupCommitter` batches many small enqueues into one
commit bounded by rows and milliseconds.

Errors: every SQLite failure reaches callers as a :class:`StoreError` subclass
with a plain message: :class:`StoreCorruptError` (corrupt or foreign file; the
file is never modified), :class:`StoreVersionError`, :class:`StoreFullError`
(capacity, policy ``reject_new``) and :class:`StoreWriteError` (disk full,
read-only, I/O error; ``.reason`` is ``disk_full``, ``read_only`` or ``io_error``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from sqlalchemy import (BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, Text,
                        create_engine, event, func, select, text)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from schnitzel_core.packet import Packet, PayloadRef

SCHEMA_VERSION = 2
APPLICATION_ID = 0x537A5154  # "SzQT": marks a file as a schnitzel durable store
SQLITE_HEADER = b"SQLite format 3\x00"
ANY_SINK = "*"

OVERFLOW_POLICIES = ("reject_new", "drop_oldest")
SYNCHRONOUS = ("FULL", "NORMAL")


# ---------------------------------------------------------------- errors
class StoreError(Exception):
    """Base of every error the store raises."""


class StoreCorruptError(StoreError):
    """The file is not a schnitzel store (corrupt or foreign); it was left untouched."""


class StoreVersionError(StoreError):
    """The file was written by a newer schnitzel (schema version above ours)."""


class StoreFullError(StoreError):
    """Capacity reached with policy ``reject_new``."""


class StoreWriteError(StoreError):
    """A write failed: disk full, read-only file or I/O error. Accepted rows are kept."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _classify(exc: BaseException, path: str, what: str) -> StoreError:
    orig = getattr(exc, "orig", exc)
    msg = str(orig)
    low = msg.lower()
    if "readonly" in low or "read-only" in low or "read only" in low:
        return StoreWriteError(f"durable store {path}: cannot {what}: the database is read-only ({msg})",
                               "read_only")
    if "disk is full" in low or "database or disk is full" in low or "no space" in low:
        return StoreWriteError(f"durable store {path}: cannot {what}: the disk is full ({msg})", "disk_full")
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return StoreCorruptError(f"durable store {path}: the database file is corrupt ({msg}); "
                                 "it was left unchanged, move it aside to start a new store")
    if "disk i/o" in low or "i/o error" in low:
        return StoreWriteError(f"durable store {path}: cannot {what}: I/O error ({msg}); "
                               "check free space and the file's permissions", "io_error")
    return StoreWriteError(f"durable store {path}: cannot {what}: {msg}", "error")


# ---------------------------------------------------------------- schema
metadata = MetaData()

meta_t = Table("meta", metadata, Column("key", String, primary_key=True), Column("value", Text))
counters_t = Table("counters", metadata, Column("name", String, primary_key=True),
                   Column("value", BigInteger, nullable=False, default=0))

def _packet_cols() -> Tuple[Column, ...]:
    return (
    Column("key", String, nullable=False),
    Column("stream_id", String), Column("seq", BigInteger), Column("epoch", BigInteger),
    Column("kind", String), Column("schema", String), Column("content_type", String),
    Column("stamp_ns", BigInteger), Column("frame_id", String), Column("packet_id", String),
    Column("payload", LargeBinary), Column("meta", Text), Column("payload_ref", Text),
    Column("size", Integer, nullable=False),
    Column("sinks", String, nullable=False),
    Column("enq_ns", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    )

queue_t = Table("queue", metadata, Column("id", Integer, primary_key=True, autoincrement=True),
                *_packet_cols(),
                Column("state", Integer, nullable=False, default=0),
                Column("avail_ns", BigInteger, nullable=False, default=0),
                sqlite_autoincrement=True)
dead_t = Table("dead", metadata, Column("id", Integer, primary_key=True),
               *_packet_cols(),
               Column("reason", Text, nullable=False), Column("dead_ns", BigInteger, nullable=False))
ledger_t = Table("ledger", metadata, Column("id", Integer, primary_key=True),
                 Column("h1", BigInteger, nullable=False), Column("h2", BigInteger, nullable=False),
                 Column("delivered_ns", BigInteger, nullable=False))

_DDL_V1 = [
    "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value TEXT)",
    """CREATE TABLE queue (id INTEGER PRIMARY KEY AUTOINCREMENT, key VARCHAR NOT NULL,
        stream_id VARCHAR, seq BIGINT, epoch BIGINT, kind VARCHAR, schema VARCHAR,
        content_type VARCHAR, stamp_ns BIGINT, frame_id VARCHAR, packet_id VARCHAR, payload BLOB,
        meta TEXT, payload_ref TEXT, size INTEGER NOT NULL, sinks VARCHAR NOT NULL,
        enq_ns BIGINT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
        state INTEGER NOT NULL DEFAULT 0, avail_ns BIGINT NOT NULL DEFAULT 0)""",
    "CREATE UNIQUE INDEX ix_queue_key ON queue(key)",
    """CREATE TABLE dead (id INTEGER PRIMARY KEY, key VARCHAR NOT NULL,
        stream_id VARCHAR, seq BIGINT, epoch BIGINT, kind VARCHAR, schema VARCHAR,
        content_type VARCHAR, stamp_ns BIGINT, frame_id VARCHAR, packet_id VARCHAR, payload BLOB,
        meta TEXT, payload_ref TEXT, size INTEGER NOT NULL, sinks VARCHAR NOT NULL,
        enq_ns BIGINT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
        reason TEXT NOT NULL, dead_ns BIGINT NOT NULL)""",
    # append-only (rowid order = delivery order): the 128-bit key hash (h1, h2) of each
    # delivered row; looked up in memory (_KeySet), so no random-key B-tree is written
    """CREATE TABLE ledger (id INTEGER PRIMARY KEY, h1 BIGINT NOT NULL, h2 BIGINT NOT NULL,
        delivered_ns BIGINT NOT NULL)""",
]


def _migrate_1_to_2(conn: Any) -> None:
    """v2 keeps counters (depth, bytes, drops, ...) in the file, so startup with a large
    backlog needs no table scan; v1 stores get them computed once here."""
    conn.exec_driver_sql("CREATE TABLE counters (name VARCHAR PRIMARY KEY, value BIGINT NOT NULL DEFAULT 0)")
    depth, nbytes = conn.exec_driver_sql("SELECT count(*), coalesce(sum(size), 0) FROM queue").one()
    dead = conn.exec_driver_sql("SELECT count(*) FROM dead").scalar_one()
    conn.exec_driver_sql("INSERT INTO counters(name, value) VALUES ('depth', ?), ('bytes', ?), ('dead', ?)",
                         (depth, nbytes, dead))


#: from-version -> step that brings a store to from-version + 1
MIGRATIONS: Dict[int, Callable[[Any], None]] = {1: _migrate_1_to_2}

COUNTER_NAMES = ("depth", "bytes", "dead", "accepted", "delivered", "duplicates", "dropped_overflow",
                 "rejected_full", "dead_lettered", "redriven", "nacks", "purged")

_INSERT_COLS = ("key", "stream_id", "seq", "epoch", "kind", "schema", "content_type", "stamp_ns",
                "frame_id", "packet_id", "payload", "meta", "payload_ref", "size", "sinks", "enq_ns",
                "attempts", "state", "avail_ns")
_ENQUEUE_NO_LEDGER_SQL = (
    f"INSERT OR IGNORE INTO queue ({', '.join(_INSERT_COLS)}) VALUES ({', '.join('?' * len(_INSERT_COLS))})"
)
_ROW_COLS = ("id", "key", "stream_id", "seq", "epoch", "kind", "schema", "content_type", "stamp_ns",
             "frame_id", "packet_id", "payload", "meta", "payload_ref", "size", "sinks", "enq_ns",
             "attempts", "last_error")
_COPY_COLS = ", ".join(_ROW_COLS)
_LEASE_SQL = f"SELECT {_COPY_COLS} FROM queue WHERE id > ? AND avail_ns <= ? ORDER BY id LIMIT ?"


# ---------------------------------------------------------------- ledger in memory
_HEX = frozenset("0123456789abcdef")


def key_hash(key: str) -> Tuple[int, int]:
    """128 bits of an idempotency key as two signed 64-bit ints. Keys made by derive_key
    (32 hex digits) are used as they are; any other key is hashed (blake2b-128)."""
    v = -1
    if len(key) == 32:
        try:
            v = int(key, 16)
        except ValueError:
            pass
        if v >= 0 and format(v, "032x") != key:  # only canonical lower-case hex is used as is
            v = -1
    if v >= 0:
        a, b = v >> 64, v & 0xFFFFFFFFFFFFFFFF
    else:
        import hashlib

        d = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
        a, b = int.from_bytes(d[:8], "big"), int.from_bytes(d[8:], "big")
    return (a - (1 << 64) if a >= 1 << 63 else a, b - (1 << 64) if b >= 1 << 63 else b)


class _KeySet:
    """Delivered-key hashes in memory: sorted numpy arrays (hi, lo) plus a set of recent
    additions merged in batches. Without numpy, a sorted list of 128-bit ints (bisect)."""

    MERGE_AT = 65536

    def __init__(self) -> None:
        try:
            import numpy as np
        except ImportError:  # pragma: no cover - numpy is a dependency; keep working without it
            np = None
        self._np = np
        self.hi: Any = np.empty(0, np.int64) if np is not None else None
        self.lo: Any = np.empty(0, np.int64) if np is not None else None
        self.sorted: List[int] = []  # fallback: (hi << 64) | (lo & mask), sorted
        self.recent: set = set()

    def __len__(self) -> int:
        base = len(self.hi) if self._np is not None else len(self.sorted)
        return base + len(self.recent)

    @staticmethod
    def _as_int(h: Tuple[int, int]) -> int:
        return (h[0] << 64) | (h[1] & 0xFFFFFFFFFFFFFFFF)

    def load(self, pairs: Sequence[Tuple[int, int]]) -> None:
        np = self._np
        self.recent = set()
        if np is None:
            self.sorted = sorted(self._as_int(h) for h in pairs)
            return
        arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        order = np.lexsort((arr[:, 1], arr[:, 0]))
        self.hi, self.lo = arr[order, 0].copy(), arr[order, 1].copy()

    def add(self, hs: Iterable[Tuple[int, int]]) -> None:
        self.recent.update(hs)
        if len(self.recent) < self.MERGE_AT:
            return
        np = self._np
        if np is None:
            self.sorted = sorted(self.sorted + [self._as_int(h) for h in self.recent])
        else:
            arr = np.array(list(self.recent), dtype=np.int64).reshape(-1, 2)
            hi, lo = np.concatenate((self.hi, arr[:, 0])), np.concatenate((self.lo, arr[:, 1]))
            order = np.lexsort((lo, hi))
            self.hi, self.lo = hi[order], lo[order]
        self.recent = set()

    def contains(self, hs: Sequence[Tuple[int, int]]) -> List[bool]:
        if not hs:
            return []
        out = [h in self.recent for h in hs]
        np = self._np
        if np is None:
            import bisect

            for i, h in enumerate(hs):
                if not out[i]:
                    v = self._as_int(h)
                    j = bisect.bisect_left(self.sorted, v)
                    out[i] = j < len(self.sorted) and self.sorted[j] == v
            return out
        n = len(self.hi)
        if n:
            q = np.array(hs, dtype=np.int64).reshape(-1, 2)
            idx = np.searchsorted(self.hi, q[:, 0])
            hit = idx < n
            hit[hit] &= self.hi[idx[hit]] == q[hit, 0]
            for i in np.flatnonzero(hit).tolist():
                j = int(idx[i])
                while j < n and self.hi[j] == q[i, 0]:  # equal high halves: check the low half
                    if self.lo[j] == q[i, 1]:
                        out[i] = True
                        break
                    j += 1
        return out


# ---------------------------------------------------------------- records
@dataclasses.dataclass
class Row:
    """One queued (or dead-lettered) row."""

    id: int
    key: str
    packet: Packet
    sinks: Tuple[str, ...]          # sinks still to confirm; ("*",) = any one sink
    attempts: int
    enq_ns: int
    size: int
    last_error: str = ""
    reason: str = ""                # dead-letter reason (dead rows only)
    dead_ns: int = 0


@dataclasses.dataclass
class EnqueueResult:
    accepted: int = 0
    duplicates: int = 0             # key already queued or delivered (ledger): a no-op
    rejected: int = 0               # refused: capacity full with reject_new
    dropped: int = 0                # older rows dropped to make room (drop_oldest)


@dataclasses.dataclass
class AckResult:
    done: int = 0                   # rows fully delivered and removed
    partial: int = 0                # fan-out rows still waiting for other sinks
    unknown: int = 0                # row not found (already done, purged) - harmless


@dataclasses.dataclass
class Stats:
    depth: int
    bytes: int
    leased: int
    dead: int
    oldest_age_s: float
    oldest_id: Optional[int]
    ledger: int
    counters: Dict[str, int]
    path: str
    schema_version: int
    synchronous: str

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _encode(p: Packet) -> Tuple[Any, ...]:
    meta = json.dumps(p.meta, separators=(",", ":")) if p.meta else None
    ref = json.dumps(dataclasses.asdict(p.payload_ref)) if p.payload_ref else None
    return (p.idempotency_key, p.stream_id, p.seq, p.epoch, p.kind, p.schema, p.content_type,
            p.stamp_ns, p.frame_id, p.packet_id, p.payload, meta, ref)


_new_packet = object.__new__


def _decode(r: Sequence[Any]) -> Packet:
    # r follows _ROW_COLS. The stored fields are complete (written from a Packet), so the
    # dataclass __init__/__post_init__ defaulting is skipped: decoding is on the hot path.
    p = _new_packet(Packet)
    p.__dict__ = {"stream_id": r[2] or "", "seq": r[3] or 0, "kind": r[5] or "", "payload": r[11] or b"",
                  "epoch": r[4] or 0, "stamp_ns": r[8] or 0, "frame_id": r[9] or "", "schema": r[6] or "",
                  "content_type": r[7] or "", "packet_id": r[10] or "", "idempotency_key": r[1],
                  "payload_ref": PayloadRef(**json.loads(r[13])) if r[13] else None,
                  "meta": json.loads(r[12]) if r[12] else {}}
    return p


def _row(r: Sequence[Any]) -> Row:
    return Row(id=r[0], key=r[1], packet=_decode(r), size=r[14], sinks=tuple(r[15].split(",")),
               enq_ns=r[16], attempts=r[17], last_error=r[18] or "")


def _check_file(path: str) -> bool:
    """True when ``path`` holds an existing database; raises if it is not SQLite at all."""
    if not os.path.exists(path):
        return False
    if os.path.isdir(path):
        raise StoreCorruptError(f"durable store {path}: is a directory, not a database file")
    size = os.path.getsize(path)
    if size == 0:
        return False
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_HEADER))
    if head != SQLITE_HEADER:
        raise StoreCorruptError(
            f"durable store {path}: not a SQLite database (starts with {head[:16]!r}); refusing to "
            "open it and leaving it unchanged - pass another path or move the file aside")
    return True


class DurableStore:
    """A durable, bounded, at-least-once queue in one SQLite file. Thread-safe."""

    def __init__(self, path: str, *, synchronous: str = "FULL", max_rows: int = 0, max_bytes: int = 0,
                 overflow: str = "reject_new", ledger_retention_s: float = 7 * 24 * 3600,
                 ledger_max_rows: int = 1_000_000,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}")
        self.path = os.path.abspath(path)
        self.synchronous = synchronous
        self.max_rows = int(max_rows or 0)
        self.max_bytes = int(max_bytes or 0)
        self.overflow = overflow
        self.ledger_retention_s = float(ledger_retention_s)
        #: ledger_retention_s <= 0 turns the delivered-key ledger off (a re-sent, already
        #: delivered key is then queued again; keys still queued are still de-duplicated)
        self.ledger_on = self.ledger_retention_s > 0
        self.ledger_max_rows = int(ledger_max_rows)
        self.clock_ns = clock_ns
        self._lock = threading.RLock()
        self.prune_every_s = 60.0
        self._next_prune = time.monotonic() + self.prune_every_s
        existed = _check_file(self.path)
        d = os.path.dirname(self.path)
        if d and not os.path.isdir(d):
            try:  # like the JSONL sink: a fresh checkout has no runs/ directory yet
                os.makedirs(d, exist_ok=True)
            except OSError as exc:
                raise StoreWriteError(f"durable store {self.path}: directory {d} does not exist and cannot be "
                                      f"created ({exc.strerror or exc})", "io_error") from None
        self.engine = create_engine(f"sqlite:///{self.path}", poolclass=StaticPool,
                                    connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves

        self._begin_sql: Optional[str] = None
        self._pending_deltas: Dict[str, int] = {}
        self._dropped_rows = self._dropped_bytes = 0
        self._leases: Dict[int, int] = {}

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn: Any) -> None:
            # explicit transactions only (writes: IMMEDIATE, snapshots: deferred); plain
            # statements outside them run in autocommit and take no write lock
            if self._begin_sql:
                conn.exec_driver_sql(self._begin_sql)

        try:
            self._conn = self.engine.connect()
            self._open(existed)
        except StoreError:
            self.engine.dispose()
            raise
        except (SQLAlchemyError, sqlite3.Error) as exc:
            self.engine.dispose()
            raise _classify(exc, self.path, "open") from None

    # ------------------------------------------------------------ open/migrate
    def _pragma(self, sql: str) -> Any:
        return self._conn.exec_driver_sql(sql).scalar()

    def _open(self, existed: bool) -> None:
        c = self._conn
        if existed:
            try:
                app_id = self._pragma("PRAGMA application_id")
                tables = {r[0] for r in c.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
            except DBAPIError as exc:
                raise StoreCorruptError(f"durable store {self.path}: the file is corrupt or not a database "
                                        f"({exc.orig}); it was left unchanged - move it aside") from None
            if app_id != APPLICATION_ID:
                if tables:
                    raise StoreCorruptError(
                        f"durable store {self.path}: this SQLite file belongs to something else "
                        f"(application_id {app_id}, tables {sorted(tables)[:5]}); refusing to use it and "
                        "leaving it unchanged - pass a new path for the queue")
                existed = False  # an empty SQLite file: initialise it
        c.exec_driver_sql("PRAGMA journal_mode=WAL")
        c.exec_driver_sql(f"PRAGMA synchronous={self.synchronous}")
        c.exec_driver_sql("PRAGMA temp_store=MEMORY")
        c.exec_driver_sql("PRAGMA cache_size=-16000")
        self._end(c)
        if not existed:
            self._begin_sql = "BEGIN IMMEDIATE"
            with c.begin():
                for ddl in _DDL_V1:
                    c.exec_driver_sql(ddl)
                c.execute(meta_t.insert(), [{"key": "schema_version", "value": "1"},
                                             {"key": "created_ns", "value": str(self.clock_ns())},
                                             {"key": "kind", "value": "schnitzel.durable_store"}])
                c.exec_driver_sql(f"PRAGMA application_id={APPLICATION_ID}")
            self._begin_sql = None
        version = int(c.execute(select(meta_t.c.value).where(meta_t.c.key == "schema_version")).scalar() or 0)
        self._end(c)
        if version > SCHEMA_VERSION:
            raise StoreVersionError(f"durable store {self.path}: schema version {version} is newer than this "
                                    f"schnitzel supports ({SCHEMA_VERSION}); upgrade schnitzel to open it")
        while version < SCHEMA_VERSION:
            step = MIGRATIONS.get(version)
            if step is None:
                raise StoreVersionError(f"durable store {self.path}: no migration from schema version {version}")
            self._begin_sql = "BEGIN IMMEDIATE"
            with c.begin():
                self._begin_sql = None
                step(c)
                c.execute(meta_t.update().where(meta_t.c.key == "schema_version").values(value=str(version + 1)))
            version += 1
        self.schema_version = version
        self._begin_sql = "BEGIN IMMEDIATE"
        with c.begin():
            self._begin_sql = None
            for n in COUNTER_NAMES:
                c.exec_driver_sql("INSERT OR IGNORE INTO counters(name, value) VALUES (?, 0)", (n,))
        self._counters = self._load_counters()
        self._load_keys()

    @staticmethod
    def _end(c: Any) -> None:
        if c.in_transaction():
            c.rollback()

    def _load_counters(self) -> Dict[str, int]:
        self._end(self._conn)
        rows = self._conn.execute(select(counters_t.c.name, counters_t.c.value)).all()
        self._end(self._conn)
        return {n: int(v) for n, v in rows}

    def _bump(self, c: Any, deltas: Dict[str, int]) -> None:
        items = [(v, n) for n, v in deltas.items() if v]
        if items:
            c.exec_driver_sql("UPDATE counters SET value = value + ? WHERE name = ?", items)

    def _apply(self, deltas: Dict[str, int]) -> None:
        for n, v in deltas.items():
            self._counters[n] = self._counters.get(n, 0) + v

    def _tx(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(conn)`` in one IMMEDIATE transaction; map SQLite errors to StoreError."""
        with self._lock:
            try:
                self._end(self._conn)
                self._begin_sql = "BEGIN IMMEDIATE"
                try:
                    tx = self._conn.begin()
                finally:
                    self._begin_sql = None
                with tx:
                    return fn(self._conn)
            except StoreError:
                raise
            except (SQLAlchemyError, sqlite3.Error) as exc:
                try:
                    self._conn.rollback()
                except Exception:  # noqa: BLE001
                    pass
                err = _classify(exc, self.path, what)
                # a failed transaction changed nothing: reload counters from the file
                try:
                    self._counters = self._load_counters()
                except Exception:  # noqa: BLE001
                    pass
                raise err from None

    # ------------------------------------------------------------ enqueue
    def enqueue(self, packets: Iterable[Packet], sinks: Any = None) -> EnqueueResult:
        """Persist packets in one transaction, committed before returning.

        ``sinks``: the sinks that must confirm each row: None/[] = any one sink, a list
        of sink ids, or a callable ``packet -> list`` (fan-out routing).
        """
        return self.write(packets, sinks)[0]

    def ack(self, row_ids: Iterable[int], sink: str = ANY_SINK) -> AckResult:
        """``sink`` confirmed delivery of these rows. A row is removed (and its key put in
        the ledger) once every sink it was routed to has confirmed."""
        return self.write((), None, [(row_ids, sink)])[1]

    def write(self, packets: Iterable[Packet] = (), sinks: Any = None,
              acks: Sequence[Tuple[Iterable[int], str]] = ()) -> Tuple[EnqueueResult, AckResult]:
        """Enqueue ``packets`` and apply ``acks`` ([(row_ids, sink), ...]) in ONE commit.

        This is the group commit the queue node uses: new rows and confirmations that
        arrived within the same few milliseconds share one fsync.
        """
        now = self.clock_ns()
        rows = []
        for p in packets:
            s = sinks(p) if callable(sinks) else sinks
            s_txt = ",".join(sorted(set(s))) if s else ANY_SINK
            size = len(p.payload) + 256
            rows.append(_encode(p) + (size, s_txt, now, 0, 0, 0))
        ack_list = [(list(dict.fromkeys(int(i) for i in ids)), sink) for ids, sink in acks]
        ack_list = [(ids, sink) for ids, sink in ack_list if ids]
        if not rows and not ack_list:
            return EnqueueResult(), AckResult()

        known: List[bool] = []
        if rows and self.ledger_on:  # delivered within the window: a no-op
            with self._lock:
                known = self._keys.contains([key_hash(r[0]) for r in rows])

        def fn(c: Any) -> Tuple[EnqueueResult, AckResult, Dict[str, int], List[int], List[Tuple[int, int]]]:
            deltas: Dict[str, int] = {}
            ares = AckResult()
            done_ids: List[int] = []
            done_hashes: List[Tuple[int, int]] = []
            for ids, sink in ack_list:
                self._ack_in(c, ids, sink, now, ares, deltas, done_ids, done_hashes)
            res = EnqueueResult()
            if rows:
                self._dropped_rows = self._dropped_bytes = 0
                todo = [r for r, k in zip(rows, known) if not k] if any(known) else rows
                res.duplicates = len(rows) - len(todo)
                if self.max_rows or self.max_bytes:
                    todo = self._make_room(c, rows, res, deltas)
                if todo:
                    cur = c.exec_driver_sql(_ENQUEUE_NO_LEDGER_SQL, todo)
                    n = cur.rowcount if cur.rowcount is not None and cur.rowcount >= 0 else len(todo)
                    res.accepted = n
                    res.duplicates += len(todo) - n
                    added = sum(r[13] for r in todo) if n == len(todo) else self._bytes_of_new(c, n)
                    for k, v in (("depth", n), ("bytes", added), ("accepted", n)):
                        deltas[k] = deltas.get(k, 0) + v
                if res.duplicates:
                    deltas["duplicates"] = deltas.get("duplicates", 0) + res.duplicates
                if res.rejected:
                    deltas["rejected_full"] = deltas.get("rejected_full", 0) + res.rejected
            self._bump(c, deltas)
            return res, ares, deltas, done_ids, done_hashes

        res, ares, deltas, done_ids, done_hashes = self._tx("write", fn)
        with self._lock:
            self._apply(deltas)
            for i in done_ids:
                self._leases.pop(i, None)
            if done_hashes:
                self._keys.add(done_hashes)
        if ares.done and time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + self.prune_every_s
            try:
                self.prune_ledger()
            except StoreError:
                pass  # retried at the next interval
        return res, ares

    def _ack_in(self, c: Any, ids: List[int], sink: str, now: int, res: AckResult,
                deltas: Dict[str, int], done_ids: List[int], done_hashes: List[Tuple[int, int]]) -> None:
        done_n = done_bytes = 0
        rest: List[int] = []
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            marks = ",".join("?" * len(chunk))
            # fast path: rows this sink completes (single-sink or any-sink rows), set-based
            cond = "" if sink == ANY_SINK else " AND (sinks = '*' OR sinks = ?)"
            extra = () if sink == ANY_SINK else (sink,)
            got = c.exec_driver_sql(f"DELETE FROM queue WHERE id IN ({marks}){cond} RETURNING id, size, key",
                                    (*chunk, *extra)).all()
            if self.ledger_on and got:
                hs = [key_hash(g[2]) for g in got]
                c.exec_driver_sql("INSERT INTO ledger(h1, h2, delivered_ns) VALUES (?, ?, ?)",
                                  [(a, b, now) for a, b in hs])
                done_hashes.extend(hs)
            done_n += len(got)
            done_bytes += sum(g[1] for g in got)
            gone = {g[0] for g in got}
            done_ids.extend(gone)
            rest.extend(x for x in chunk if x not in gone)
        partial: List[Tuple[str, int]] = []
        found_ids = set()
        if rest:  # fan-out rows (several sinks) and rows not in the queue
            found = []
            for i in range(0, len(rest), 900):
                chunk = rest[i:i + 900]
                q = f"SELECT id, key, sinks, size FROM queue WHERE id IN ({','.join('?' * len(chunk))})"
                found.extend(c.exec_driver_sql(q, tuple(chunk)).all())
            done: List[Tuple[int, str, int]] = []
            for rid, key, sinks, size in found:
                found_ids.add(rid)
                left = [s for s in sinks.split(",") if s != sink]
                if not left:
                    done.append((rid, key, size))
                else:
                    partial.append((",".join(left), rid))
            if done:
                c.exec_driver_sql("DELETE FROM queue WHERE id = ?", [(d[0],) for d in done])
                if self.ledger_on:
                    hs = [key_hash(d[1]) for d in done]
                    c.exec_driver_sql("INSERT INTO ledger(h1, h2, delivered_ns) VALUES (?, ?, ?)",
                                      [(a, b, now) for a, b in hs])
                    done_hashes.extend(hs)
                done_n += len(done)
                done_bytes += sum(d[2] for d in done)
                done_ids.extend(d[0] for d in done)
            if partial:
                c.exec_driver_sql("UPDATE queue SET sinks = ? WHERE id = ?", partial)
        if done_n:
            for k, v in (("depth", -done_n), ("bytes", -done_bytes), ("delivered", done_n)):
                deltas[k] = deltas.get(k, 0) + v
        res.done += done_n
        res.partial += len(partial)
        missing = [i for i in rest if i not in found_ids]
        if missing:  # maybe dead-lettered meanwhile: a later success clears it from the DLQ
            res.unknown += self._ack_dead(c, missing, sink, now, deltas, done_hashes)

    def _bytes_of_new(self, c: Any, n: int) -> int:
        return int(c.exec_driver_sql(
            "SELECT coalesce(sum(size),0) FROM (SELECT size FROM queue ORDER BY id DESC LIMIT ?)", (n,)).scalar())

    def _make_room(self, c: Any, rows: List[Tuple[Any, ...]], res: EnqueueResult,
                   deltas: Dict[str, int]) -> List[Tuple[Any, ...]]:
        depth = self._counters.get("depth", 0) + deltas.get("depth", 0)
        nbytes = self._counters.get("bytes", 0) + deltas.get("bytes", 0)
        need_rows, need_bytes = len(rows), sum(r[13] for r in rows)

        def over(d: int, b: int) -> bool:
            return bool((self.max_rows and d > self.max_rows) or (self.max_bytes and b > self.max_bytes))

        if not over(depth + need_rows, nbytes + need_bytes):
            return rows
        if self.overflow == "reject_new":
            keep: List[Tuple[Any, ...]] = []
            d, b = depth, nbytes
            for r in rows:
                if over(d + 1, b + r[13]):
                    res.rejected += 1
                    continue
                keep.append(r)
                d += 1
                b += r[13]
            return keep
        # drop_oldest: delete ready rows from the head until the batch fits
        d, b = depth + need_rows, nbytes + need_bytes
        victims: List[Tuple[int, int]] = []
        cur = c.exec_driver_sql("SELECT id, size FROM queue ORDER BY id")
        for rid, size in cur:
            if rid in self._leases:
                continue
            if not over(d, b):
                break
            victims.append((rid, size))
            d -= 1
            b -= size
        cur.close()
        if victims:
            c.exec_driver_sql("DELETE FROM queue WHERE id = ?", [(v[0],) for v in victims])
            self._dropped_rows = len(victims)
            self._dropped_bytes = sum(v[1] for v in victims)
            for k, v in (("depth", -self._dropped_rows), ("bytes", -self._dropped_bytes),
                         ("dropped_overflow", self._dropped_rows)):
                deltas[k] = deltas.get(k, 0) + v
            res.dropped = len(victims)
        if over(d, b):  # the batch alone exceeds capacity: refuse what does not fit
            keep = []
            d, b = depth - res.dropped, nbytes - self._dropped_bytes
            for r in rows:
                if over(d + 1, b + r[13]):
                    res.rejected += 1
                    continue
                keep.append(r)
                d += 1
                b += r[13]
            return keep
        return rows

    # ------------------------------------------------------------ lease/ack/nack
    def lease(self, n: int, lease_s: float = 30.0) -> List[Row]:
        """Take up to ``n`` ready rows, oldest first; unless acked or nacked they are offered
        again after ``lease_s``.

        Leases live in memory (one consumer per store file: the queue node): taking one
        costs no commit, and a restart makes every unacknowledged row ready at once.
        """
        now = self.clock_ns()
        until = now + int(lease_s * 1e9)
        with self._lock:
            held = {i for i, t in self._leases.items() if t > now}
            if len(held) != len(self._leases):
                self._leases = {i: t for i, t in self._leases.items() if t > now}
            got: List[Any] = []
            last = 0
            while len(got) < n:
                want = n - len(got) + len(held)
                # hot path: plain DB-API rows from the same connection and transaction
                # (SQLAlchemy's Row processing cost more than the query itself here)
                batch = self._read(lambda c: c.connection.driver_connection.execute(
                    _LEASE_SQL, (last, now, want)).fetchall())
                got.extend(r for r in batch if r[0] not in held)
                if len(batch) < want:
                    break
                last = batch[-1][0]
            got = got[:n]
            for r in got:
                self._leases[r[0]] = until
            return [_row(r) for r in got]

    @property
    def leased(self) -> int:
        now = self.clock_ns()
        with self._lock:
            return sum(1 for t in self._leases.values() if t > now)

    def release(self, row_ids: Iterable[int]) -> None:
        """Give leased rows back without counting an attempt (ready again at once)."""
        with self._lock:
            for i in row_ids:
                self._leases.pop(int(i), None)

    def _ack_dead(self, c: Any, ids: List[int], sink: str, now: int, deltas: Dict[str, int],
                  done_hashes: List[Tuple[int, int]]) -> int:
        unknown = 0
        for rid in ids:
            r = c.exec_driver_sql("SELECT key, sinks FROM dead WHERE id = ?", (rid,)).first()
            if r is None:
                unknown += 1
                continue
            left = [s for s in r[1].split(",") if s not in (sink, ANY_SINK)] if sink != ANY_SINK else []
            if left:
                c.exec_driver_sql("UPDATE dead SET sinks = ? WHERE id = ?", (",".join(left), rid))
            else:
                c.exec_driver_sql("DELETE FROM dead WHERE id = ?", (rid,))
                if self.ledger_on:
                    h = key_hash(r[0])
                    c.exec_driver_sql("INSERT INTO ledger(h1, h2, delivered_ns) VALUES (?, ?, ?)", (*h, now))
                    done_hashes.append(h)
                deltas["dead"] = deltas.get("dead", 0) - 1
                deltas["delivered"] = deltas.get("delivered", 0) + 1
        return unknown

    def nack(self, row_ids: Iterable[int], reason: str = "", delay_s: float = 0.0,
             max_attempts: int = 0) -> int:
        """A delivery attempt failed (retryable): attempts += 1, ready again after ``delay_s``.
        Rows reaching ``max_attempts`` (> 0) are dead-lettered. Returns rows dead-lettered."""
        ids = [int(i) for i in row_ids]
        if not ids:
            return 0
        now = self.clock_ns()
        until = now + int(max(0.0, delay_s) * 1e9)

        def fn(c: Any) -> int:
            c.exec_driver_sql(
                "UPDATE queue SET attempts = attempts + 1, last_error = ?, state = 0, avail_ns = ? WHERE id = ?",
                [(reason[:2000], until, i) for i in ids])
            self._bump(c, {"nacks": len(ids)})
            n_dead = 0
            if max_attempts > 0:
                q = f"SELECT id FROM queue WHERE attempts >= ? AND id IN ({','.join('?' * len(ids))})"
                over = [r[0] for r in c.exec_driver_sql(q, (max_attempts, *ids))]
                if over:
                    n_dead = self._dead_letter(c, over, f"gave up after {max_attempts} attempts: {reason}", now)
            return n_dead

        n = self._tx("nack", fn)
        self.release(ids)
        self._counters = self._load_counters_locked()
        return n

    def extend(self, row_ids: Iterable[int], lease_s: float, reason: str = "") -> None:
        """Keep rows leased for ``lease_s`` more (a sink is still retrying them), counting an attempt."""
        ids = [int(i) for i in row_ids]
        if not ids:
            return
        until = self.clock_ns() + int(lease_s * 1e9)
        self._tx("extend lease", lambda c: c.exec_driver_sql(
            "UPDATE queue SET attempts = attempts + 1, last_error = ? WHERE id = ?",
            [(reason[:2000], i) for i in ids]))
        with self._lock:
            for i in ids:
                if i in self._leases:
                    self._leases[i] = until

    def nack_over(self, row_ids: Iterable[int], max_attempts: int, reason: str) -> int:
        """Dead-letter those of ``row_ids`` that reached ``max_attempts`` attempts."""
        ids = [int(i) for i in row_ids]
        if not ids or max_attempts <= 0:
            return 0
        now = self.clock_ns()

        def fn(c: Any) -> int:
            q = f"SELECT id FROM queue WHERE attempts >= ? AND id IN ({','.join('?' * len(ids))})"
            over = [r[0] for r in c.exec_driver_sql(q, (max_attempts, *ids))]
            if not over:
                return 0
            return self._dead_letter(c, over, f"gave up after {max_attempts} attempts: {reason}", now)

        n = self._tx("dead-letter", fn)
        if n:
            self.release(ids)
            self._counters = self._load_counters_locked()
        return n

    def dead_letter(self, row_ids: Iterable[int], reason: str) -> int:
        """Move rows to the dead-letter table with ``reason`` (e.g. the backend's 400 answer)."""
        ids = [int(i) for i in row_ids]
        if not ids:
            return 0
        now = self.clock_ns()
        n = self._tx("dead-letter", lambda c: self._dead_letter(c, ids, reason, now))
        self.release(ids)
        self._counters = self._load_counters_locked()
        return n

    def _dead_letter(self, c: Any, ids: List[int], reason: str, now: int) -> int:
        marks = ",".join("?" * len(ids))
        size = c.exec_driver_sql(f"SELECT count(*), coalesce(sum(size),0) FROM queue WHERE id IN ({marks})",
                                 tuple(ids)).one()
        c.exec_driver_sql(
            f"INSERT OR REPLACE INTO dead ({_COPY_COLS}, reason, dead_ns) SELECT {_COPY_COLS}, ?, ? "
            f"FROM queue WHERE id IN ({marks})", (reason[:2000], now, *ids))
        c.exec_driver_sql(f"DELETE FROM queue WHERE id IN ({marks})", tuple(ids))
        n = int(size[0])
        self._bump(c, {"depth": -n, "bytes": -int(size[1]), "dead": n, "dead_lettered": n})
        return n

    def _load_counters_locked(self) -> Dict[str, int]:
        with self._lock:
            return self._load_counters()

    def redrive(self, row_ids: Optional[Iterable[int]] = None) -> int:
        """Move dead-lettered rows (all, or these ids) back to the tail of the queue, attempts reset."""
        now = self.clock_ns()
        ids = None if row_ids is None else [int(i) for i in row_ids]

        def fn(c: Any) -> int:
            where = "" if ids is None else f" WHERE id IN ({','.join('?' * len(ids))})"
            args = () if ids is None else tuple(ids)
            if ids is not None and not ids:
                return 0
            cols = [x for x in _ROW_COLS if x not in ("id", "attempts", "enq_ns", "last_error")]
            cnt, nbytes = c.exec_driver_sql(f"SELECT count(*), coalesce(sum(size),0) FROM dead{where}", args).one()
            # a key still queued (re-enqueued meanwhile) wins: drop the dead duplicate
            c.exec_driver_sql(
                f"INSERT OR IGNORE INTO queue ({', '.join(cols)}, enq_ns, attempts, state, avail_ns) "
                f"SELECT {', '.join(cols)}, ?, 0, 0, 0 FROM dead{where} ORDER BY id", (now, *args))
            c.exec_driver_sql(f"DELETE FROM dead{where}", args)
            self._bump(c, {"depth": int(cnt), "bytes": int(nbytes), "dead": -int(cnt), "redriven": int(cnt)})
            return int(cnt)

        n = self._tx("redrive", fn)
        self._counters = self._load_counters_locked()
        return n

    def purge(self, dead: bool = False, queue: bool = False) -> int:
        """Delete all rows of the dead-letter table and/or the queue (counted as ``purged``)."""
        def fn(c: Any) -> int:
            n = 0
            if queue:
                n += c.exec_driver_sql("DELETE FROM queue").rowcount
                c.exec_driver_sql("UPDATE counters SET value = 0 WHERE name IN ('depth', 'bytes')")
            if dead:
                n += c.exec_driver_sql("DELETE FROM dead").rowcount
                c.exec_driver_sql("UPDATE counters SET value = 0 WHERE name = 'dead'")
            self._bump(c, {"purged": n})
            return n

        n = self._tx("purge", fn)
        self._counters = self._load_counters_locked()
        return n

    def prune_ledger(self) -> int:
        """Forget delivered keys older than the retention window (and beyond ledger_max_rows).

        The ledger is append-only, so both cuts delete a prefix by rowid. The in-memory set
        is rebuilt when the cut is large (> 5 %); until then a few expired keys may still
        count as delivered (the window is a minimum, never shorter)."""
        cutoff = self.clock_ns() - int(self.ledger_retention_s * 1e9)

        def fn(c: Any) -> int:
            first_kept = c.exec_driver_sql("SELECT id FROM ledger WHERE delivered_ns >= ? ORDER BY id LIMIT 1",
                                           (cutoff,)).scalar()
            if first_kept is None:
                n = c.exec_driver_sql("DELETE FROM ledger").rowcount
            else:
                n = c.exec_driver_sql("DELETE FROM ledger WHERE id < ?", (first_kept,)).rowcount
            if self.ledger_max_rows:
                total = c.exec_driver_sql("SELECT count(*) FROM ledger").scalar()
                if total > self.ledger_max_rows:
                    cut = c.exec_driver_sql("SELECT id FROM ledger ORDER BY id LIMIT 1 OFFSET ?",
                                            (total - self.ledger_max_rows,)).scalar()
                    n += c.exec_driver_sql("DELETE FROM ledger WHERE id < ?", (cut,)).rowcount
            return n

        n = self._tx("prune ledger", fn)
        if n and (n > 0.05 * max(1, len(self._keys)) or len(self._keys) <= n):
            self._load_keys()
        return n

    def _load_keys(self) -> None:
        keys = _KeySet()
        if self.ledger_on:
            pairs = self._read(lambda c: c.exec_driver_sql("SELECT h1, h2 FROM ledger").all())
            if pairs:
                keys.load([tuple(p) for p in pairs])
        with self._lock:
            self._keys = keys

    # ------------------------------------------------------------ reading
    def _read(self, fn: Callable[[Any], Any]) -> Any:
        with self._lock:
            try:
                self._end(self._conn)
                self._begin_sql = "BEGIN"
                try:
                    tx = self._conn.begin()
                finally:
                    self._begin_sql = None
                with tx:
                    return fn(self._conn)
            except (SQLAlchemyError, sqlite3.Error) as exc:
                raise _classify(exc, self.path, "read") from None
            finally:
                self._end(self._conn)

    def peek(self, n: int = 10, offset: int = 0) -> List[Row]:
        return self._read(lambda c: [_row(r) for r in c.exec_driver_sql(
            f"SELECT {_COPY_COLS} FROM queue ORDER BY id LIMIT ? OFFSET ?", (n, offset))])

    def dlq(self, n: int = 10, offset: int = 0) -> List[Row]:
        def fn(c: Any) -> List[Row]:
            out = []
            for r in c.exec_driver_sql(f"SELECT {_COPY_COLS}, reason, dead_ns FROM dead ORDER BY id LIMIT ? OFFSET ?",
                                       (n, offset)):
                row = _row(r)
                row.reason, row.dead_ns = r[19], r[20]
                out.append(row)
            return out

        return self._read(fn)

    def in_ledger(self, key: str) -> bool:
        with self._lock:
            return self._keys.contains([key_hash(key)])[0]

    def stats(self) -> Stats:
        now = self.clock_ns()

        def fn(c: Any) -> Stats:
            counters = {n: int(v) for n, v in c.exec_driver_sql("SELECT name, value FROM counters")}
            head = c.exec_driver_sql("SELECT id, enq_ns FROM queue ORDER BY id LIMIT 1").first()
            leased = self.leased
            ledger = c.exec_driver_sql("SELECT count(*) FROM ledger").scalar() or 0
            return Stats(depth=counters.get("depth", 0), bytes=counters.get("bytes", 0), leased=int(leased),
                         dead=counters.get("dead", 0),
                         oldest_age_s=max(0.0, (now - head[1]) / 1e9) if head else 0.0,
                         oldest_id=head[0] if head else None, ledger=int(ledger), counters=counters,
                         path=self.path, schema_version=self.schema_version, synchronous=self.synchronous)

        return self._read(fn)

    @property
    def depth(self) -> int:
        return self._counters.get("depth", 0)

    @property
    def counters(self) -> Dict[str, int]:
        return dict(self._counters)

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            finally:
                self.engine.dispose()

    def __enter__(self) -> "DurableStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class GroupCommitter:
    """Batches single packets (and acks) into one commit, bounded by ``max_rows`` and ``max_ms``.

    ``submit`` returns at once; a writer thread commits when ``max_rows`` packets wait or
    the oldest waiting item has waited ``max_ms``. ``on_commit(packets, result)`` runs after
    each commit: only then are the packets accepted. ``on_error(packets, exc)`` runs when
    the commit failed: those packets were NOT accepted. Acks submitted with
    ``submit_ack`` ride in the same transaction (``on_ack_commit(ack_result)``).
    """

    def __init__(self, store: DurableStore, *, max_rows: int = 100, max_ms: float = 5.0,
                 sinks: Any = None, on_commit: Optional[Callable[[List[Packet], EnqueueResult], None]] = None,
                 on_error: Optional[Callable[[List[Packet], StoreError], None]] = None,
                 on_ack_commit: Optional[Callable[[AckResult], None]] = None) -> None:
        if max_rows < 1 or max_ms < 0:
            raise ValueError("group commit needs max_rows >= 1 and max_ms >= 0")
        self.store = store
        self.max_rows = int(max_rows)
        self.max_s = float(max_ms) / 1000.0
        self.sinks = sinks
        self.on_commit = on_commit
        self.on_error = on_error
        self.on_ack_commit = on_ack_commit
        self._buf: List[Packet] = []
        self._acks: List[Tuple[List[int], str]] = []
        self._first = 0.0
        self._cv = threading.Condition()
        self._stop = False
        self._busy = False
        self.commits = 0
        self._thread = threading.Thread(target=self._loop, name="schnitzel-group-commit", daemon=True)
        self._thread.start()

    def submit(self, packet: Packet) -> None:
        with self._cv:
            if not self._buf and not self._acks:
                self._first = time.monotonic()
                self._cv.notify()  # start the max_ms clock in the writer
            self._buf.append(packet)
            if len(self._buf) >= self.max_rows:
                self._cv.notify()

    def submit_ack(self, row_ids: Iterable[int], sink: str = ANY_SINK) -> None:
        with self._cv:
            if not self._buf and not self._acks:
                self._first = time.monotonic()
                self._cv.notify()
            self._acks.append((list(row_ids), sink))
            if len(self._acks) >= self.max_rows:
                self._cv.notify()

    def pending(self) -> int:
        with self._cv:
            return len(self._buf) + (1 if self._busy else 0)

    def _loop(self) -> None:
        import logging

        log = logging.getLogger("schnitzel.store")
        while True:
            with self._cv:
                while not self._stop:
                    if self._buf or self._acks:
                        wait = self._first + self.max_s - time.monotonic()
                        if len(self._buf) >= self.max_rows or len(self._acks) >= self.max_rows or wait <= 0:
                            break
                        self._cv.wait(wait)
                    else:
                        self._cv.wait(0.5)
                if self._stop and not self._buf and not self._acks:
                    return
                batch, self._buf = self._buf[:self.max_rows], self._buf[self.max_rows:]
                acks, self._acks = self._acks, []
                if self._buf:
                    self._first = time.monotonic()
                self._busy = True
            try:
                try:
                    res, ares = self.store.write(batch, self.sinks, acks)
                    self.commits += 1
                except StoreError as exc:
                    if acks:  # the acks are lost with the failed commit: the rows will be re-sent
                        log.warning("acks not recorded: %s", exc)
                    if self.on_error:
                        self.on_error(batch, exc)
                    continue
                if self.on_commit and batch:
                    self.on_commit(batch, res)
                if self.on_ack_commit and acks:
                    self.on_ack_commit(ares)
            except Exception:  # noqa: BLE001 - a callback bug must not stop the writer
                log.exception("group commit callback failed")
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is committed (or failed)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._first = 0.0  # make the writer commit now
            self._cv.notify_all()
            while self._buf or self._acks or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._first = 0.0
                self._cv.notify_all()
                self._cv.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout)

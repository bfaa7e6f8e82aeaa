"""DurableStore: the on-disk queue behind the ``durable_queue`` node.

SQLAlchemy 2 (Core) over SQLite in WAL mode. One file holds:

- ``queue``: accepted rows, oldest first (``id`` is AUTOINCREMENT, never reused).
  ``sinks`` is the comma-separated set of sinks that still have to confirm the row
  (``*`` = any one sink). ``state`` 0 = ready, 1 = leased. ``avail_ns`` is when the
  row may be leased again (lease expiry or next-attempt time after a nack).
- ``dead``: dead-lettered rows with their reason; ``redrive`` moves them back.
- ``ledger_blocks``: 128-bit hashes of the idempotency keys of delivered rows, one block
  (16 bytes per key) per commit, append-only, kept for ``ledger_retention_s`` and looked up
  in memory (:class:`_KeySet`); a re-enqueued key found there is a no-op (counted as
  ``duplicates``). (Schema v2 and older kept one ``ledger`` row per key.)
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
import hashlib
import itertools
import json
import operator
import os
import sqlite3
import struct
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from sqlalchemy import (BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, Text,
                        create_engine, event, select)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from .packet import Packet, PayloadRef

_blake2b = hashlib.blake2b

SCHEMA_VERSION = 3
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
ledger_blocks_t = Table("ledger_blocks", metadata, Column("id", Integer, primary_key=True),
                        Column("delivered_ns", BigInteger, nullable=False), Column("n", Integer, nullable=False),
                        Column("hashes", LargeBinary, nullable=False))

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


_LEDGER_BLOCKS_DDL = """CREATE TABLE ledger_blocks (id INTEGER PRIMARY KEY, delivered_ns BIGINT NOT NULL,
    n INTEGER NOT NULL, hashes BLOB NOT NULL)"""


def _pack_hashes(hs: Sequence[Tuple[int, int]]) -> bytes:
    """(h1, h2) pairs as 16 big-endian bytes each (for a derive_key key: the key's own bytes)."""
    return struct.pack(f">{2 * len(hs)}q", *itertools.chain.from_iterable(hs))


def _migrate_2_to_3(conn: Any) -> None:
    """v3 writes one ledger block per commit (16 bytes per delivered key) instead of one row
    per key: the per-key rows were the largest single cost of an ack. Existing rows are
    packed into blocks of up to 1000 keys, each stamped with its newest delivery time (so the
    retention window is never shortened)."""
    conn.exec_driver_sql(_LEDGER_BLOCKS_DDL)
    rows = conn.exec_driver_sql("SELECT h1, h2, delivered_ns FROM ledger ORDER BY id").all()
    for i in range(0, len(rows), 1000):
        chunk = rows[i:i + 1000]
        conn.exec_driver_sql("INSERT INTO ledger_blocks(delivered_ns, n, hashes) VALUES (?, ?, ?)",
                             (max(r[2] for r in chunk), len(chunk), _pack_hashes([(r[0], r[1]) for r in chunk])))
    conn.exec_driver_sql("DROP TABLE ledger")


#: from-version -> step that brings a store to from-version + 1
MIGRATIONS: Dict[int, Callable[[Any], None]] = {1: _migrate_1_to_2, 2: _migrate_2_to_3}

COUNTER_NAMES = ("depth", "bytes", "dead", "accepted", "delivered", "duplicates", "dropped_overflow",
                 "rejected_full", "dead_lettered", "redriven", "nacks", "purged")

_INSERT_COLS = ("key", "stream_id", "seq", "epoch", "kind", "schema", "content_type", "stamp_ns",
                "frame_id", "packet_id", "payload", "meta", "payload_ref", "size", "sinks")
# enq_ns is one value per batch (a literal: the statement is prepared once per batch, not
# bound per row); attempts, state and avail_ns take their column defaults (0)
_ENQUEUE_SQL = (
    f"INSERT OR IGNORE INTO queue ({', '.join(_INSERT_COLS)}, enq_ns) "
    f"VALUES ({', '.join('?' * len(_INSERT_COLS))}, %d)"
)
_ROW_COLS = ("id", "key", "stream_id", "seq", "epoch", "kind", "schema", "content_type", "stamp_ns",
             "frame_id", "packet_id", "payload", "meta", "payload_ref", "size", "sinks", "enq_ns",
             "attempts", "last_error")
_COPY_COLS = ", ".join(_ROW_COLS)
_LEASE_SQL = f"SELECT {_COPY_COLS} FROM queue WHERE id > ? AND id < ? AND avail_ns <= ? ORDER BY id LIMIT ?"


# ---------------------------------------------------------------- ledger in memory
_HEX_DIGITS = "0123456789abcdef"
_2_63, _2_64 = 1 << 63, 1 << 64


def key_hash(key: str) -> Tuple[int, int]:
    """128 bits of an idempotency key as two signed 64-bit ints. Keys made by derive_key
    (32 lower-case hex digits) are used as they are; any other key is hashed (blake2b-128)."""
    if len(key) == 32 and not key.strip(_HEX_DIGITS):  # canonical lower-case hex only
        v = int(key, 16)
        a, b = v >> 64, v & 0xFFFFFFFFFFFFFFFF
    else:
        d = _blake2b(key.encode("utf-8"), digest_size=16).digest()
        a, b = int.from_bytes(d[:8], "big"), int.from_bytes(d[8:], "big")
    return (a - _2_64 if a >= _2_63 else a, b - _2_64 if b >= _2_63 else b)


try:
    import numpy as _np
except ImportError:  # pragma: no cover - numpy is a dependency
    _np = None


def key_hashes(keys: Sequence[str]) -> List[Tuple[int, int]]:
    """:func:`key_hash` of many keys; a batch of derive_key keys is converted in one go."""
    if not keys:
        return []
    if _np is not None and min(map(len, keys)) == 32 == max(map(len, keys)):
        joined = "".join(keys)
        try:
            raw = bytes.fromhex(joined)
        except ValueError:
            raw = b""
        if raw.hex() == joined:  # canonical lower-case hex only (fromhex also takes A-F, spaces)
            # 16 bytes per key, big-endian signed halves: exactly key_hash's (a, b)
            return list(map(tuple, _np.frombuffer(raw, dtype=">i8").reshape(-1, 2).tolist()))
    return [key_hash(k) for k in keys]


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


_new_packet = _new_row = object.__new__
_PLAIN_TAIL = (None, None)


def _encode_extra(f: Tuple[Any, ...]) -> Tuple[Any, Any]:
    return (json.dumps(f[11], separators=(",", ":")) if f[11] else None,
            json.dumps(dataclasses.asdict(f[12])) if f[12] else None)


_PACKET_FIELDS = operator.attrgetter("idempotency_key", "stream_id", "seq", "epoch", "kind", "schema",
                                     "content_type", "stamp_ns", "frame_id", "packet_id", "payload", "meta",
                                     "payload_ref")


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
        # Rows this process enqueued, kept in memory (up to hot_max) so that leasing them
        # needs no read and no decoding: every queue row with id >= _hot_lo is in _hot.
        # Rows below _hot_lo ("cold": a backlog from before the start, nacked, redriven, or
        # beyond hot_max) are read from the file, oldest first, before any hot row.
        self.hot_max = 10_000
        self._hot: Dict[int, Row] = {}
        self._hot_lo: Optional[int] = None   # None: not known yet (set at the next lease)
        self._cold_done = False              # no ready cold row left (besides leased ones)
        self._cold_wake_ns: Optional[int] = None  # a cold row becomes ready then (nack delay)
        self._data_version: Optional[int] = None  # PRAGMA data_version: other writers

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn: Any) -> None:
            # explicit transactions only (writes: IMMEDIATE, snapshots: deferred); plain
            # statements outside them run in autocommit and take no write lock
            if self._begin_sql:  # straight to the DB-API connection: cheaper, same transaction
                conn.connection.driver_connection.execute(self._begin_sql)

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
            c.connection.driver_connection.executemany("UPDATE counters SET value = value + ? WHERE name = ?",
                                                       items)

    def _apply(self, deltas: Dict[str, int]) -> None:
        for n, v in deltas.items():
            self._counters[n] = self._counters.get(n, 0) + v

    def _in_transaction(self, begin_sql: str, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(conn)`` in one transaction opened with ``begin_sql`` (caller holds the lock)."""
        self._end(self._conn)
        self._begin_sql = begin_sql
        try:
            tx = self._conn.begin()
        finally:
            self._begin_sql = None
        with tx:
            return fn(self._conn)

    def _tx(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(conn)`` in one IMMEDIATE transaction; map SQLite errors to StoreError."""
        with self._lock:
            try:
                return self._in_transaction("BEGIN IMMEDIATE", fn)
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
        hs: List[Tuple[int, int]] = []
        ledger_on = self.ledger_on
        pk: List[Packet] = packets if isinstance(packets, list) else list(packets)
        if callable(sinks):
            memo: Dict[Any, str] = {}
            s_list = []
            for p in pk:
                t = sinks(p)
                t = tuple(t) if t else ()
                s_txt = memo.get(t)
                if s_txt is None:
                    s_txt = memo[t] = ",".join(sorted(set(t))) if t else ANY_SINK
                s_list.append(s_txt)
        else:
            s_list = [",".join(sorted(set(sinks))) if sinks else ANY_SINK] * len(pk)
        enc, plain = _encode_extra, _PLAIN_TAIL
        # (key, ..., payload) in one C call per packet; meta and payload_ref as JSON when set
        rows: List[Tuple[Any, ...]] = [
            f[:11] + ((plain if not (f[11] or f[12]) else enc(f)) + (len(f[10]) + 256, s_txt))
            for f, s_txt in zip(map(_PACKET_FIELDS, pk), s_list)]
        ack_list = []
        for ids, sink in acks:
            ids = list(dict.fromkeys(int(i) for i in ids))
            if ids:
                ack_list.append((ids, sink))
        if not rows and not ack_list:
            return EnqueueResult(), AckResult()

        known: List[bool] = []
        if rows and ledger_on:  # delivered within the window: a no-op
            hs = key_hashes([r[0] for r in rows])
            with self._lock:
                known = self._keys.contains(hs)

        def fn(c: Any) -> Tuple[Any, ...]:
            deltas: Dict[str, int] = {}
            ares = AckResult()
            done_ids: List[int] = []
            done_hashes: List[Tuple[int, int]] = []
            partial_rows: List[Tuple[str, int]] = []
            # hot path: the DB-API connection of this SQLAlchemy connection, inside its
            # transaction (SQLAlchemy's per-statement cost was a large share of a batch)
            dc = c.connection.driver_connection
            for ids, sink in ack_list:
                self._ack_in(c, ids, sink, now, ares, deltas, done_ids, done_hashes, partial_rows)
            if done_hashes:  # the delivered keys of this commit: one ledger block
                dc.execute("INSERT INTO ledger_blocks(delivered_ns, n, hashes) VALUES (?, ?, ?)",
                           (now, len(done_hashes), _pack_hashes(done_hashes)))
            res = EnqueueResult()
            new_rows = None   # [(id, packet, sinks, size)] when the new rows' ids are known
            if rows:
                self._dropped_rows = self._dropped_bytes = 0
                todo, todo_pk = rows, pk
                if any(known):
                    todo = [r for r, kn in zip(rows, known) if not kn]
                    todo_pk = [p for p, kn in zip(pk, known) if not kn]
                res.duplicates = len(rows) - len(todo)
                if todo and (self.max_rows or self.max_bytes):
                    kept = self._make_room(c, todo, res, deltas)
                    if len(kept) != len(todo):
                        keep = {id(r) for r in kept}
                        todo_pk = [p for p, r in zip(todo_pk, todo) if id(r) in keep]
                        todo = kept
                if todo:
                    cur = dc.executemany(_ENQUEUE_SQL % int(now), todo)
                    n = cur.rowcount if cur.rowcount is not None and cur.rowcount >= 0 else len(todo)
                    res.accepted = n
                    res.duplicates += len(todo) - n
                    if n == len(todo):
                        added = sum(r[13] for r in todo)
                        # AUTOINCREMENT ids of one statement are consecutive
                        last = dc.execute("SELECT last_insert_rowid()").fetchone()[0]
                        new_rows = (last - n + 1, todo_pk, todo)
                    else:
                        added = self._bytes_of_new(c, n)
                    for k, v in (("depth", n), ("bytes", added), ("accepted", n)):
                        deltas[k] = deltas.get(k, 0) + v
                if res.duplicates:
                    deltas["duplicates"] = deltas.get("duplicates", 0) + res.duplicates
                if res.rejected:
                    deltas["rejected_full"] = deltas.get("rejected_full", 0) + res.rejected
            self._bump(c, deltas)
            return res, ares, deltas, done_ids, done_hashes, new_rows, partial_rows

        res, ares, deltas, done_ids, done_hashes, new_rows, partial_rows = self._tx("write", fn)
        with self._lock:
            self._apply(deltas)
            hot = self._hot
            for i in done_ids:
                self._leases.pop(i, None)
                hot.pop(i, None)
            for sinks_txt, i in partial_rows:
                r = hot.get(i)
                if r is not None:
                    r.sinks = tuple(sinks_txt.split(","))
            if done_hashes:
                self._keys.add(done_hashes)
            if res.dropped or (rows and new_rows is None and res.accepted):
                self._hot_reset()        # rows deleted or ids unknown: read them from the file
            elif new_rows:
                first, new_pk, new_todo = new_rows
                if len(hot) + len(new_pk) > self.hot_max:
                    self._hot_reset()    # a backlog builds up: it is read from the file
                elif self._hot_lo is not None and first >= self._hot_lo:
                    # (rows below _hot_lo are read from the file: a lease between this
                    # commit and here may have placed the boundary above them)
                    tuples: Dict[str, Tuple[str, ...]] = {}
                    new = _new_row
                    for rid, p, r in zip(range(first, first + len(new_pk)), new_pk, new_todo):
                        t = tuples.get(r[14])
                        if t is None:
                            t = tuples[r[14]] = tuple(r[14].split(","))
                        row = new(Row)
                        row.__dict__ = {"id": rid, "key": r[0], "packet": p, "sinks": t, "attempts": 0,
                                        "enq_ns": now, "size": r[13], "last_error": "", "reason": "",
                                        "dead_ns": 0}
                        hot[rid] = row
        if ares.done and time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + self.prune_every_s
            try:
                self.prune_ledger()
            except StoreError:
                pass  # retried at the next interval
        return res, ares

    def _ack_in(self, c: Any, ids: List[int], sink: str, now: int, res: AckResult,
                deltas: Dict[str, int], done_ids: List[int], done_hashes: List[Tuple[int, int]],
                partial_out: Optional[List[Tuple[str, int]]] = None) -> None:
        dc = c.connection.driver_connection  # DB-API connection, same transaction
        done_n = done_bytes = 0
        rest: List[int] = []
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            marks = ",".join("?" * len(chunk))
            # fast path: rows this sink completes (single-sink or any-sink rows), set-based
            cond = "" if sink == ANY_SINK else " AND (sinks = '*' OR sinks = ?)"
            extra = () if sink == ANY_SINK else (sink,)
            got = dc.execute(f"DELETE FROM queue WHERE id IN ({marks}){cond} RETURNING id, size, key",
                             (*chunk, *extra)).fetchall()
            if self.ledger_on and got:  # written as one ledger block by write()
                done_hashes.extend(key_hashes([g[2] for g in got]))
            done_n += len(got)
            done_bytes += sum(g[1] for g in got)
            if len(got) == len(chunk):
                done_ids.extend(chunk)
                continue
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
                    done_hashes.extend(key_hashes([d[1] for d in done]))
                done_n += len(done)
                done_bytes += sum(d[2] for d in done)
                done_ids.extend(d[0] for d in done)
            if partial:
                c.exec_driver_sql("UPDATE queue SET sinks = ? WHERE id = ?", partial)
                if partial_out is not None:
                    partial_out.extend(partial)
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
            leases = self._leases
            if leases:
                expired = [i for i, t in leases.items() if t <= now]
                if expired:
                    for i in expired:
                        del leases[i]
                    if self._hot_lo is None or min(expired) < self._hot_lo:
                        self._cold_done = False
            dv = self._conn.connection.driver_connection.execute("PRAGMA data_version").fetchone()[0]
            if dv != self._data_version:
                # another connection (the CLI: redrive, purge) changed the file
                self._data_version = dv
                self._hot_reset()
            if self._hot_lo is None:
                seq = self._read(lambda c: c.connection.driver_connection.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'queue'").fetchone())
                self._hot_lo = (int(seq[0]) if seq else 0) + 1
                self._hot = {}
                self._cold_done = False
            if self._cold_done and self._cold_wake_ns is not None and now >= self._cold_wake_ns:
                self._cold_done = False
            out: List[Row] = []
            if not self._cold_done:
                hot_lo = self._hot_lo
                got: List[Any] = []
                last = 0
                while len(got) < n:
                    want = n - len(got) + len(leases)
                    # plain DB-API rows from the same connection and transaction
                    # (SQLAlchemy's Row processing cost more than the query itself here)
                    batch = self._read(lambda c: c.connection.driver_connection.execute(
                        _LEASE_SQL, (last, hot_lo, now, want)).fetchall())
                    got.extend(r for r in batch if r[0] not in leases)
                    if len(batch) < want:
                        # the cold part is drained: remember when a delayed row gets ready
                        wake = self._read(lambda c: c.connection.driver_connection.execute(
                            "SELECT min(avail_ns) FROM queue WHERE id < ? AND avail_ns > ?",
                            (hot_lo, now)).fetchone())
                        self._cold_wake_ns = wake[0] if wake and wake[0] is not None else None
                        self._cold_done = True
                        break
                    last = batch[-1][0]
                out = [_row(r) for r in got[:n]]
            if len(out) < n and self._hot:
                need = n - len(out)
                for rid, row in self._hot.items():
                    if rid in leases:
                        continue
                    out.append(row)
                    need -= 1
                    if not need:
                        break
            for r in out:
                leases[r.id] = until
            return out

    def _hot_reset(self) -> None:
        """Forget the in-memory rows: everything is read from the file again (after nack,
        dead-letter, redrive, purge, drop_oldest: anything that changes rows behind the
        enqueue/ack path)."""
        with self._lock:
            self._hot = {}
            self._hot_lo = None
            self._cold_done = False
            self._cold_wake_ns = None

    @property
    def leased(self) -> int:
        now = self.clock_ns()
        with self._lock:
            return sum(1 for t in self._leases.values() if t > now)

    def release(self, row_ids: Iterable[int]) -> None:
        """Give leased rows back without counting an attempt (ready again at once)."""
        with self._lock:
            for i in row_ids:
                i = int(i)
                if self._leases.pop(i, None) is not None and (self._hot_lo is None or i < self._hot_lo):
                    self._cold_done = False

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
                    done_hashes.append(key_hash(r[0]))
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
        self._hot_reset()  # attempts, next-attempt time: read from the file from now on
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
                r = self._hot.get(i)
                if r is not None:
                    r.attempts += 1
                    r.last_error = reason[:2000]

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
            self._hot_reset()
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
        self._hot_reset()
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
        self._hot_reset()  # the redriven rows get new ids: read them from the file
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
        self._hot_reset()
        self._counters = self._load_counters_locked()
        return n

    def prune_ledger(self) -> int:
        """Forget delivered keys older than the retention window (and beyond ledger_max_rows).

        The ledger is append-only, so both cuts delete a prefix by rowid. The in-memory set
        is rebuilt when the cut is large (> 5 %); until then a few expired keys may still
        count as delivered (the window is a minimum, never shorter)."""
        cutoff = self.clock_ns() - int(self.ledger_retention_s * 1e9)

        def fn(c: Any) -> int:
            # blocks are in delivery order and stamped with their newest key: cut a prefix
            first_kept = c.exec_driver_sql("SELECT id FROM ledger_blocks WHERE delivered_ns >= ? ORDER BY id LIMIT 1",
                                           (cutoff,)).scalar()
            where, args = ("", ()) if first_kept is None else (" WHERE id < ?", (first_kept,))
            n = int(c.exec_driver_sql(f"SELECT coalesce(sum(n), 0) FROM ledger_blocks{where}", args).scalar())
            if n:
                c.exec_driver_sql(f"DELETE FROM ledger_blocks{where}", args)
            if self.ledger_max_rows:
                blocks = c.exec_driver_sql("SELECT id, n FROM ledger_blocks ORDER BY id").all()
                total = sum(b[1] for b in blocks)
                cut = None
                for bid, bn in blocks:  # whole blocks, keeping at least ledger_max_rows keys
                    if total - bn < self.ledger_max_rows:
                        break
                    total -= bn
                    n += bn
                    cut = bid
                if cut is not None:
                    c.exec_driver_sql("DELETE FROM ledger_blocks WHERE id <= ?", (cut,))
            return n

        n = self._tx("prune ledger", fn)
        if n and (n > 0.05 * max(1, len(self._keys)) or len(self._keys) <= n):
            self._load_keys()
        return n

    def _load_keys(self) -> None:
        keys = _KeySet()
        if self.ledger_on:
            blob = b"".join(self._read(lambda c: [r[0] for r in c.connection.driver_connection.execute(
                "SELECT hashes FROM ledger_blocks ORDER BY id")]))
            if blob:
                if keys._np is not None:
                    keys.load(keys._np.frombuffer(blob, dtype=">i8").astype(keys._np.int64).reshape(-1, 2))
                else:
                    keys.load(list(struct.iter_unpack(">qq", blob)))
        with self._lock:
            self._keys = keys

    # ------------------------------------------------------------ reading
    def _read(self, fn: Callable[[Any], Any]) -> Any:
        with self._lock:
            try:
                return self._in_transaction("BEGIN", fn)
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
            ledger = c.exec_driver_sql("SELECT coalesce(sum(n), 0) FROM ledger_blocks").scalar() or 0
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

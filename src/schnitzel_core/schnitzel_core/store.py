"""DurableStore: the on-disk queue behind the ``durable_queue`` node.

SQLAlchemy 2 (Core) over SQLite in WAL mode. One file holds:

- ``segments``: accepted rows, oldest first. Each commit appends its new rows as ONE
  segment row (the batch packed with msgpack, plus the rows' sizes and 128-bit key hashes),
  like the chunks of Fluent Bit's or Vector's disk buffers: a batch costs one insert and,
  once every row is confirmed, one delete, however many packets it holds. Row ``i`` of
  segment ``s`` has the id ``s << SEG_BITS | i`` (ids grow, oldest first, never reused).
  ``segments_gone`` marks the rows of a partly confirmed segment that are gone.
- ``queue``: "loose" rows, one SQLite row each, for everything that changes a row on its
  own: a nack (attempts, next-attempt time ``avail_ns``), a retry, a fan-out row that
  some of its sinks confirmed (``sinks`` = the sinks still to confirm, ``*`` = any one
  sink), a redriven or migrated row. A segment row moves here (keeping its id) the
  first time that happens to it; the common path (enqueue, lease, ack) never touches it.
- ``dead``: dead-lettered rows with their reason; ``redrive`` appends them to the tail again.
- ``ledger_blocks``: 128-bit hashes of the idempotency keys of delivered rows, one block
  (16 bytes per key) per commit, append-only, kept for ``ledger_retention_s`` and looked up
  in memory (:class:`_KeySet`); a re-enqueued key found there is a no-op (counted as
  ``duplicates``). A key still queued is a no-op too (:class:`_KnownKeys`, in memory,
  rebuilt from the file at open).
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

import array
import bisect
import collections
import dataclasses
import hashlib
import heapq
import itertools
import json
import operator
import os
import sqlite3
import struct
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import msgpack

from sqlalchemy import (BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, Text,
                        create_engine, event, select)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from .packet import Packet, PayloadRef

_blake2b = hashlib.blake2b

SCHEMA_VERSION = 4
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


class StoreLockedError(StoreError):
    """Another process owns the file (a running queue): one consumer per store file."""

    def __init__(self, message: str, holder_pid: Optional[int]) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid


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


SEG_BITS = 16
SEG_ROWS = 1 << SEG_BITS          # rows per segment at most (a larger batch takes several)
_SEG_MASK = SEG_ROWS - 1

_SEGMENTS_DDL = [
    # sizes: uint32 little-endian per row; hashes: 16 bytes per row (key_hash, big-endian);
    # data: msgpack array of (key, stream_id, seq, epoch, kind, schema, content_type,
    # stamp_ns, frame_id, packet_id, payload, meta JSON, payload_ref JSON, size, sinks);
    # sinks: the rows' sinks when all rows share them (else NULL: per row in data)
    """CREATE TABLE segments (id INTEGER PRIMARY KEY AUTOINCREMENT, enq_ns BIGINT NOT NULL,
        n INTEGER NOT NULL, sinks VARCHAR, sizes BLOB NOT NULL, hashes BLOB NOT NULL, data BLOB NOT NULL)""",
    # bitmap of the rows gone from a partly confirmed segment (bit i = row i)
    "CREATE TABLE segments_gone (id INTEGER PRIMARY KEY, gone BLOB NOT NULL)",
]


def _migrate_3_to_4(conn: Any) -> None:
    """v4 appends each commit's rows as one segment instead of one queue row per packet
    (the per-row inserts, deletes and key index were most of an enqueue+ack). Rows already
    queued stay in ``queue`` as loose rows; segment ids start above every id used so far,
    so the oldest-first order holds across both."""
    for ddl in _SEGMENTS_DDL:
        conn.exec_driver_sql(ddl)
    top = conn.exec_driver_sql(
        "SELECT max(coalesce((SELECT max(id) FROM queue), 0), coalesce((SELECT max(id) FROM dead), 0), "
        "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'queue'), 0))").scalar()
    conn.exec_driver_sql("INSERT INTO sqlite_sequence(name, seq) VALUES ('segments', ?)", (int(top) >> SEG_BITS,))


#: from-version -> step that brings a store to from-version + 1
MIGRATIONS: Dict[int, Callable[[Any], None]] = {1: _migrate_1_to_2, 2: _migrate_2_to_3, 3: _migrate_3_to_4}

COUNTER_NAMES = ("depth", "bytes", "dead", "accepted", "delivered", "duplicates", "dropped_overflow",
                 "rejected_full", "dead_lettered", "redriven", "nacks", "purged")

_ROW_COLS = ("id", "key", "stream_id", "seq", "epoch", "kind", "schema", "content_type", "stamp_ns",
             "frame_id", "packet_id", "payload", "meta", "payload_ref", "size", "sinks", "enq_ns",
             "attempts", "last_error")
_COPY_COLS = ", ".join(_ROW_COLS)
_LOOSE_LEASE_SQL = f"SELECT {_COPY_COLS} FROM queue WHERE id > ? AND avail_ns <= ? ORDER BY id LIMIT ?"
_LOOSE_INSERT_SQL = f"INSERT INTO queue ({_COPY_COLS}, state, avail_ns) VALUES ({', '.join('?' * len(_ROW_COLS))}, 0, 0)"
_SEGMENT_INSERT_SQL = "INSERT INTO segments(enq_ns, n, sinks, sizes, hashes, data) VALUES (?, ?, ?, ?, ?, ?)"
_SEGMENTS_READ_SQL = ("SELECT s.id, s.enq_ns, s.n, s.sinks, s.sizes, s.hashes, g.gone FROM segments s "
                      "LEFT JOIN segments_gone g ON g.id = s.id ORDER BY s.id")
_BUMP_SQL: Dict[Tuple[str, ...], str] = {}   # counters-update statement per set of counter names


# ---------------------------------------------------------------- keys in memory
# A key is known by its 128-bit hash written as 32 lower-case hex digits: for a key made by
# derive_key that is the key itself (nothing to compute, and Python caches a str's hash), any
# other key is hashed (blake2b-128). On disk the same 128 bits are 16 bytes (bytes.fromhex).
_HEX_DIGITS = "0123456789abcdef"


def key_hash(key: str) -> str:
    """The 128-bit hash of an idempotency key as 32 lower-case hex digits. Keys made by
    derive_key (32 lower-case hex digits) are used as they are; any other key is hashed."""
    if len(key) == 32 and not key.strip(_HEX_DIGITS):  # canonical lower-case hex only
        return key
    return _blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


try:
    import numpy as _np
except ImportError:  # pragma: no cover - numpy is a dependency
    _np = None


def hash_batch(keys: Sequence[str]) -> Tuple[List[str], bytes]:
    """:func:`key_hash` of many keys and the hashes packed (16 bytes each). A batch of
    derive_key keys is checked and packed in one go."""
    if not keys:
        return [], b""
    if min(map(len, keys)) == 32 == max(map(len, keys)):
        joined = "".join(keys)
        try:
            raw = bytes.fromhex(joined)
        except ValueError:
            raw = b""
        if raw.hex() == joined:  # canonical lower-case hex only (fromhex also takes A-F, spaces)
            return list(keys), raw
    hs = [key_hash(k) for k in keys]
    return hs, bytes.fromhex("".join(hs))


def key_hashes(keys: Sequence[str]) -> List[str]:
    """:func:`key_hash` of many keys."""
    return hash_batch(keys)[0]


def _split_hashes(blob: bytes) -> List[str]:
    """16-byte hashes packed in ``blob`` -> hex strings."""
    h = blob.hex()
    return [h[i:i + 32] for i in range(0, len(h), 32)]


def _hash_array(np: Any, blob: bytes) -> Any:
    """16-byte hashes packed in ``blob`` -> int64 (n, 2) array (high, low halves, signed)."""
    return np.frombuffer(blob, dtype=">i8").reshape(-1, 2).astype(np.int64)


class _KeySet:
    """Key hashes in memory: sorted numpy arrays (hi, lo halves) plus a set of recent
    additions (hex strings) merged in batches. Without numpy, a sorted list of the hex
    strings (for 32 lower-case hex digits, text order is number order; bisect)."""

    MERGE_AT = 65536

    def __init__(self) -> None:
        try:
            import numpy as np
        except ImportError:  # pragma: no cover - numpy is a dependency; keep working without it
            np = None
        self._np = np
        self.hi: Any = np.empty(0, np.int64) if np is not None else None
        self.lo: Any = np.empty(0, np.int64) if np is not None else None
        self.sorted: List[str] = []  # fallback without numpy
        self.recent: set = set()

    def __len__(self) -> int:
        base = len(self.hi) if self._np is not None else len(self.sorted)
        return base + len(self.recent)

    def load(self, keys: Any) -> None:
        """Replace the set: ``keys`` is a list of hex hashes, their packed bytes, or an int64
        (n, 2) array (numpy only)."""
        np = self._np
        self.recent = set()
        if isinstance(keys, (bytes, bytearray)):
            blob = bytes(keys)
        elif isinstance(keys, list):
            blob = bytes.fromhex("".join(keys))
        else:
            blob = None
        if np is None:
            self.sorted = sorted(_split_hashes(blob if blob is not None else b""))
            return
        arr = _hash_array(np, blob) if blob is not None else np.asarray(keys, dtype=np.int64).reshape(-1, 2)
        order = np.argsort(arr[:, 0], kind="stable")
        self.hi, self.lo = arr[order, 0].copy(), arr[order, 1].copy()

    def add(self, hs: Iterable[str]) -> None:
        self.recent.update(hs)
        # merge when the recent keys reach MERGE_AT or 1/8 of the sorted part: a merge costs a
        # copy of the sorted part, so this keeps its cost per key about constant
        if len(self.recent) < max(self.MERGE_AT, (len(self.hi) if self._np is not None else len(self.sorted)) >> 3):
            return
        np = self._np
        if np is None:
            self.sorted = sorted(self.sorted + list(self.recent))
        else:
            # sort only the new keys and insert them in place (O(n) copy, not a sort of the whole
            # set: a ledger of a million keys merges every MERGE_AT deliveries). contains() needs
            # the high halves sorted; equal high halves are scanned.
            arr = _hash_array(np, bytes.fromhex("".join(self.recent)))
            arr = arr[np.argsort(arr[:, 0], kind="stable")]
            pos = np.searchsorted(self.hi, arr[:, 0])
            self.hi, self.lo = np.insert(self.hi, pos, arr[:, 0]), np.insert(self.lo, pos, arr[:, 1])
        self.recent = set()

    def contains(self, hs: Sequence[str], blob: Optional[bytes] = None) -> List[bool]:
        """Membership of each hash; ``blob``: the same hashes packed, if at hand."""
        if not hs:
            return []
        recent = self.recent
        out = [h in recent for h in hs] if recent else [False] * len(hs)
        return self._in_base(hs, out, blob)

    def _in_base(self, hs: Sequence[str], out: List[bool], blob: Optional[bytes] = None) -> List[bool]:
        """Sets out[i] for each hash found in the sorted part (those already True are kept)."""
        np = self._np
        if np is None:
            for i, h in enumerate(hs):
                if not out[i]:
                    j = bisect.bisect_left(self.sorted, h)
                    out[i] = j < len(self.sorted) and self.sorted[j] == h
            return out
        n = len(self.hi)
        if n:
            q = _hash_array(np, blob if blob is not None else bytes.fromhex("".join(hs)))
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


class _KnownKeys(_KeySet):
    """Hashes of every key an enqueue must refuse: the keys still queued plus, with the
    ledger on, the keys delivered within the retention window. A confirmed delivery moves a
    key from one to the other, so it changes nothing here. A _KeySet plus the keys removed
    since it was built (dropped, dead-lettered, delivered without a ledger); rebuilt from the
    file when removals pile up."""

    def __init__(self) -> None:
        super().__init__()
        self.removed: set = set()

    def load(self, keys: Any) -> None:
        super().load(keys)
        self.removed = set()

    # Invariant: no hash is both in ``recent`` and in ``removed``; ``removed`` only masks the
    # sorted part. contains = (in recent or in the sorted part) and not in removed.
    def add(self, hs: Iterable[str]) -> None:
        rm = self.removed
        if rm:
            hs = list(hs)
            rm.difference_update(hs)
        super().add(hs)

    def discard(self, hs: Iterable[str]) -> None:
        hs = list(hs)
        recent, rm = self.recent, self.removed
        was_recent = [h in recent for h in hs]
        recent.difference_update(hs)
        # a hash can be in the sorted part too (merged, removed, added again): mask it there
        in_base = self._in_base(hs, [False] * len(hs)) if any(was_recent) and len(self) > len(recent) else None
        for i, h in enumerate(hs):
            if not was_recent[i] or (in_base is not None and in_base[i]):
                rm.add(h)

    def contains(self, hs: Sequence[str], blob: Optional[bytes] = None) -> List[bool]:
        out = super().contains(hs, blob)
        rm = self.removed
        if rm:
            out = [o and h not in rm for o, h in zip(out, hs)]
        return out


class _Seg:
    """Bookkeeping of one segment in memory (its packets stay in the file)."""

    __slots__ = ("id", "enq_ns", "n", "sinks", "sizes", "hashes", "gone", "live", "bytes", "marked")

    def __init__(self, sid: int, enq_ns: int, n: int, sinks: Optional[str], sizes: Any, hashes: bytes,
                 gone: Optional[bytes]) -> None:
        self.id, self.enq_ns, self.n, self.sinks, self.hashes = sid, enq_ns, n, sinks, hashes
        if isinstance(sizes, array.array):
            a = sizes
        else:  # as stored: uint32 little-endian
            a = array.array("I")
            a.frombytes(sizes)
            if sys.byteorder == "big":
                a.byteswap()
        self.sizes = a
        self.marked = gone is not None        # a segments_gone row exists in the file
        self.gone = bytearray(gone) if gone is not None else bytearray((n + 7) // 8)
        if gone is None:
            self.live, self.bytes = n, sum(a)
        else:
            alive = [i for i in range(n) if self.has(i)]
            self.live, self.bytes = len(alive), sum(a[i] for i in alive)

    def sizes_blob(self) -> bytes:
        if sys.byteorder == "big":
            a = array.array("I", self.sizes)
            a.byteswap()
            return a.tobytes()
        return self.sizes.tobytes()

    def has(self, i: int) -> bool:
        return not self.gone[i >> 3] >> (i & 7) & 1

    def live_hashes(self, np: Any) -> Any:
        arr = _hash_array(np, self.hashes)
        if self.live == self.n:
            return arr
        mask = np.unpackbits(np.frombuffer(bytes(self.gone), np.uint8), bitorder="little")[:self.n] == 0
        return arr[mask]


class _Edit:
    """What one write transaction does to the segments, written with it and applied to the
    in-memory view only after it commits (a failed commit leaves the view as it was)."""

    __slots__ = ("segs", "new", "gone_ids", "moved_ids", "gone_keys", "added_keys", "ledger_n", "ledger_blob",
                 "loose")

    def __init__(self) -> None:
        self.segs: Dict[int, List[Any]] = {}  # id -> [gone bitmap copy, live, bytes]
        self.new: List[Tuple[Any, ...]] = []  # appended: (segment, packets, per-row sinks, key hashes)
        self.gone_ids: List[int] = []         # rows that left the queue (delivered, dropped, dead)
        self.moved_ids: List[int] = []        # segment rows now loose rows
        self.gone_keys: List[str] = []        # key hashes no longer known (dropped, dead, ...)
        self.added_keys: List[str] = []       # key hashes known from now on (a dead row delivered)
        self.ledger_n = 0                     # keys delivered by this commit ...
        self.ledger_blob: List[bytes] = []    # ... packed, for its ledger block
        self.loose = False                    # loose rows changed

    def has(self, s: _Seg, i: int) -> bool:
        e = self.segs.get(s.id)
        g = s.gone if e is None else e[0]
        return not g[i >> 3] >> (i & 7) & 1

    def take(self, s: _Seg, i: int) -> int:
        """Row ``i`` leaves segment ``s``; returns its size."""
        e = self.segs.get(s.id)
        if e is None:
            e = self.segs[s.id] = [bytearray(s.gone), s.live, s.bytes]
        e[0][i >> 3] |= 1 << (i & 7)
        e[1] -= 1
        size = s.sizes[i]
        e[2] -= size
        return size

    def write(self, dc: Any, segs: Dict[int, _Seg]) -> None:
        for sid, (g, live, _b) in self.segs.items():
            if live <= 0:
                dc.execute("DELETE FROM segments WHERE id = ?", (sid,))
                if segs[sid].marked:
                    dc.execute("DELETE FROM segments_gone WHERE id = ?", (sid,))
            else:
                dc.execute("INSERT OR REPLACE INTO segments_gone(id, gone) VALUES (?, ?)", (sid, bytes(g)))


# ---------------------------------------------------------------- records
@dataclasses.dataclass(slots=True)
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


_new_packet = object.__new__
_PLAIN_TAIL = (None, None)


def _encode_extra(f: Tuple[Any, ...]) -> Tuple[Any, Any]:
    return (json.dumps(f[11], separators=(",", ":")) if f[11] else None,
            # a PayloadRef, or the dict a segment keeps it as (a segment row moving to queue/dead)
            json.dumps(f[12] if isinstance(f[12], dict) else dataclasses.asdict(f[12])) if f[12] else None)


_FIELD_NAMES = ("idempotency_key", "stream_id", "seq", "epoch", "kind", "schema", "content_type", "stamp_ns",
                "frame_id", "packet_id", "payload", "meta", "payload_ref")
_PACKET_FIELDS = operator.attrgetter(*_FIELD_NAMES)
_DICT_FIELDS = operator.itemgetter(*_FIELD_NAMES)


def _fields_of(pk: List[Packet]) -> List[Tuple[Any, ...]]:
    """Each packet's fields (_FIELD_NAMES order) as a tuple. Read from the instance dicts
    (a dataclass keeps every field there; a third faster than getattr per field), by
    attribute if one is not."""
    try:
        return list(map(_DICT_FIELDS, map(vars, pk)))
    except (KeyError, TypeError):
        return list(map(_PACKET_FIELDS, pk))


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


def _mp_default(o: Any) -> Any:
    if isinstance(o, PayloadRef):
        return dataclasses.asdict(o)
    raise TypeError(f"cannot store a {type(o).__name__} in a packet")


def _seg_packet(f: Sequence[Any]) -> Packet:
    """A Packet from its fields as a segment stores them (_PACKET_FIELDS order)."""
    p = _new_packet(Packet)
    p.__dict__ = {"stream_id": f[1], "seq": f[2], "kind": f[4], "payload": f[10], "epoch": f[3],
                  "stamp_ns": f[7], "frame_id": f[8], "schema": f[5], "content_type": f[6], "packet_id": f[9],
                  "idempotency_key": f[0], "payload_ref": PayloadRef(**f[12]) if f[12] else None,
                  "meta": dict(f[11]) if f[11] else {}}
    return p


class OwnerLock:
    """The one-owner lock of a store file: ``flock`` on the sidecar ``<path>.lock``.

    The kernel releases it when the holder exits, however it exits (SIGKILL included), so a
    crashed run never leaves the file locked. The holder's PID is written into the sidecar
    so that a second opener can say who holds it. The sidecar file itself is left in place
    (deleting it would let two openers lock two different inodes).
    """

    def __init__(self, path: str) -> None:
        import fcntl

        self.path = path + ".lock"
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreWriteError(f"durable store {path}: cannot create its lock file {self.path} "
                                  f"({exc.strerror or exc})", "io_error") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise StoreLockedError(
                f"durable store {path} is in use by {who} (lock {self.path}); a queue file has one "
                "owner: stop that run, or give this queue another path", holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: Optional[int] = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)   # closing the only descriptor releases the flock


def _read_pid(fd: int) -> Optional[int]:
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return None


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
    """A durable, bounded, at-least-once queue in one SQLite file. Thread-safe.

    One consumer per file (the queue node): leases live in memory. The consumer opens it
    with ``owner=True``, which takes :class:`OwnerLock`; a second owner gets
    :class:`StoreLockedError` naming the holder's PID. Other processes (the ``schnitzel
    queue`` CLI) open the same file without ownership; a change they commit is noticed
    (``PRAGMA data_version``) and the in-memory view is read again.
    """

    def __init__(self, path: str, *, synchronous: str = "FULL", max_rows: int = 0, max_bytes: int = 0,
                 overflow: str = "reject_new", ledger_retention_s: float = 7 * 24 * 3600,
                 ledger_max_rows: int = 1_000_000,
                 clock_ns: Callable[[], int] = time.time_ns, owner: bool = False) -> None:
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
        self._owner = OwnerLock(self.path) if owner else None
        try:
            self.engine = create_engine(f"sqlite:///{self.path}", poolclass=StaticPool,
                                        connect_args={"check_same_thread": False, "timeout": 30})
        except Exception:
            self._release_owner()
            raise

        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves

        self._begin_sql: Optional[str] = None
        self._leases: Dict[int, int] = {}
        # In-memory view of the segments (ids, which rows are gone, sizes, key hashes; not
        # the packets), read at open and whenever another connection changed the file.
        self._segs: Dict[int, _Seg] = {}
        self._seg_ids: List[int] = []        # ascending
        self._known = _KnownKeys()           # queued keys and (ledger on) keys delivered in the window
        self._cursor = 0                     # no ready segment row has a smaller id
        self._loose_done = False             # no ready loose row left (besides leased ones)
        self._loose_wake_ns: Optional[int] = None  # a loose row becomes ready then (nack delay)
        self._data_version: Optional[int] = None   # PRAGMA data_version: other writers
        # Decoded packets of the last few segments read (cold rows: a backlog, or beyond hot_max)
        self._decoded: "collections.OrderedDict[int, Tuple[Any, ...]]" = collections.OrderedDict()
        # The packets this process enqueued, kept per segment (up to hot_max rows) with each
        # row's sinks, so that leasing them needs no read and no decoding; other segments are
        # decoded on demand. Row objects are made when leased and not kept: long-lived objects
        # made per packet are walked again and again by the garbage collector.
        self.hot_max = 10_000
        self._hot: Dict[int, Tuple[List[Packet], Any]] = {}   # id -> (packets, sinks tuple | per row)
        self._hot_n = 0

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn: Any) -> None:
            # explicit transactions only (writes: IMMEDIATE, snapshots: deferred); plain
            # statements outside them run in autocommit and take no write lock
            if self._begin_sql:  # straight to the DB-API connection: cheaper, same transaction
                conn.connection.driver_connection.execute(self._begin_sql)

        try:
            self._conn = self.engine.connect()
            self._dc = self._conn.connection.driver_connection  # StaticPool: one connection
            self._open(existed)
        except StoreError:
            self.engine.dispose()
            self._release_owner()
            raise
        except (SQLAlchemyError, sqlite3.Error) as exc:
            self.engine.dispose()
            self._release_owner()
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
        # Debian's and many other builds turn secure_delete on: freeing a confirmed segment would
        # then write its overflow pages again, full of zeros (8 of a 100-row commit's 19 WAL
        # frames). FAST still clears deleted content on the pages a commit writes anyway.
        c.exec_driver_sql("PRAGMA secure_delete=FAST")
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
        self._read(lambda c: self._reload(c.connection.driver_connection))

    @staticmethod
    def _end(c: Any) -> None:
        if c.in_transaction():
            c.rollback()

    def _load_counters(self) -> Dict[str, int]:
        self._end(self._conn)
        rows = self._conn.execute(select(counters_t.c.name, counters_t.c.value)).all()
        self._end(self._conn)
        return {n: int(v) for n, v in rows}

    def _load_counters_locked(self) -> Dict[str, int]:
        with self._lock:
            return self._load_counters()

    def _bump(self, dc: Any, deltas: Dict[str, int]) -> None:
        items = [(n, v) for n, v in deltas.items() if v]
        if items:  # one statement for every counter the commit changes
            names = tuple(n for n, _ in items)
            sql = _BUMP_SQL.get(names)
            if sql is None:
                sql = _BUMP_SQL[names] = (
                    "UPDATE counters SET value = value + CASE name "
                    + " ".join("WHEN ? THEN ?" for _ in names) + f" END WHERE name IN ({','.join('?' * len(names))})")
            dc.execute(sql, (*itertools.chain.from_iterable(items), *names))

    def _apply(self, deltas: Dict[str, int]) -> None:
        for n, v in deltas.items():
            self._counters[n] = self._counters.get(n, 0) + v

    # ------------------------------------------------------------ in-memory view
    def _reload(self, dc: Any) -> None:
        """Read the segments' bookkeeping (not their packets) and every queued key's hash;
        forget rows kept in memory. At open, and after another connection wrote."""
        self._data_version = dc.execute("PRAGMA data_version").fetchone()[0]
        segs: Dict[int, _Seg] = {}
        for sid, enq_ns, n, sinks, sizes, hashes, gone in dc.execute(_SEGMENTS_READ_SQL):
            segs[sid] = _Seg(sid, enq_ns, n, sinks, sizes, hashes, gone)
        self._segs, self._seg_ids = segs, list(segs)
        self._hot = {}
        self._hot_n = 0
        self._decoded.clear()
        self._cursor = 0
        self._loose_done = False
        self._loose_wake_ns = None
        self._known = self._build_known(dc)

    def _build_known(self, dc: Any) -> "_KnownKeys":
        """The keys an enqueue refuses, from the file: the ledger (when on), the segments'
        live rows and the loose rows."""
        known = _KnownKeys()
        ledger = b"".join(r[0] for r in dc.execute("SELECT hashes FROM ledger_blocks ORDER BY id")) \
            if self.ledger_on else b""
        loose = hash_batch([r[0] for r in dc.execute("SELECT key FROM queue")])[1]
        np = known._np
        if np is not None:
            parts = [_hash_array(np, ledger), _hash_array(np, loose)]
            parts += [s.live_hashes(np) for s in self._segs.values()]
            known.load(np.concatenate(parts))
        else:
            hs = _split_hashes(ledger) + _split_hashes(loose)
            for s in self._segs.values():
                hs.extend(h for i, h in enumerate(_split_hashes(s.hashes)) if s.has(i))
            known.load(hs)
        return known

    def _refresh(self) -> None:
        """Read the in-memory view again if another connection committed a change (caller holds the lock)."""
        try:
            dv = self._dc.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise _classify(exc, self.path, "read") from None
        if dv != self._data_version:
            self._read(lambda c: self._reload(c.connection.driver_connection))

    def _sync(self, dc: Any) -> None:
        """Inside a write transaction: make sure the in-memory view matches the file."""
        if dc.execute("PRAGMA data_version").fetchone()[0] != self._data_version:
            self._reload(dc)

    def _seg_data(self, s: "_Seg", dc: Any = None) -> Tuple[Any, Any]:
        """Segment ``s`` decoded: (fields of each row, sinks of each row or None), read once."""
        got = self._decoded.get(s.id)
        if got is None:
            q = "SELECT data FROM segments WHERE id = ?"
            row = (dc.execute(q, (s.id,)).fetchone() if dc is not None else
                   self._read(lambda c: c.connection.driver_connection.execute(q, (s.id,)).fetchone()))
            if row is None:
                raise StoreCorruptError(f"durable store {self.path}: segment {s.id} is missing from the file")
            got = msgpack.unpackb(row[0], use_list=False, strict_map_key=False)
            self._decoded[s.id] = got
            if len(self._decoded) > 8:
                self._decoded.popitem(last=False)
        else:
            self._decoded.move_to_end(s.id)
        return got

    def _row_sinks(self, s: "_Seg", i: int, dc: Any = None) -> str:
        if s.sinks is not None:
            return s.sinks
        hot = self._hot.get(s.id)
        if hot is not None:
            return ",".join(hot[1][i])
        return self._seg_data(s, dc)[1][i]

    def _seg_rows(self, s: "_Seg", idx: List[int]) -> List[Row]:
        """Rows ``idx`` of segment ``s`` (from the packets in memory, or decoded)."""
        base, enq, sizes = s.id << SEG_BITS, s.enq_ns, s.sizes
        hot = self._hot.get(s.id)
        if hot is None:
            return [self._seg_row(base | i, s, i) for i in idx]
        pks, st = hot
        if isinstance(st, tuple):
            return [Row(base | i, pks[i].idempotency_key, pks[i], st, 0, enq, sizes[i]) for i in idx]
        return [Row(base | i, pks[i].idempotency_key, pks[i], st[i], 0, enq, sizes[i]) for i in idx]

    def _seg_row(self, rid: int, s: "_Seg", i: int) -> Row:
        if s.id in self._hot:
            return self._seg_rows(s, [i])[0]
        fields, sinks = self._seg_data(s)
        st = s.sinks if sinks is None else sinks[i]
        return Row(rid, fields[i][0], _seg_packet(fields[i]), tuple(st.split(",")), 0, s.enq_ns, s.sizes[i])

    def _iter_seg_rows(self, ed: Optional["_Edit"] = None, start: int = 0) -> Iterator[Tuple[int, "_Seg", int]]:
        """(id, segment, index) of every segment row still queued with id >= start, oldest first."""
        ids = self._seg_ids
        k = bisect.bisect_left(ids, start >> SEG_BITS)
        segs = self._segs
        while k < len(ids):
            s = segs[ids[k]]
            base = s.id << SEG_BITS
            g = s.gone if ed is None or s.id not in ed.segs else ed.segs[s.id][0]
            for i in range(max(0, start - base), s.n):
                if not g[i >> 3] >> (i & 7) & 1:
                    yield base | i, s, i
            k += 1

    # ------------------------------------------------------------ transactions
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

    def _change(self, what: str, fn: Callable[[Any, "_Edit", Dict[str, int]], Any]) -> Any:
        """One IMMEDIATE write transaction: ``fn(dbapi_conn, edit, counter_deltas)``; the
        segments' bookkeeping and the counters are written with it and applied in memory
        only after the commit. SQLite errors reach the caller as StoreError.

        It runs on the DB-API connection of the store's SQLAlchemy connection, begun and
        committed there: SQLAlchemy's per-transaction and per-statement cost was a large
        share of a small batch."""
        with self._lock:
            self._end(self._conn)   # SQLAlchemy holds no transaction of its own now
            dc = self._dc
            try:
                dc.execute("BEGIN IMMEDIATE")
                try:
                    self._sync(dc)
                    ed = _Edit()
                    deltas: Dict[str, int] = {}
                    out = fn(dc, ed, deltas)
                    ed.write(dc, self._segs)
                    self._bump(dc, deltas)
                    dc.execute("COMMIT")
                except BaseException:
                    if dc.in_transaction:
                        try:
                            dc.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass
                    raise
            except StoreError:
                raise
            except (SQLAlchemyError, sqlite3.Error) as exc:
                err = _classify(exc, self.path, what)
                # a failed transaction changed nothing: reload counters from the file
                try:
                    self._counters = self._load_counters()
                except Exception:  # noqa: BLE001
                    pass
                raise err from None
            self._apply(deltas)
            self._commit_edit(ed)
            return out

    def _commit_edit(self, ed: "_Edit") -> None:
        segs, ids, hot = self._segs, self._seg_ids, self._hot
        for sid, (g, live, nbytes) in ed.segs.items():
            s = segs.get(sid)
            if s is None:
                continue
            if live <= 0:
                del segs[sid]
                j = bisect.bisect_left(ids, sid)
                if j < len(ids) and ids[j] == sid:
                    del ids[j]
                self._decoded.pop(sid, None)
                h = hot.pop(sid, None)
                if h is not None:
                    self._hot_n -= len(h[0])
            else:
                s.gone, s.live, s.bytes, s.marked = g, live, nbytes, True
        leases = self._leases
        for rid in ed.gone_ids:
            leases.pop(rid, None)
        known = self._known
        if ed.gone_keys:
            known.discard(ed.gone_keys)
        if ed.added_keys:
            known.add(ed.added_keys)
        for s, pks, s_list, hs in ed.new:
            segs[s.id] = s
            ids.append(s.id)
            known.add(hs)
            if pks is None or self._hot_n + s.n > self.hot_max:
                continue  # beyond the in-memory bound: decoded from the file when leased
            if s_list is None:
                hot[s.id] = (pks, tuple(s.sinks.split(",")))
            else:
                tuples: Dict[str, Tuple[str, ...]] = {x: tuple(x.split(",")) for x in set(s_list)}
                hot[s.id] = (pks, [tuples[x] for x in s_list])
            self._hot_n += s.n
        if ed.loose:
            self._loose_done = False
        if len(known.removed) > max(known.MERGE_AT, len(known) // 2):
            self._known = self._read(lambda c: self._build_known(c.connection.driver_connection))

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
        arrived within the same few milliseconds share one fsync. The new rows are one
        segment (one SQLite row holding the batch), so a batch costs one insert however
        many packets it holds.
        """
        now = self.clock_ns()
        pk: List[Packet] = packets if isinstance(packets, list) else list(packets)
        s_list: Optional[List[str]] = None       # per packet, when routed per packet
        uniform = ANY_SINK
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
            if len(memo) <= 1:
                uniform, s_list = (s_list[0] if s_list else ANY_SINK), None
        elif sinks:
            uniform = ",".join(sorted(set(sinks)))
        # every field of every packet in one C call each; msgpack packs them as they are
        fields = _fields_of(pk)
        # one list per sink: the queue node submits its acks one row at a time
        by_sink: Dict[str, List[int]] = {}
        for ids, sink in acks:
            got = by_sink.get(sink)
            if got is None:
                by_sink[sink] = list(map(int, ids))
            else:
                got.extend(map(int, ids))
        ack_list = [(list(dict.fromkeys(ids)), sink) for sink, ids in by_sink.items() if ids]
        if not fields and not ack_list:
            return EnqueueResult(), AckResult()
        hs, hblob = hash_batch([f[0] for f in fields])
        sizes = [len(f[10]) + 256 for f in fields]

        def fn(dc: Any, ed: _Edit, deltas: Dict[str, int]) -> Tuple[EnqueueResult, AckResult]:
            ares = AckResult()
            for ids, sink in ack_list:
                self._ack_in(dc, ed, ids, sink, now, ares, deltas)
            if ed.ledger_n and self.ledger_on:  # the delivered keys of this commit: one ledger block
                dc.execute("INSERT INTO ledger_blocks(delivered_ns, n, hashes) VALUES (?, ?, ?)",
                           (now, ed.ledger_n, b"".join(ed.ledger_blob)))
            res = EnqueueResult()
            if fields:
                keep = self._fresh(hs, hblob)
                res.duplicates = len(fields) - len(keep)
                if keep and (self.max_rows or self.max_bytes):
                    keep = [keep[j] for j in self._make_room(dc, ed, [sizes[i] for i in keep], res, deltas)]
                if len(keep) == len(fields):
                    self._append(dc, ed, fields, sizes, uniform, s_list, pk, hs, hblob, now)
                elif keep:
                    self._append(dc, ed, [fields[i] for i in keep], [sizes[i] for i in keep], uniform,
                                 None if s_list is None else [s_list[i] for i in keep], [pk[i] for i in keep],
                                 [hs[i] for i in keep], b"".join(hblob[i << 4:(i + 1) << 4] for i in keep), now)
                if keep:
                    n = len(keep)
                    added = sum(sizes) if n == len(sizes) else sum(sizes[i] for i in keep)
                    for k, v in (("depth", n), ("bytes", added), ("accepted", n)):
                        deltas[k] = deltas.get(k, 0) + v
                    res.accepted = n
                if res.duplicates:
                    deltas["duplicates"] = deltas.get("duplicates", 0) + res.duplicates
                if res.rejected:
                    deltas["rejected_full"] = deltas.get("rejected_full", 0) + res.rejected
            return res, ares

        res, ares = self._change("write", fn)
        if ares.done and time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + self.prune_every_s
            try:
                self.prune_ledger()
            except StoreError:
                pass  # retried at the next interval
        return res, ares

    def _fresh(self, hs: List[str], blob: Optional[bytes] = None) -> List[int]:
        """Indexes of the keys to queue: not delivered within the window (ledger), not queued
        already, first of their batch."""
        known = self._known.contains(hs, blob)
        if not any(known) and len(set(hs)) == len(hs):
            return list(range(len(hs)))   # the common case: every key is new
        seen: set = set()
        keep = []
        for i, h in enumerate(hs):
            if known[i] or h in seen:
                continue
            seen.add(h)
            keep.append(i)
        return keep

    def _append(self, dc: Any, ed: "_Edit", fields: List[Tuple[Any, ...]], sizes: List[int], uniform: str,
                s_list: Optional[List[str]], pks: Optional[List[Packet]], hs: List[str],
                hblob: bytes, now: int) -> None:
        """Append rows (packet fields, sizes, sinks: ``uniform`` for all or ``s_list`` per row)
        as new segments of up to SEG_ROWS rows at the tail."""
        for off in range(0, len(fields), SEG_ROWS):
            end = off + SEG_ROWS
            part_s = None if s_list is None else s_list[off:end]
            n = min(len(fields), end) - off
            sz = array.array("I", sizes[off:end])
            s = _Seg(0, now, n, uniform if part_s is None else None, sz, hblob[off << 4:end << 4], None)
            data = msgpack.packb((fields[off:end] if n < len(fields) else fields, part_s), default=_mp_default)
            s.id = dc.execute(_SEGMENT_INSERT_SQL, (now, n, s.sinks, s.sizes_blob(), s.hashes, data)).lastrowid
            ed.new.append((s, None if pks is None else pks[off:end], part_s, hs[off:end]))

    def _ack_in(self, dc: Any, ed: "_Edit", ids: List[int], sink: str, now: int, res: AckResult,
                deltas: Dict[str, int]) -> None:
        segs = self._segs
        any_sink = sink == ANY_SINK
        ledger_on = self.ledger_on
        done_n = done_bytes = 0
        rest: List[int] = []
        fan_out: List[int] = []
        lo, hi = min(ids), max(ids)
        by_seg: Dict[int, List[int]]
        if lo >> SEG_BITS == hi >> SEG_BITS:   # one segment (the usual case): no grouping
            by_seg = {lo >> SEG_BITS: ids}
        else:
            by_seg = {}
            for rid in ids:
                g = by_seg.get(rid >> SEG_BITS)
                if g is None:
                    by_seg[rid >> SEG_BITS] = [rid]
                else:
                    g.append(rid)
        for sid, rids in by_seg.items():
            s = segs.get(sid)
            if s is None:
                rest.extend(rids)   # loose rows, dead ones or none at all
                continue
            base = sid << SEG_BITS
            if (len(rids) == s.live == s.n and sid not in ed.segs and max(rids) - base < s.n
                    and (any_sink or s.sinks == ANY_SINK or s.sinks == sink)):
                # the whole segment is confirmed (the common case): no per-row work
                ed.segs[sid] = [bytearray(b"\xff" * len(s.gone)), 0, 0]
                done_n += s.n
                done_bytes += s.bytes
                ed.gone_ids.extend(rids)
                if ledger_on:   # the keys stay known: queued before, delivered now
                    ed.ledger_n += s.n
                    ed.ledger_blob.append(s.hashes)
                else:
                    ed.gone_keys.extend(_split_hashes(s.hashes))
                continue
            for rid in rids:
                i = rid - base
                if i >= s.n or not ed.has(s, i):
                    rest.append(rid)   # moved to the loose rows, dead-lettered or gone
                    continue
                if not any_sink:
                    st = self._row_sinks(s, i, dc)
                    if st != ANY_SINK and st != sink:
                        fan_out.append(rid)   # other sinks still have to confirm: per-row state
                        continue
                done_bytes += ed.take(s, i)
                done_n += 1
                ed.gone_ids.append(rid)
                if ledger_on:
                    ed.ledger_n += 1
                    ed.ledger_blob.append(s.hashes[i << 4:(i + 1) << 4])
                else:
                    ed.gone_keys.append(s.hashes[i << 4:(i + 1) << 4].hex())
        if fan_out:
            self._materialize(dc, ed, fan_out)
            rest.extend(fan_out)
        if rest:
            n, b = self._ack_loose(dc, ed, rest, sink, now, res, deltas)
            done_n += n
            done_bytes += b
        if done_n:
            for k, v in (("depth", -done_n), ("bytes", -done_bytes), ("delivered", done_n)):
                deltas[k] = deltas.get(k, 0) + v
        res.done += done_n

    def _ack_loose(self, dc: Any, ed: "_Edit", ids: List[int], sink: str, now: int, res: AckResult,
                   deltas: Dict[str, int]) -> Tuple[int, int]:
        """Acks of rows in the ``queue`` table (nacked, fan-out, migrated); returns (done, bytes)."""
        done_n = done_bytes = 0
        done_keys: List[str] = []
        rest: List[int] = []
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            marks = ",".join("?" * len(chunk))
            # rows this sink completes (single-sink or any-sink rows), set-based
            cond = "" if sink == ANY_SINK else " AND (sinks = '*' OR sinks = ?)"
            extra = () if sink == ANY_SINK else (sink,)
            got = dc.execute(f"DELETE FROM queue WHERE id IN ({marks}){cond} RETURNING id, size, key",
                             (*chunk, *extra)).fetchall()
            done_n += len(got)
            done_bytes += sum(g[1] for g in got)
            done_keys.extend(g[2] for g in got)
            ed.gone_ids.extend(g[0] for g in got)
            gone = {g[0] for g in got}
            rest.extend(x for x in chunk if x not in gone)
        partial: List[Tuple[str, int]] = []
        found_ids = set()
        if rest:  # fan-out rows (several sinks) and rows not in the queue
            found = []
            for i in range(0, len(rest), 900):
                chunk = rest[i:i + 900]
                q = f"SELECT id, key, sinks, size FROM queue WHERE id IN ({','.join('?' * len(chunk))})"
                found.extend(dc.execute(q, tuple(chunk)).fetchall())
            done: List[Tuple[int, str, int]] = []
            for rid, key, sinks, size in found:
                found_ids.add(rid)
                left = [s for s in sinks.split(",") if s != sink]
                if not left:
                    done.append((rid, key, size))
                else:
                    partial.append((",".join(left), rid))
            if done:
                dc.executemany("DELETE FROM queue WHERE id = ?", [(d[0],) for d in done])
                done_n += len(done)
                done_bytes += sum(d[2] for d in done)
                done_keys.extend(d[1] for d in done)
                ed.gone_ids.extend(d[0] for d in done)
            if partial:
                dc.executemany("UPDATE queue SET sinks = ? WHERE id = ?", partial)
        if done_keys:
            hs, blob = hash_batch(done_keys)
            if self.ledger_on:
                ed.ledger_n += len(hs)
                ed.ledger_blob.append(blob)
            else:
                ed.gone_keys.extend(hs)
        res.partial += len(partial)
        missing = [i for i in rest if i not in found_ids]
        if missing:  # maybe dead-lettered meanwhile: a later success clears it from the DLQ
            res.unknown += self._ack_dead(dc, ed, missing, sink, deltas)
        return done_n, done_bytes

    def _ack_dead(self, dc: Any, ed: "_Edit", ids: List[int], sink: str, deltas: Dict[str, int]) -> int:
        unknown = 0
        for rid in ids:
            r = dc.execute("SELECT key, sinks FROM dead WHERE id = ?", (rid,)).fetchone()
            if r is None:
                unknown += 1
                continue
            left = [s for s in r[1].split(",") if s not in (sink, ANY_SINK)] if sink != ANY_SINK else []
            if left:
                dc.execute("UPDATE dead SET sinks = ? WHERE id = ?", (",".join(left), rid))
            else:
                dc.execute("DELETE FROM dead WHERE id = ?", (rid,))
                if self.ledger_on:  # a dead row's key was forgotten: it is known again
                    h = key_hash(r[0])
                    ed.ledger_n += 1
                    ed.ledger_blob.append(bytes.fromhex(h))
                    ed.added_keys.append(h)
                deltas["dead"] = deltas.get("dead", 0) - 1
                deltas["delivered"] = deltas.get("delivered", 0) + 1
        return unknown

    def _materialize(self, dc: Any, ed: "_Edit", ids: Iterable[int]) -> int:
        """Move segment rows into the ``queue`` table (keeping their ids) before anything
        changes them one by one: attempts, next-attempt time, the sinks still to confirm."""
        ins = []
        for rid in ids:
            s = self._segs.get(rid >> SEG_BITS)
            i = rid & _SEG_MASK
            if s is None or i >= s.n or not ed.has(s, i):
                continue
            fields, sinks = self._seg_data(s, dc)
            f = fields[i]
            ins.append((rid,) + tuple(f[:11]) + _encode_extra(f) +
                       (s.sizes[i], s.sinks if sinks is None else sinks[i], s.enq_ns, 0, None))
            ed.take(s, i)
            ed.moved_ids.append(rid)
        if ins:
            dc.executemany(_LOOSE_INSERT_SQL, ins)
            ed.loose = True
        return len(ins)

    def _make_room(self, dc: Any, ed: "_Edit", sizes: List[int], res: EnqueueResult,
                   deltas: Dict[str, int]) -> List[int]:
        """Capacity: the indexes of the new rows (``sizes``) that fit (after dropping the
        oldest rows with ``drop_oldest``); every refusal and drop is counted."""
        depth = self._counters.get("depth", 0) + deltas.get("depth", 0)
        nbytes = self._counters.get("bytes", 0) + deltas.get("bytes", 0)
        need_rows, need_bytes = len(sizes), sum(sizes)

        def over(d: int, b: int) -> bool:
            return bool((self.max_rows and d > self.max_rows) or (self.max_bytes and b > self.max_bytes))

        def fit(d: int, b: int) -> List[int]:
            keep: List[int] = []
            for j, size in enumerate(sizes):
                if over(d + 1, b + size):
                    res.rejected += 1
                    continue
                keep.append(j)
                d += 1
                b += size
            return keep

        if not over(depth + need_rows, nbytes + need_bytes):
            return list(range(len(sizes)))
        if self.overflow == "reject_new":
            return fit(depth, nbytes)
        # drop_oldest: drop rows that are not leased from the head until the batch fits
        d, b = depth + need_rows, nbytes + need_bytes
        loose_v: List[Tuple[int, int, str]] = []
        seg_v: List[Tuple[int, _Seg, int]] = []
        cur = dc.execute("SELECT id, size, key FROM queue ORDER BY id")
        heads = heapq.merge(((r[0], 0, r) for r in cur),
                            ((rid, 1, (rid, s, i)) for rid, s, i in self._iter_seg_rows(ed)))
        leases = self._leases
        for rid, kind, x in heads:
            if not over(d, b):
                break
            if rid in leases:
                continue
            if kind == 0:
                loose_v.append(x)
                size = x[1]
            else:
                seg_v.append(x)
                size = x[1].sizes[x[2]]
            d -= 1
            b -= size
        cur.close()
        dropped = dropped_bytes = 0
        for rid, s, i in seg_v:
            dropped_bytes += ed.take(s, i)
            ed.gone_ids.append(rid)
            ed.gone_keys.append(s.hashes[i << 4:(i + 1) << 4].hex())
        if loose_v:
            dc.executemany("DELETE FROM queue WHERE id = ?", [(v[0],) for v in loose_v])
            dropped_bytes += sum(v[1] for v in loose_v)
            ed.gone_ids.extend(v[0] for v in loose_v)
            ed.gone_keys.extend(key_hashes([v[2] for v in loose_v]))
        dropped = len(seg_v) + len(loose_v)
        if dropped:
            for k, v in (("depth", -dropped), ("bytes", -dropped_bytes), ("dropped_overflow", dropped)):
                deltas[k] = deltas.get(k, 0) + v
            res.dropped = dropped
        if over(d, b):  # the batch alone exceeds capacity: refuse what does not fit
            return fit(depth - dropped, nbytes - dropped_bytes)
        return list(range(len(sizes)))

    # ------------------------------------------------------------ lease/ack/nack
    def lease(self, n: int, lease_s: float = 30.0, wait: bool = True) -> List[Row]:
        """Take up to ``n`` ready rows, oldest first; unless acked or nacked they are offered
        again after ``lease_s``.

        Leases live in memory (one consumer per store file: the queue node): taking one
        costs no commit, and a restart makes every unacknowledged row ready at once.
        ``wait=False`` returns [] at once while a commit holds the store (its fsync can take
        100 ms on an SD card): the queue node's executor, which also takes the packets off
        DDS, must not wait for it.
        """
        if not self._lock.acquire(blocking=wait):
            return []
        try:
            return self._lease(n, lease_s)
        finally:
            self._lock.release()

    def _lease(self, n: int, lease_s: float) -> List[Row]:
        now = self.clock_ns()
        until = now + int(lease_s * 1e9)
        # the caller holds the lock
        leases = self._leases
        if leases:
            expired = [i for i, t in leases.items() if t <= now]
            if expired:
                for i in expired:
                    del leases[i]
                self._cursor = min(self._cursor, min(expired))
                self._loose_done = False
        self._refresh()
        if self._loose_done and self._loose_wake_ns is not None and now >= self._loose_wake_ns:
            self._loose_done = False
        loose: List[Any] = []
        if not self._loose_done:
            last = 0
            while len(loose) < n:
                want = n - len(loose) + len(leases)
                # plain DB-API rows (SQLAlchemy's Row processing cost more than the query)
                batch = self._read(lambda c: c.connection.driver_connection.execute(
                    _LOOSE_LEASE_SQL, (last, now, want)).fetchall())
                loose.extend(r for r in batch if r[0] not in leases)
                if len(batch) < want:
                    # drained: remember when a delayed row gets ready
                    wake = self._read(lambda c: c.connection.driver_connection.execute(
                        "SELECT min(avail_ns) FROM queue WHERE avail_ns > ?", (now,)).fetchone())
                    self._loose_wake_ns = wake[0] if wake and wake[0] is not None else None
                    self._loose_done = True
                    break
                last = batch[-1][0]
        # segment rows from the cursor on, skipping gone and leased ones
        seg_rows: List[Row] = []
        ids, segs, cursor = self._seg_ids, self._segs, self._cursor
        k = bisect.bisect_left(ids, cursor >> SEG_BITS)
        need = n
        while k < len(ids) and need > 0:
            s = segs[ids[k]]
            base, g, full = s.id << SEG_BITS, s.gone, s.live == s.n
            lo = max(0, cursor - base)
            while lo < s.n and need > 0:
                hi = min(s.n, lo + max(2 * need, 64))   # a window: segments can be large
                if full and not leases:
                    idx = list(range(lo, hi))
                elif full:
                    idx = [i for i in range(lo, hi) if base | i not in leases]
                else:
                    idx = [i for i in range(lo, hi) if not g[i >> 3] >> (i & 7) & 1 and base | i not in leases]
                del idx[need:]
                if idx:
                    seg_rows.extend(self._seg_rows(s, idx))
                    need -= len(idx)
                lo = hi
            k += 1
        last_seg = seg_rows[-1].id if seg_rows else None   # seg_rows holds at most n rows
        if loose:  # oldest first across loose and segment rows
            out = []
            last_seg = None
            n_loose = 0
            for rid, tag, r in itertools.islice(heapq.merge(
                    ((r[0], 0, r) for r in loose), ((r.id, 1, r) for r in seg_rows),
                    key=operator.itemgetter(0)), n):
                if tag:
                    out.append(r)
                    last_seg = rid
                else:
                    out.append(_row(r))
                    n_loose += 1
            if n_loose < len(loose):
                self._loose_done = False   # ready loose rows were left for the next lease
        else:
            out = seg_rows
        if last_seg is not None:
            self._cursor = last_seg + 1
        leases.update(dict.fromkeys([r.id for r in out], until))
        return out

    @property
    def leased(self) -> int:
        """Rows leased and not expired. Takes no lock (the queue node asks at every poll and
        must not wait for a commit's fsync): a copy of the values is taken in one C call."""
        now = self.clock_ns()
        return sum(1 for t in list(self._leases.values()) if t > now)

    def release(self, row_ids: Iterable[int]) -> None:
        """Give leased rows back without counting an attempt (ready again at once)."""
        with self._lock:
            for i in row_ids:
                i = int(i)
                if self._leases.pop(i, None) is not None:
                    self._cursor = min(self._cursor, i)
                    self._loose_done = False

    def nack(self, row_ids: Iterable[int], reason: str = "", delay_s: float = 0.0,
             max_attempts: int = 0) -> int:
        """A delivery attempt failed (retryable): attempts += 1, ready again after ``delay_s``.
        Rows reaching ``max_attempts`` (> 0) are dead-lettered. Returns rows dead-lettered."""
        ids = [int(i) for i in row_ids]
        if not ids:
            return 0
        now = self.clock_ns()
        until = now + int(max(0.0, delay_s) * 1e9)

        def fn(dc: Any, ed: _Edit, deltas: Dict[str, int]) -> int:
            self._materialize(dc, ed, ids)
            dc.executemany(
                "UPDATE queue SET attempts = attempts + 1, last_error = ?, state = 0, avail_ns = ? WHERE id = ?",
                [(reason[:2000], until, i) for i in ids])
            deltas["nacks"] = len(ids)
            ed.loose = True
            if max_attempts > 0:
                q = f"SELECT id FROM queue WHERE attempts >= ? AND id IN ({','.join('?' * len(ids))})"
                over = [r[0] for r in dc.execute(q, (max_attempts, *ids))]
                if over:
                    return self._dead_letter(dc, ed, over, f"gave up after {max_attempts} attempts: {reason}",
                                             now, deltas)
            return 0

        n = self._change("nack", fn)
        self.release(ids)
        return n

    def extend(self, row_ids: Iterable[int], lease_s: float, reason: str = "") -> None:
        """Keep rows leased for ``lease_s`` more (a sink is still retrying them), counting an attempt."""
        ids = [int(i) for i in row_ids]
        if not ids:
            return
        until = self.clock_ns() + int(lease_s * 1e9)

        def fn(dc: Any, ed: _Edit, deltas: Dict[str, int]) -> None:
            self._materialize(dc, ed, ids)
            dc.executemany("UPDATE queue SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                           [(reason[:2000], i) for i in ids])

        self._change("extend lease", fn)
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

        def fn(dc: Any, ed: _Edit, deltas: Dict[str, int]) -> int:
            # attempts are counted on loose rows only: a row in a segment has none yet
            q = f"SELECT id FROM queue WHERE attempts >= ? AND id IN ({','.join('?' * len(ids))})"
            over = [r[0] for r in dc.execute(q, (max_attempts, *ids))]
            if not over:
                return 0
            return self._dead_letter(dc, ed, over, f"gave up after {max_attempts} attempts: {reason}", now, deltas)

        n = self._change("dead-letter", fn)
        if n:
            self.release(ids)
        return n

    def dead_letter(self, row_ids: Iterable[int], reason: str) -> int:
        """Move rows to the dead-letter table with ``reason`` (e.g. the backend's 400 answer)."""
        ids = [int(i) for i in row_ids]
        if not ids:
            return 0
        now = self.clock_ns()
        n = self._change("dead-letter", lambda dc, ed, deltas: self._dead_letter(dc, ed, ids, reason, now, deltas))
        self.release(ids)
        return n

    def _dead_letter(self, dc: Any, ed: "_Edit", ids: List[int], reason: str, now: int,
                     deltas: Dict[str, int]) -> int:
        self._materialize(dc, ed, ids)
        marks = ",".join("?" * len(ids))
        got = dc.execute(f"SELECT id, key, size FROM queue WHERE id IN ({marks})", tuple(ids)).fetchall()
        if not got:
            return 0
        dc.execute(
            f"INSERT OR REPLACE INTO dead ({_COPY_COLS}, reason, dead_ns) SELECT {_COPY_COLS}, ?, ? "
            f"FROM queue WHERE id IN ({marks})", (reason[:2000], now, *ids))
        dc.execute(f"DELETE FROM queue WHERE id IN ({marks})", tuple(ids))
        n = len(got)
        ed.gone_ids.extend(g[0] for g in got)
        ed.gone_keys.extend(key_hashes([g[1] for g in got]))
        for k, v in (("depth", -n), ("bytes", -sum(g[2] for g in got)), ("dead", n), ("dead_lettered", n)):
            deltas[k] = deltas.get(k, 0) + v
        return n

    def redrive(self, row_ids: Optional[Iterable[int]] = None) -> int:
        """Move dead-lettered rows (all, or these ids) back to the tail of the queue, attempts reset."""
        now = self.clock_ns()
        ids = None if row_ids is None else [int(i) for i in row_ids]

        def fn(dc: Any, ed: _Edit, deltas: Dict[str, int]) -> int:
            if ids is not None and not ids:
                return 0
            where = "" if ids is None else f" WHERE id IN ({','.join('?' * len(ids))})"
            args = () if ids is None else tuple(ids)
            dead = dc.execute(f"SELECT {_COPY_COLS} FROM dead{where} ORDER BY id", args).fetchall()
            if not dead:
                return 0
            fields = [_PACKET_FIELDS(_decode(r)) for r in dead]
            hs, _ = hash_batch([f[0] for f in fields])
            # a key queued again (or delivered) meanwhile wins: the dead duplicate is dropped
            queued = self._known.contains(hs)
            seen: set = set()
            keep = []
            for j, h in enumerate(hs):
                if not queued[j] and h not in seen:
                    seen.add(h)
                    keep.append(j)
            if keep:
                sizes = [dead[j][14] for j in keep]
                self._append(dc, ed, [fields[j] for j in keep], sizes, ANY_SINK, [dead[j][15] for j in keep], None,
                             [hs[j] for j in keep], bytes.fromhex("".join(hs[j] for j in keep)), now)
                for k, v in (("depth", len(keep)), ("bytes", sum(sizes))):
                    deltas[k] = deltas.get(k, 0) + v
            dc.execute(f"DELETE FROM dead{where}", args)
            for k, v in (("dead", -len(dead)), ("redriven", len(dead))):
                deltas[k] = deltas.get(k, 0) + v
            return len(dead)

        return self._change("redrive", fn)

    def purge(self, dead: bool = False, queue: bool = False) -> int:
        """Delete all rows of the dead-letter table and/or the queue (counted as ``purged``)."""
        def fn(dc: Any, ed: _Edit, deltas: Dict[str, int]) -> int:
            n = 0
            if queue:
                n += dc.execute("DELETE FROM queue").rowcount + sum(s.live for s in self._segs.values())
                dc.execute("DELETE FROM segments")
                dc.execute("DELETE FROM segments_gone")
                dc.execute("UPDATE counters SET value = 0 WHERE name IN ('depth', 'bytes')")
            if dead:
                n += dc.execute("DELETE FROM dead").rowcount
                dc.execute("UPDATE counters SET value = 0 WHERE name = 'dead'")
            deltas["purged"] = n
            return n

        n = self._change("purge", fn)
        with self._lock:
            self._counters = self._load_counters()
            if queue:
                self._leases.clear()
                self._read(lambda c: self._reload(c.connection.driver_connection))
        return n

    def prune_ledger(self) -> int:
        """Forget delivered keys older than the retention window (and beyond ledger_max_rows).

        The ledger is append-only, so both cuts delete a prefix by rowid. The in-memory set
        is rebuilt when the cut is large (> 5 %); until then a few expired keys may still
        count as delivered (the window is a minimum, never shorter)."""
        cutoff = self.clock_ns() - int(self.ledger_retention_s * 1e9)

        def fn(dc: Any, ed: _Edit, deltas: Dict[str, int]) -> int:
            # blocks are in delivery order and stamped with their newest key: cut a prefix
            first_kept = dc.execute("SELECT id FROM ledger_blocks WHERE delivered_ns >= ? ORDER BY id LIMIT 1",
                                    (cutoff,)).fetchone()
            where, args = ("", ()) if first_kept is None else (" WHERE id < ?", (first_kept[0],))
            n = int(dc.execute(f"SELECT coalesce(sum(n), 0) FROM ledger_blocks{where}", args).fetchone()[0])
            if n:
                dc.execute(f"DELETE FROM ledger_blocks{where}", args)
            if self.ledger_max_rows:
                blocks = dc.execute("SELECT id, n FROM ledger_blocks ORDER BY id").fetchall()
                total = sum(b[1] for b in blocks)
                cut = None
                for bid, bn in blocks:  # whole blocks, keeping at least ledger_max_rows keys
                    if total - bn < self.ledger_max_rows:
                        break
                    total -= bn
                    n += bn
                    cut = bid
                if cut is not None:
                    dc.execute("DELETE FROM ledger_blocks WHERE id <= ?", (cut,))
            return n

        n = self._change("prune ledger", fn)
        with self._lock:
            if n and (n > 0.05 * max(1, len(self._known)) or len(self._known) <= n):
                self._known = self._read(lambda c: self._build_known(c.connection.driver_connection))
        return n

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
        """Queued rows (leased or not), oldest first."""
        need = max(0, n) + max(0, offset)
        with self._lock:
            self._refresh()
            loose = self._read(lambda c: c.connection.driver_connection.execute(
                f"SELECT {_COPY_COLS} FROM queue ORDER BY id LIMIT ?", (need,)).fetchall())
            seg = list(itertools.islice(self._iter_seg_rows(), need))
            both = heapq.merge(((r[0], 0, r) for r in loose), ((x[0], 1, x) for x in seg))
            return [_row(x) if kind == 0 else self._seg_row(*x)
                    for _, kind, x in itertools.islice(both, max(0, offset), need)]

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
        """Was ``key`` delivered within the retention window (re-enqueueing it is a no-op)?"""
        h = key_hash(key)
        with self._lock:
            self._refresh()
            if not self.ledger_on or not self._known.contains([h])[0]:
                return False
            # known: delivered, unless it is still queued
            h16 = bytes.fromhex(h)
            for sg in self._segs.values():
                j = sg.hashes.find(h16)
                while j != -1:
                    if j % 16 == 0 and sg.has(j >> 4):
                        return False
                    j = sg.hashes.find(h16, j + 1)
            return self._read(lambda c: c.connection.driver_connection.execute(
                "SELECT 1 FROM queue WHERE key = ?", (key,)).fetchone()) is None

    def has_key(self, key: str) -> bool:
        """Is a row with ``key`` still queued or dead-lettered (its packet may still be sent)?
        The durable queue keeps a by-reference payload's blob exactly that long."""
        with self._lock:
            self._refresh()
            if self._known.contains([key_hash(key)])[0] and (not self.ledger_on or not self.in_ledger(key)):
                return True   # queued (known and not delivered)
            return self._read(lambda c: c.connection.driver_connection.execute(
                "SELECT 1 FROM dead WHERE key = ?", (key,)).fetchone()) is not None

    def stats(self, wait: bool = True) -> Optional[Stats]:
        """Depth, bytes, oldest age, dead letters, counters. ``wait=False`` returns None at
        once while a commit holds the store (see :meth:`lease`)."""
        now = self.clock_ns()

        def fn(c: Any) -> Tuple[Dict[str, int], Any, int]:
            counters = {n: int(v) for n, v in c.exec_driver_sql("SELECT name, value FROM counters")}
            head = c.exec_driver_sql("SELECT id, enq_ns FROM queue ORDER BY id LIMIT 1").first()
            ledger = c.exec_driver_sql("SELECT coalesce(sum(n), 0) FROM ledger_blocks").scalar() or 0
            return counters, head, int(ledger)

        if not self._lock.acquire(blocking=wait):
            return None
        try:
            self._refresh()
            counters, head, ledger = self._read(fn)
            first = next(self._iter_seg_rows(), None)
            if first is not None and (head is None or first[0] < head[0]):
                head = (first[0], first[1].enq_ns)
            leased = self.leased
        finally:
            self._lock.release()
        return Stats(depth=counters.get("depth", 0), bytes=counters.get("bytes", 0), leased=int(leased),
                     dead=counters.get("dead", 0),
                     oldest_age_s=max(0.0, (now - head[1]) / 1e9) if head else 0.0,
                     oldest_id=head[0] if head else None, ledger=ledger, counters=counters,
                     path=self.path, schema_version=self.schema_version, synchronous=self.synchronous)

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
                self._release_owner()

    def _release_owner(self) -> None:
        lock, self._owner = self._owner, None
        if lock is not None:
            lock.release()

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

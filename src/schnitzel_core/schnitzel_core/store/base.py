"""DurableStore's core: opening (file checks, owner lock, migrations), the one transaction
path, the counters and the in-memory view of the segments."""

from __future__ import annotations

import bisect
import collections
import contextlib
import itertools
import os
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

import msgpack
import numpy as np
from sqlalchemy import create_engine, event, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from ..packet import Packet
from .errors import StoreCorruptError, StoreError, StoreVersionError, StoreWriteError, _classify
from .keys import _KnownKeys, _hash_array, hash_batch
from .lock import OwnerLock, _check_file
from .records import Row, _seg_packet
from .schema import (_BUMP_SQL, _DDL_V1, _SEGMENTS_READ_SQL, APPLICATION_ID, COUNTER_NAMES, MIGRATIONS,
                     OVERFLOW_POLICIES, SCHEMA_VERSION, SEG_BITS, SYNCHRONOUS, counters_t, meta_t)
from .segments import _Edit, _Seg

if TYPE_CHECKING:
    from .durable import DurableStore


class _StoreBase:
    """What every part of DurableStore shares: the connection, the lock, the counters and
    the in-memory view. The parts (queue, capacity, ledger, reads) are mixins of it."""

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
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (_tx)

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
            with self._tx():
                for ddl in _DDL_V1:
                    c.exec_driver_sql(ddl)
                c.execute(meta_t.insert(), [{"key": "schema_version", "value": "1"},
                                             {"key": "created_ns", "value": str(self.clock_ns())},
                                             {"key": "kind", "value": "schnitzel.durable_store"}])
                c.exec_driver_sql(f"PRAGMA application_id={APPLICATION_ID}")
        version = int(c.execute(select(meta_t.c.value).where(meta_t.c.key == "schema_version")).scalar() or 0)
        self._end(c)
        if version > SCHEMA_VERSION:
            raise StoreVersionError(f"durable store {self.path}: schema version {version} is newer than this "
                                    f"schnitzel supports ({SCHEMA_VERSION}); upgrade schnitzel to open it")
        while version < SCHEMA_VERSION:
            step = MIGRATIONS.get(version)
            if step is None:
                raise StoreVersionError(f"durable store {self.path}: no migration from schema version {version}")
            with self._tx():
                step(c)
                c.execute(meta_t.update().where(meta_t.c.key == "schema_version").values(value=str(version + 1)))
            version += 1
        self.schema_version = version
        with self._tx():
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
        parts = [_hash_array(ledger), _hash_array(loose)]
        parts += [s.live_hashes() for s in self._segs.values()]
        known.load(np.concatenate(parts))
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
    @contextlib.contextmanager
    def _tx(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[Any]:
        """The store's one transaction path (the caller holds the lock): ``begin`` (writes:
        IMMEDIATE, read snapshots: a deferred ``BEGIN``) on the DB-API connection, COMMIT when
        the block ends, ROLLBACK when it raises. Yields that DB-API connection.

        Statements outside it run in autocommit and take no write lock. It is begun and
        committed on the DB-API connection, not through SQLAlchemy: SQLAlchemy's per-transaction
        and per-statement cost was a large share of a small batch. The SQLAlchemy connection
        may still be used inside (migrations, reads): its own bookkeeping is ended on the way
        in and out, which sends nothing to SQLite outside a transaction."""
        self._end(self._conn)
        dc = self._dc
        dc.execute(begin)
        try:
            yield dc
            dc.execute("COMMIT")
        except BaseException:
            if dc.in_transaction:
                try:
                    dc.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        finally:
            self._end(self._conn)

    def _change(self, what: str, fn: Callable[[Any, "_Edit", Dict[str, int]], Any]) -> Any:
        """One IMMEDIATE write transaction: ``fn(dbapi_conn, edit, counter_deltas)``; the
        segments' bookkeeping and the counters are written with it and applied in memory
        only after the commit. SQLite errors reach the caller as StoreError."""
        with self._lock:
            try:
                with self._tx() as dc:
                    self._sync(dc)
                    ed = _Edit()
                    deltas: Dict[str, int] = {}
                    out = fn(dc, ed, deltas)
                    ed.write(dc, self._segs)
                    self._bump(dc, deltas)
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


    # ------------------------------------------------------------ reading
    def _read(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(sqlalchemy_conn)`` in one read snapshot (a deferred transaction)."""
        with self._lock:
            try:
                with self._tx("BEGIN"):
                    return fn(self._conn)
            except (SQLAlchemyError, sqlite3.Error) as exc:
                raise _classify(exc, self.path, "read") from None

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

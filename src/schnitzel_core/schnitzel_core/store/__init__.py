"""DurableStore: the on-disk queue behind the ``durable_queue`` node.

SQLAlchemy 2 (Core) over SQLite in WAL mode (why SQLAlchemy: below). One file holds:

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

# Why SQLAlchemy stays: it opens the one connection (engine, StaticPool, the connect hook),
# declares the tables (schema.py), runs the migrations and the few cold reads and writes of
# ``meta``/``counters`` (Core statements, ``exec_driver_sql``) and turns driver errors into
# one exception family. The hot path (enqueue, ack, lease: base._tx/_change and every ``dc``)
# runs on that connection's DB-API object directly, because SQLAlchemy's per-statement cost
# was a large share of a small batch. Replacing it with plain sqlite3 would touch the open,
# migration and read paths at once for no behaviour gained; see store/base.py for the
# transaction path both share.

from __future__ import annotations

# re-exported: everything `schnitzel_core.store` offered as one module (tests use private names)
from ..packet import Packet, PayloadRef  # noqa: F401
from .committer import GroupCommitter  # noqa: F401
from .durable import DurableStore  # noqa: F401
from .errors import (StoreCorruptError, StoreError, StoreFullError, StoreLockedError,  # noqa: F401
                     StoreVersionError, StoreWriteError, _classify)
from .keys import (_HEX_DIGITS, _KeySet, _KnownKeys, _blake2b, _hash_array, _split_hashes,  # noqa: F401
                   hash_batch, key_hash, key_hashes)
from .lock import OwnerLock, _check_file, _read_pid  # noqa: F401
from .records import (_DICT_FIELDS, _FIELD_NAMES, _PACKET_FIELDS, _PLAIN_TAIL, AckResult,  # noqa: F401
                      EnqueueResult, Row, Stats, _decode, _encode_extra, _fields_of, _mp_default, _new_packet,
                      _row, _seg_packet)
from .schema import (_BUMP_SQL, _COPY_COLS, _DDL_V1, _LEDGER_BLOCKS_DDL, _LOOSE_INSERT_SQL,  # noqa: F401
                     _LOOSE_LEASE_SQL, _ROW_COLS, _SEG_MASK, _SEGMENT_INSERT_SQL, _SEGMENTS_DDL, _SEGMENTS_READ_SQL,
                     ANY_SINK, APPLICATION_ID, COUNTER_NAMES, MIGRATIONS, OVERFLOW_POLICIES, SCHEMA_VERSION, SEG_BITS,
                     SEG_ROWS, SQLITE_HEADER, SYNCHRONOUS, _migrate_1_to_2, _migrate_2_to_3, _migrate_3_to_4,
                     _pack_hashes, _packet_cols, counters_t, dead_t, ledger_blocks_t, meta_t, metadata, queue_t)
from .segments import _Edit, _Seg  # noqa: F401

__all__ = [
    "ANY_SINK", "APPLICATION_ID", "AckResult", "COUNTER_NAMES", "DurableStore", "EnqueueResult", "GroupCommitter",
    "MIGRATIONS", "OVERFLOW_POLICIES", "OwnerLock", "Row", "SCHEMA_VERSION", "SEG_BITS", "SEG_ROWS",
    "SQLITE_HEADER", "SYNCHRONOUS", "Stats", "StoreCorruptError", "StoreError", "StoreFullError",
    "StoreLockedError", "StoreVersionError", "StoreWriteError", "counters_t", "dead_t", "hash_batch", "key_hash",
    "key_hashes", "ledger_blocks_t", "meta_t", "metadata", "queue_t",
]

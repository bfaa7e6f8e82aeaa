"""Schema: table definitions, the DDL of each version, the migrations, the SQL the store
runs often, and the segment id layout."""

from __future__ import annotations

import itertools
import struct
from typing import Any, Callable, Dict, Sequence, Tuple

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, Text

SCHEMA_VERSION = 4
APPLICATION_ID = 0x537A5154  # "SzQT": marks a file as a schnitzel durable store
SQLITE_HEADER = b"SQLite format 3\x00"
ANY_SINK = "*"

OVERFLOW_POLICIES = ("reject_new", "drop_oldest")
SYNCHRONOUS = ("FULL", "NORMAL")

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

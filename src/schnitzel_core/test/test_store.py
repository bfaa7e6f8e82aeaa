"""DurableStore: persistence, ordering, ack/nack/dead-letter/redrive, capacity, ledger,
fan-out, schema versions, refusal of corrupt/foreign files, write failures."""
import os
import sqlite3
import stat
import struct
import subprocess
import sys
import textwrap

import pytest

from schnitzel_core.packet import Packet
from schnitzel_core.store import (APPLICATION_ID, SCHEMA_VERSION, DurableStore, GroupCommitter,
                                  StoreCorruptError, StoreVersionError, StoreWriteError, _DDL_V1)


def pk(i, payload=b"x" * 200, stream="s", **kw):
    return Packet(stream_id=stream, seq=i, kind="event", payload=payload, **kw)


class Clock:
    def __init__(self, t=1_000_000_000_000):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, s):
        self.t += int(s * 1e9)


def _v1_file(path):
    """An open sqlite3 connection to a new file laid out as schema v1 wrote it (the test adds rows)."""
    c = sqlite3.connect(path)
    for ddl in _DDL_V1:
        c.execute(ddl)
    c.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    c.execute(f"PRAGMA application_id={APPLICATION_ID}")
    return c


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "q.db")


def test_enqueue_is_durable_and_lease_is_oldest_first(db):
    s = DurableStore(db)
    packets = [pk(i, meta={"a": str(i)}) for i in range(1, 11)]
    assert s.enqueue(packets).accepted == 10
    s.close()
    s = DurableStore(db)  # reopen: everything is still there, in order, field for field
    rows = s.lease(4)
    assert [r.packet.seq for r in rows] == [1, 2, 3, 4]
    assert rows[0].packet == packets[0]
    assert [r.packet.seq for r in s.lease(100)] == list(range(5, 11))
    assert s.lease(10) == []  # everything is leased
    s.close()


def test_ack_removes_and_ledger_makes_reenqueue_a_noop(db):
    s = DurableStore(db)
    s.enqueue([pk(i) for i in range(5)])
    rows = s.lease(5)
    assert s.ack([r.id for r in rows[:3]]).done == 3
    st = s.stats()
    assert st.depth == 2 and st.counters["delivered"] == 3
    res = s.enqueue([pk(0), pk(1), pk(2), pk(7)])  # 0..2 delivered already, 7 is new
    assert (res.accepted, res.duplicates) == (1, 3)
    assert s.in_ledger(pk(0).idempotency_key)
    # a key still queued is not queued twice either
    assert s.enqueue([pk(3)]).duplicates == 1
    assert s.stats().depth == 3
    s.close()


def test_ledger_retention_window(db):
    clock = Clock()
    s = DurableStore(db, ledger_retention_s=60, clock_ns=clock)
    s.enqueue([pk(1)])
    s.ack([s.lease(1)[0].id])
    clock.advance(30)
    assert s.enqueue([pk(1)]).duplicates == 1
    clock.advance(31)
    assert s.prune_ledger() == 1
    assert s.enqueue([pk(1)]).accepted == 1  # past the window: accepted again
    s.close()


def test_ledger_can_be_turned_off(db):
    s = DurableStore(db, ledger_retention_s=0)
    s.enqueue([pk(1)])
    assert s.enqueue([pk(1)]).duplicates == 1  # still queued: not queued twice
    s.ack([s.lease(1)[0].id])
    assert not s.in_ledger(pk(1).idempotency_key)
    assert s.enqueue([pk(1)]).accepted == 1  # no ledger: a delivered key is queued again
    s.close()


def test_lease_expiry_and_nack_backoff(db):
    clock = Clock()
    s = DurableStore(db, clock_ns=clock)
    s.enqueue([pk(1), pk(2)])
    a, b = s.lease(2, lease_s=10)
    clock.advance(11)
    assert [r.id for r in s.lease(5, lease_s=10)] == [a.id, b.id]  # lease expired: offered again
    s.nack([a.id], "HTTP 503", delay_s=5)
    clock.advance(1)
    assert s.lease(5) == []
    clock.advance(5)
    r = s.lease(5)
    assert [x.id for x in r] == [a.id] and r[0].attempts == 1 and r[0].last_error == "HTTP 503"
    s.close()


def test_restart_makes_leased_rows_ready(db):
    s = DurableStore(db)
    s.enqueue([pk(1)])
    assert len(s.lease(1, lease_s=3600)) == 1
    s.close()
    s = DurableStore(db)
    assert len(s.lease(1)) == 1
    s.close()


def test_dead_letter_and_redrive(db):
    s = DurableStore(db)
    s.enqueue([pk(i) for i in range(3)])
    rows = s.lease(3)
    assert s.dead_letter([rows[1].id], "HTTP 400: bad payload") == 1
    dead = s.dlq()
    assert len(dead) == 1 and dead[0].reason == "HTTP 400: bad payload" and dead[0].packet.seq == 1
    assert s.stats().depth == 2 and s.stats().dead == 1
    # healthy rows are not blocked by the dead one
    s.ack([rows[0].id, rows[2].id])
    assert s.redrive() == 1
    st = s.stats()
    assert (st.depth, st.dead, st.counters["redriven"]) == (1, 0, 1)
    r = s.lease(5)
    assert [x.packet.seq for x in r] == [1] and r[0].attempts == 0
    s.close()


def test_nack_max_attempts_dead_letters(db):
    s = DurableStore(db)
    s.enqueue([pk(1)])
    for i in range(3):
        rid = s.lease(1)[0].id
        n = s.nack([rid], "timeout", 0, max_attempts=3)
    assert n == 1 and s.stats().dead == 1
    assert "gave up after 3 attempts: timeout" in s.dlq()[0].reason
    s.close()


def test_fan_out_row_done_only_when_every_sink_confirmed(db):
    s = DurableStore(db)
    s.enqueue([pk(1), pk(2)], sinks=lambda p: ["http", "file"] if p.seq == 1 else ["file"])
    r1, r2 = s.lease(2)
    assert set(r1.sinks) == {"http", "file"} and r2.sinks == ("file",)
    res = s.ack([r1.id, r2.id], sink="file")
    assert (res.done, res.partial) == (1, 1)
    assert s.stats().depth == 1
    s.close()
    s = DurableStore(db)  # the per-sink state survives a restart
    (r,) = s.lease(5)
    assert r.sinks == ("http",)
    assert s.ack([r.id], sink="file").done == 0  # a second confirmation from file changes nothing
    assert s.ack([r.id], sink="http").done == 1
    assert s.stats().depth == 0
    s.close()


def test_capacity_reject_new_counts(db):
    s = DurableStore(db, max_rows=5)
    res = s.enqueue([pk(i) for i in range(8)])
    assert (res.accepted, res.rejected) == (5, 3)
    assert s.stats().counters["rejected_full"] == 3
    assert [r.packet.seq for r in s.lease(10)] == [0, 1, 2, 3, 4]
    s.close()


def test_capacity_drop_oldest_counts_every_drop(db):
    s = DurableStore(db, max_rows=5, overflow="drop_oldest")
    s.enqueue([pk(i) for i in range(5)])
    res = s.enqueue([pk(i) for i in range(5, 8)])
    assert (res.accepted, res.dropped) == (3, 3)
    st = s.stats()
    assert st.depth == 5 and st.counters["dropped_overflow"] == 3
    assert [r.packet.seq for r in s.peek(10)] == [3, 4, 5, 6, 7]
    s.close()


def test_capacity_by_bytes(db):
    s = DurableStore(db, max_bytes=3 * (1000 + 256))
    res = s.enqueue([pk(i, payload=b"y" * 1000) for i in range(5)])
    assert (res.accepted, res.rejected) == (3, 2)
    assert s.stats().bytes <= 3 * 1256
    s.close()


def test_group_committer_bounds_and_callbacks(db):
    s = DurableStore(db)
    got = []
    gc = GroupCommitter(s, max_rows=10, max_ms=50, on_commit=lambda b, r: got.append((len(b), r.accepted)))
    for i in range(25):
        gc.submit(pk(i))
    assert gc.flush(5)
    assert sum(n for n, _ in got) == 25 and max(n for n, _ in got) <= 10
    # a single packet is committed within max_ms even though the row bound is not reached
    got.clear()
    gc.submit(pk(100))
    import time

    t0 = time.monotonic()
    while not got and time.monotonic() - t0 < 2:
        time.sleep(0.005)
    assert got == [(1, 1)] and time.monotonic() - t0 < 0.5
    rows = s.lease(100)
    gc.submit_ack([r.id for r in rows])
    gc.close()
    assert s.stats().depth == 0 and s.stats().counters["delivered"] == 26
    s.close()


def test_synchronous_option(db):
    s = DurableStore(db, synchronous="normal")
    assert s._pragma("PRAGMA synchronous") == 1 and s._pragma("PRAGMA journal_mode") == "wal"
    s.close()
    s = DurableStore(db)
    assert s._pragma("PRAGMA synchronous") == 2
    s.close()
    with pytest.raises(ValueError, match="synchronous"):
        DurableStore(db, synchronous="OFF")


def test_foreign_and_corrupt_files_are_refused_and_untouched(tmp_path):
    text = tmp_path / "notes.db"
    text.write_bytes(b"hello, this is not a database\n" * 10)
    before = text.read_bytes()
    with pytest.raises(StoreCorruptError, match="not a SQLite database"):
        DurableStore(str(text))
    assert text.read_bytes() == before

    foreign = tmp_path / "app.db"
    c = sqlite3.connect(foreign)
    c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    c.execute("INSERT INTO users(name) VALUES ('ada')")
    c.commit()
    c.close()
    before = foreign.read_bytes()
    with pytest.raises(StoreCorruptError, match="belongs to something else"):
        DurableStore(str(foreign))
    assert foreign.read_bytes() == before
    assert not os.path.exists(str(foreign) + "-wal")

    corrupt = tmp_path / "corrupt.db"
    s = DurableStore(str(corrupt))
    s.enqueue([pk(i) for i in range(200)])
    s.close()
    data = bytearray(corrupt.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # garble the schema page, keep the header
    corrupt.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match="corrupt|something else"):
        DurableStore(str(corrupt))
    assert corrupt.read_bytes() == bytes(data)


def test_newer_schema_refused_and_v1_migrated(tmp_path):
    newer = str(tmp_path / "newer.db")
    DurableStore(newer).close()
    c = sqlite3.connect(newer)
    c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    c.commit()
    c.close()
    with pytest.raises(StoreVersionError, match="newer"):
        DurableStore(newer)

    # a store written by schema v1 (no counters table): migrated, rows kept, counters computed
    v1 = str(tmp_path / "v1.db")
    c = _v1_file(v1)
    for i in range(3):
        c.execute("INSERT INTO queue(key, stream_id, seq, epoch, kind, payload, size, sinks, enq_ns) "
                  "VALUES (?, 's', ?, 0, 'event', x'00', 300, '*', 1)", (f"k{i}", i))
    c.commit()
    c.close()
    s = DurableStore(v1)
    st = s.stats()
    assert st.schema_version == SCHEMA_VERSION and st.depth == 3 and st.bytes == 900
    assert [r.key for r in s.lease(5)] == ["k0", "k1", "k2"]
    s.close()


def test_disk_full_is_a_clear_error_and_keeps_accepted_rows(tmp_path):
    """Run in a child with RLIMIT_FSIZE lowered after 20 rows were accepted: writes fail
    (EFBIG, what a full disk looks like to SQLite), the error is StoreWriteError, the 20 rows
    are still there afterwards."""
    db = str(tmp_path / "full.db")
    code = textwrap.dedent(f"""
        import resource, json
        from schnitzel_core.packet import Packet
        from schnitzel_core.store import DurableStore, StoreWriteError
        s = DurableStore({db!r})
        s.enqueue([Packet(stream_id="s", seq=i, kind="event", payload=b"x" * 200) for i in range(20)])
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
        try:
            s.enqueue([Packet(stream_id="s", seq=i, kind="event", payload=b"x" * 200) for i in range(20, 40)])
            print(json.dumps({{"error": None}}))
        except StoreWriteError as e:
            print(json.dumps({{"error": str(e), "reason": e.reason, "depth": s.depth}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    import json

    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["error"] and doc["reason"] in ("disk_full", "io_error")
    assert "Traceback" not in out.stderr
    assert doc["depth"] == 20
    s = DurableStore(db)
    assert [r.packet.seq for r in s.lease(100)] == list(range(20))
    s.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_file_is_a_clear_error(tmp_path):
    db = str(tmp_path / "ro.db")
    s = DurableStore(db)
    s.enqueue([pk(1)])
    s.close()
    os.chmod(db, stat.S_IRUSR)
    os.chmod(tmp_path, stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(StoreWriteError) as ei:
            s = DurableStore(db)
            s.enqueue([pk(2)])
        assert ei.value.reason in ("read_only", "io_error")
    finally:
        os.chmod(tmp_path, stat.S_IRWXU)
        os.chmod(db, stat.S_IRUSR | stat.S_IWUSR)


@pytest.mark.parametrize("use_numpy", [True, False])
def test_delivered_key_set_with_and_without_numpy(use_numpy, monkeypatch):
    import secrets

    from schnitzel_core.store import _KeySet, key_hash

    monkeypatch.setattr(_KeySet, "MERGE_AT", 100)
    ks = _KeySet()
    if not use_numpy:
        ks._np = None
    keys = [secrets.token_hex(16) for _ in range(1000)]
    ks.load([key_hash(k) for k in keys[:400]])
    for i in range(400, 700, 50):  # several merges
        ks.add([key_hash(k) for k in keys[i:i + 50]])
    assert all(ks.contains([key_hash(k) for k in keys[:700]]))
    assert not any(ks.contains([key_hash(k) for k in keys[700:]]))
    # keys that are not 32 hex digits are hashed; equal keys, equal hashes
    ks.add([key_hash("camera-7/event-42")])
    assert ks.contains([key_hash("camera-7/event-42"), key_hash("camera-7/event-43")]) == [True, False]
    assert key_hash("ab" * 16) == key_hash("ab" * 16) and key_hash("AB" * 16) != key_hash("ab" * 16)


def test_rows_kept_in_memory_stay_consistent_with_the_file(db):
    """Rows enqueued by this process are leased from memory; anything that changes rows
    behind enqueue/ack (nack with delay, expiry, another process's redrive, a backlog beyond
    the in-memory bound, a restart) still yields every ready row exactly once, oldest first."""
    clock = Clock()
    s = DurableStore(db, clock_ns=clock)
    s.hot_max = 50
    assert s.lease(10) == []          # learns where the in-memory part starts
    s.enqueue([pk(i) for i in range(1, 21)])
    rows = s.lease(5, lease_s=10)
    assert [r.packet.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].packet.payload == b"x" * 200 and rows[0].sinks == ("*",)
    s.nack([rows[0].id], "boom", delay_s=5)            # seq 1 waits 5 s
    got = s.lease(100, lease_s=10)
    assert [r.packet.seq for r in got] == list(range(6, 21))
    clock.advance(5)
    assert [r.packet.seq for r in s.lease(100, lease_s=10)] == [1]
    clock.advance(10)                                    # every lease expired: all ready again
    assert [r.packet.seq for r in s.lease(100, lease_s=10)] == list(range(1, 21))
    s.ack([r.id for r in s.peek(100)])
    assert s.stats().depth == 0 and s.lease(10) == []
    # more than hot_max rows: the rest is read from the file, still oldest first
    s.enqueue([pk(i) for i in range(100, 130)])
    s.enqueue([pk(i) for i in range(130, 160)])
    seen = []
    while True:
        got = s.lease(7)
        if not got:
            break
        seen += [r.packet.seq for r in got]
        s.ack([r.id for r in got])
    assert seen == list(range(100, 160))
    # another process (the CLI) redrives a dead row while this store is open
    s.enqueue([pk(500)])
    [r] = s.lease(1)
    s.dead_letter([r.id], "bad")
    s.enqueue([pk(501)])
    other = DurableStore(db)
    assert other.redrive() == 1
    other.close()
    assert sorted(r.packet.seq for r in s.lease(10)) == [500, 501]
    s.close()


def test_capacity_with_ledger_duplicates_counts_each_once(db):
    s = DurableStore(db, max_rows=100)
    s.enqueue([pk(i) for i in range(1, 4)])
    s.ack([r.id for r in s.lease(10)])
    res = s.enqueue([pk(i) for i in range(1, 6)])          # 1-3 delivered already
    assert (res.accepted, res.duplicates) == (2, 3)
    assert s.stats().depth == 2 and s.counters["duplicates"] == 3
    s.close()


def test_v2_ledger_rows_migrate_to_blocks_and_prune_by_block(tmp_path):
    """A store whose ledger is one row per key (schema <= 2) keeps every delivered key after
    the migration to ledger blocks; retention and ledger_max_rows cut whole blocks, never
    below the window or the row cap."""
    from schnitzel_core.store import key_hash

    old = str(tmp_path / "v1.db")
    c = _v1_file(old)
    keys = [pk(i).idempotency_key for i in range(2500)] + ["not-a-hex-key"]
    c.executemany("INSERT INTO ledger(h1, h2, delivered_ns) VALUES (?, ?, ?)",
                  [(*struct.unpack(">qq", bytes.fromhex(key_hash(k))), 1_000_000_000_000 + i)
                   for i, k in enumerate(keys)])
    c.commit()
    c.close()
    clock = Clock()
    s = DurableStore(old, clock_ns=clock, ledger_retention_s=3600)
    assert s.schema_version == SCHEMA_VERSION and s.stats().ledger == len(keys)
    assert all(s.in_ledger(k) for k in keys) and not s.in_ledger(pk(99999).idempotency_key)
    assert s.enqueue([pk(7), pk(2600)]).accepted == 1           # pk(7) was delivered before
    s.ack([r.id for r in s.lease(10)])
    assert s.in_ledger(pk(2600).idempotency_key) and s.stats().ledger == len(keys) + 1
    s.close()
    s = DurableStore(old, clock_ns=clock, ledger_retention_s=3600, ledger_max_rows=1500)
    assert s.in_ledger(pk(2600).idempotency_key) and s.in_ledger(keys[0])
    n = s.prune_ledger()          # cap 1500: whole old blocks go, at least 1500 keys stay
    assert n == 1000 and s.stats().ledger == 1502               # blocks of 1000, 1000, 501, 1
    assert s.in_ledger(pk(2600).idempotency_key) and s.in_ledger(keys[1000]) and not s.in_ledger(keys[0])
    clock.advance(7200)
    assert s.prune_ledger() == 1502 and s.stats().ledger == 0 and not s.in_ledger(pk(2600).idempotency_key)
    s.close()


def test_partly_confirmed_segment_survives_a_restart(db):
    """A commit's rows are one segment; confirming some of them, then restarting, brings
    back exactly the others, oldest first, and the counters agree with the rows."""
    s = DurableStore(db)
    s.enqueue([pk(i) for i in range(10)])
    rows = s.lease(10)
    assert s.ack([r.id for r in rows if r.packet.seq % 3 == 0]).done == 4
    st = s.stats()
    assert (st.depth, st.counters["delivered"]) == (6, 4)
    s.close()
    s = DurableStore(db)
    left = s.lease(100)
    assert [r.packet.seq for r in left] == [1, 2, 4, 5, 7, 8]
    assert s.stats().bytes == sum(r.size for r in left)
    assert s.ack([r.id for r in left]).done == 6
    s.close()
    s = DurableStore(db)
    assert s.stats().depth == 0 and s.lease(10) == [] and s.stats().bytes == 0
    c = sqlite3.connect(db)  # nothing left behind in the file either
    assert c.execute("SELECT count(*) FROM segments").fetchone()[0] == 0
    assert c.execute("SELECT count(*) FROM segments_gone").fetchone()[0] == 0
    c.close()
    s.close()


def test_queued_keys_are_deduplicated_after_a_restart_and_across_segments(db):
    s = DurableStore(db, ledger_retention_s=0)   # no ledger: only the queued-key index says no
    s.enqueue([pk(i) for i in range(5)])
    s.enqueue([pk(i) for i in range(3, 8)])      # 3 and 4 are queued in the first segment
    assert s.stats().depth == 8 and s.counters["duplicates"] == 2
    s.close()
    s = DurableStore(db, ledger_retention_s=0)
    res = s.enqueue([pk(2), pk(7), pk(8), pk(8)])  # queued, queued, new, new twice in one batch
    assert (res.accepted, res.duplicates) == (1, 3)
    # a key that left the queue without delivery (dead-lettered) may be queued again
    [r] = [r for r in s.lease(20) if r.packet.seq == 2]
    s.dead_letter([r.id], "bad")
    assert s.enqueue([pk(2)]).accepted == 1
    s.close()


def test_large_batches_take_several_segments(db, monkeypatch):
    from schnitzel_core import store as st

    monkeypatch.setattr(st, "SEG_ROWS", 8)
    s = DurableStore(db)
    assert s.enqueue([pk(i) for i in range(20)]).accepted == 20
    ids = [r.id for r in s.peek(100)]
    assert len({i >> st.SEG_BITS for i in ids}) == 3 and ids == sorted(ids)
    assert [r.packet.seq for r in s.lease(100)] == list(range(20))
    assert s.ack(ids).done == 20 and s.stats().depth == 0
    s.close()


def test_drop_oldest_takes_retried_and_fresh_rows_in_id_order(db):
    """drop_oldest counts across both kinds of rows: rows a nack made individual and rows
    still in their segment; leased rows are not dropped."""
    s = DurableStore(db, max_rows=6, overflow="drop_oldest")
    s.enqueue([pk(i) for i in range(6)])
    r0, r1, r2 = s.lease(3)
    s.nack([r0.id, r2.id], "503")               # 0 and 2 now wait for a retry, 1 stays leased
    res = s.enqueue([pk(i) for i in range(6, 9)])
    assert (res.accepted, res.dropped) == (3, 3)
    assert [r.packet.seq for r in s.peek(100)] == [1, 4, 5, 6, 7, 8]
    st = s.stats()
    assert st.depth == 6 and st.counters["dropped_overflow"] == 3
    assert s.ack([r1.id]).done == 1
    s.close()


def test_v3_store_migrates_with_its_queued_rows_first(tmp_path):
    """A store written before segments (schema v3: one queue row per packet) keeps its
    rows; they come first, new rows follow, ids keep growing."""
    v3_src = os.path.join(os.path.dirname(__file__), "data", "store_v3_schema.sql")
    db = str(tmp_path / "v3.db")
    c = sqlite3.connect(db)
    c.executescript(open(v3_src).read())
    c.execute(f"PRAGMA application_id={APPLICATION_ID}")
    for i in range(3):
        c.execute("INSERT INTO queue(key, stream_id, seq, epoch, kind, payload, size, sinks, enq_ns) "
                  "VALUES (?, 's', ?, 0, 'event', x'00', 300, '*', 1)", (f"old{i}", i))
    c.execute("UPDATE counters SET value = 3 WHERE name = 'depth'")
    c.execute("UPDATE counters SET value = 900 WHERE name = 'bytes'")
    c.commit()
    c.close()
    s = DurableStore(db)
    assert s.schema_version == SCHEMA_VERSION and s.stats().depth == 3
    s.enqueue([pk(i) for i in range(2)])
    assert s.enqueue([Packet(stream_id="s", seq=9, kind="event", idempotency_key="old1")]).duplicates == 1
    rows = s.lease(10)
    assert [r.key for r in rows[:3]] == ["old0", "old1", "old2"] and [r.packet.seq for r in rows[3:]] == [0, 1]
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert s.ack([r.id for r in rows]).done == 5 and s.stats().depth == 0 and s.stats().bytes == 0
    s.close()


@pytest.mark.parametrize("use_numpy", [True, False])
def test_known_key_set_agrees_with_a_plain_set(use_numpy, monkeypatch):
    """The in-memory de-duplication set (sorted array + recent additions + removals, merged
    and compacted in batches) answers like a Python set through any mix of operations."""
    import random
    import secrets

    from schnitzel_core.store import _KeySet, _KnownKeys, key_hash

    monkeypatch.setattr(_KeySet, "MERGE_AT", 16)
    rnd = random.Random(7)
    pool = [key_hash(secrets.token_hex(16)) for _ in range(300)] + [key_hash(f"k{i}") for i in range(50)]
    ks, ref = _KnownKeys(), set(pool[:40])
    if not use_numpy:
        ks._np = None
        ks.sorted = []
    ks.load(list(ref))
    for step in range(600):
        batch = rnd.sample(pool, rnd.randint(1, 12))
        if rnd.random() < 0.5:
            new = [h for h in dict.fromkeys(batch) if h not in ref]
            ks.add(new)
            ref.update(new)
        else:
            gone = list(dict.fromkeys(batch))   # some were never added: discarding them is harmless
            ks.discard(gone)
            ref.difference_update(gone)
        probe = rnd.sample(pool, 20)
        assert ks.contains(probe) == [h in ref for h in probe], step


def test_lease_and_stats_need_not_wait_for_a_commit(db):
    """The queue node polls from the executor that also takes packets off DDS: with
    wait=False a commit in progress (here: another thread holding the store, as a commit's
    fsync does) makes lease/stats return at once instead of blocking."""
    import threading
    import time

    s = DurableStore(db)
    s.enqueue([pk(i) for i in range(3)])
    held, release = threading.Event(), threading.Event()

    def commit_in_progress():
        with s._lock:
            held.set()
            release.wait(5)

    t = threading.Thread(target=commit_in_progress)
    t.start()
    assert held.wait(5)
    t0 = time.monotonic()
    assert s.lease(10, wait=False) == [] and s.stats(wait=False) is None
    assert time.monotonic() - t0 < 0.5
    release.set()
    t.join(5)
    assert [r.packet.seq for r in s.lease(10, wait=False)] == [0, 1, 2]
    assert s.stats(wait=False).leased == 3
    s.close()


# ---------------------------------------------------------------- one owner per file (issue 20.1)
_HOLDER = textwrap.dedent("""
    import sys, time
    from schnitzel_core.store import DurableStore
    s = DurableStore(sys.argv[1], owner=True)
    print("held", flush=True)
    time.sleep(120)
""")


def _holder(db):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_owner_in_another_process_is_refused_naming_file_and_pid(tmp_path):
    from schnitzel_core.store import StoreLockedError

    db = tmp_path / "q.db"
    proc = _holder(db)
    try:
        with pytest.raises(StoreLockedError) as info:
            DurableStore(str(db), owner=True)
        msg = str(info.value)
        assert str(db) in msg and f"process {proc.pid}" in msg and "another path" in msg
        assert info.value.holder_pid == proc.pid
        # inspection (the `schnitzel queue` CLI) opens without ownership: still works
        with DurableStore(str(db)) as s:
            assert s.stats().depth == 0
    finally:
        proc.kill()
        proc.wait(10)


def test_owner_lock_is_released_when_the_holder_is_sigkilled(tmp_path):
    db = tmp_path / "q.db"
    proc = _holder(db)
    proc.kill()   # SIGKILL: no clean-up runs in the holder
    proc.wait(10)
    s = DurableStore(str(db), owner=True)
    s.enqueue([pk(1)])
    s.close()
    # and a clean close releases it too
    DurableStore(str(db), owner=True).close()
    DurableStore(str(db), owner=True).close()

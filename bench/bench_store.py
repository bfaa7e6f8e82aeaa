"""Durable store throughput: enqueue + ack of 200-byte packets with group commit, against
raw sqlite3 executemany of the same batches measured in the same run.

    python bench/bench_store.py [--packets 20000] [--batches 10,100,1000] [--no-record]
                                [--compare-with OLD_STORE.py]

What each column measures (packets per second, wall clock, same packets, same directory,
WAL, the same ``synchronous`` for every column of a row):
- store: per batch, what the queue node does: ONE commit holding the batch's new rows and the
  acknowledgements of the previous batch (``DurableStore.write``: insert, delete of the acked
  rows, one ledger block with their keys, counters), then ``lease`` of the batch (the rows to
  forward, with their ids). Every guarantee is on: durable before the call returns,
  unique key, delivered-key ledger, capacity counters.
- store, 2 commits: ``enqueue`` then ``ack`` as two commits per batch (no piggy-backing).
- store, ledger off: as 'store' with ``ledger_retention_s=0``.
- raw insert: sqlite3 ``executemany`` INSERT of (key, payload) into a bare
  ``(id INTEGER PRIMARY KEY, key, payload)`` table, one COMMIT per batch. Inserts only: the
  table grows, nothing is ever deleted.
- raw insert+delete: the same logical work as 'store' with nothing else: per batch ONE
  commit holding the INSERT of the batch and ``DELETE ... WHERE id IN (...)`` of the previous
  batch. This is the baseline the target is measured against.
- raw, store's statements: bare sqlite3 running the store's own statements on its schema (the
  same DDL, unique key index, one ledger block, counters, one commit per batch), every Python-side
  value precomputed: what the store's SQLite work alone costs.
- raw, lean schema: the schema proposed for a leaner queue table, in bare sqlite3 with the same
  statements otherwise (unique key index, one ledger block, counters, one commit per batch): only
  the columns the store queries on (id AUTOINCREMENT, key UNIQUE, size, sinks, enq_ns, attempts,
  last_error, avail_ns) plus ONE packed header BLOB (the other packet fields, JSON, encoded in
  advance) and the payload. What the SQL floor would be after such a migration (without the
  Python cost of packing the header, printed under the table with the per-packet split).
- before (``--compare-with``): the 'store' column for another store module (e.g. the
  previous commit's ``store.py``) in the same run.
Targets (issue 5) at batch 100 and synchronous=FULL: >= 0.5x raw insert+delete and
>= 100,000 packets/s.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record  # noqa: E402

from schnitzel_core.packet import Packet  # noqa: E402
from schnitzel_core.store import DurableStore  # noqa: E402


def packets(n: int, tag: str):
    return [Packet(stream_id=tag, seq=i, kind="event", payload=os.urandom(100).hex().encode())
            for i in range(n)]


def bench_store(d: str, sync: str, batch: int, pk, ledger: bool = True, store_cls=DurableStore, tag=""):
    s = store_cls(os.path.join(d, f"store{tag}-{sync}-{batch}-{int(ledger)}.db"), synchronous=sync,
                  ledger_retention_s=7 * 24 * 3600 if ledger else 0)
    prev = []
    t0 = time.perf_counter()
    for i in range(0, len(pk), batch):
        s.write(pk[i:i + batch], None, [(prev, "*")] if prev else ())
        prev = [r.id for r in s.lease(batch)]
    s.ack(prev)
    dt = time.perf_counter() - t0
    assert s.stats().depth == 0 and s.counters["delivered"] == len(pk)
    s.close()
    return len(pk) / dt


def bench_store_separate(d: str, sync: str, batch: int, pk):
    """enqueue and ack as two commits (no ack piggy-backing), for reference."""
    s = DurableStore(os.path.join(d, f"store-sep-{sync}-{batch}.db"), synchronous=sync)
    t0 = time.perf_counter()
    for i in range(0, len(pk), batch):
        s.enqueue(pk[i:i + batch])
        s.ack([r.id for r in s.lease(batch)])
    dt = time.perf_counter() - t0
    s.close()
    return len(pk) / dt


def raw_conn(path: str, sync: str):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute(f"PRAGMA synchronous={sync}")
    c.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, key TEXT, payload BLOB)")
    return c


def bench_raw(d: str, sync: str, batch: int, pk, delete: bool):
    c = raw_conn(os.path.join(d, f"raw-{sync}-{batch}-{int(delete)}.db"), sync)
    rows = [(p.idempotency_key, p.payload) for p in pk]
    prev: list = []
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch):
        c.execute("BEGIN IMMEDIATE")
        cur = c.executemany("INSERT INTO q (key, payload) VALUES (?, ?)", rows[i:i + batch])
        if delete:
            if prev:
                c.execute(f"DELETE FROM q WHERE id IN ({','.join('?' * len(prev))})", prev)
            last = c.execute("SELECT last_insert_rowid()").fetchone()[0]
            prev = list(range(last - cur.rowcount + 1, last + 1))
        c.execute("COMMIT")
    if delete and prev:
        c.execute(f"DELETE FROM q WHERE id IN ({','.join('?' * len(prev))})", prev)
    dt = time.perf_counter() - t0
    if delete:
        assert c.execute("SELECT count(*) FROM q").fetchone()[0] == 0
    c.close()
    return len(rows) / dt


def _store_sql_loop(c, ddl, rows, ins: str, pk, batch: int) -> float:
    """The store's per-commit statements in bare sqlite3 (delete the previous batch with
    RETURNING into one ledger block, insert this batch, bump counters); packets/s."""
    from schnitzel_core import store as st

    for stmt in ddl:
        c.execute(stmt)
    c.execute(st._LEDGER_BLOCKS_DDL)
    c.execute("CREATE TABLE counters (name VARCHAR PRIMARY KEY, value BIGINT NOT NULL DEFAULT 0)")
    c.executemany("INSERT INTO counters(name, value) VALUES (?, 0)", [(n,) for n in st.COUNTER_NAMES])
    hs = dict(zip((p.idempotency_key for p in pk), st.key_hashes([p.idempotency_key for p in pk])))
    prev: list = []
    t0 = time.perf_counter()
    for i in range(0, len(rows) + batch, batch):
        c.execute("BEGIN IMMEDIATE")
        if prev:
            got = c.execute(f"DELETE FROM queue WHERE id IN ({','.join('?' * len(prev))}) RETURNING id, size, key",
                            prev).fetchall()
            c.execute("INSERT INTO ledger_blocks(delivered_ns, n, hashes) VALUES (?, ?, ?)",
                      (1, len(got), st._pack_hashes([hs[g[2]] for g in got])))
        chunk = rows[i:i + batch]
        if chunk:
            cur = c.executemany(ins, chunk)
            last = c.execute("SELECT last_insert_rowid()").fetchone()[0]
            prev = list(range(last - cur.rowcount + 1, last + 1))
        else:
            prev = []
        c.executemany("UPDATE counters SET value = value + ? WHERE name = ?",
                      [(len(chunk), "depth"), (len(chunk), "accepted"), (100, "bytes"), (len(chunk), "delivered")])
        c.execute("COMMIT")
    dt = time.perf_counter() - t0
    assert c.execute("SELECT count(*) FROM queue").fetchone()[0] == 0
    c.close()
    return len(rows) / dt


def bench_raw_schema(d: str, sync: str, batch: int, pk):
    """Bare sqlite3 running exactly the store's statements on the store's schema (same table,
    unique key index, one ledger block per commit, counters), with everything Python-side precomputed: the
    SQLite share of the store's cost, without its Python."""
    from schnitzel_core import store as st

    c = raw_conn(os.path.join(d, f"rawschema-{sync}-{batch}.db"), sync)
    rows = [(p.idempotency_key, p.stream_id, p.seq, p.epoch, p.kind, p.schema, p.content_type, p.stamp_ns,
             p.frame_id, p.packet_id, p.payload, None, None, len(p.payload) + 256, "*") for p in pk]
    return _store_sql_loop(c, st._DDL_V1[:4], rows, st._ENQUEUE_SQL % time.time_ns(), pk, batch)


LEAN_DDL = ("CREATE TABLE queue (id INTEGER PRIMARY KEY AUTOINCREMENT, key VARCHAR NOT NULL, hdr BLOB NOT NULL, "
            "payload BLOB, size INTEGER NOT NULL, sinks VARCHAR NOT NULL, enq_ns BIGINT NOT NULL, "
            "attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, avail_ns BIGINT NOT NULL DEFAULT 0)",
            "CREATE UNIQUE INDEX ix_queue_key ON queue(key)")
LEAN_INSERT = "INSERT OR IGNORE INTO queue (key, hdr, payload, size, sinks, enq_ns) VALUES (?, ?, ?, ?, ?, %d)"


def lean_header(p) -> bytes:
    """The packet fields besides key and payload, packed in one BLOB (JSON array)."""
    import json

    return json.dumps([p.stream_id, p.seq, p.epoch, p.kind, p.schema, p.content_type, p.stamp_ns, p.frame_id,
                       p.packet_id, p.meta or None, None], separators=(",", ":")).encode()


def bench_raw_lean(d: str, sync: str, batch: int, pk):
    """As bench_raw_schema, on the leaner queue table (LEAN_DDL): the SQL floor after a migration."""
    c = raw_conn(os.path.join(d, f"rawlean-{sync}-{batch}.db"), sync)
    rows = [(p.idempotency_key, lean_header(p), p.payload, len(p.payload) + 256, "*") for p in pk]
    return _store_sql_loop(c, LEAN_DDL, rows, LEAN_INSERT % time.time_ns(), pk, batch)


def cpu_split(d: str, rounds: int, n: int = 20000, batch: int = 100) -> list:
    """CPU time (process_time) per batch, synchronous=NORMAL (a WAL commit then waits for no fsync,
    so this is the work each variant makes the CPU do, whatever the disk), min over interleaved
    rounds in random order: raw insert+delete, the store's statements on the v3 schema and on the
    lean schema (rows built in advance), the lean schema with its header packed (JSON) inside the
    timing, and DurableStore itself. Returns markdown lines."""
    import random

    from schnitzel_core import store as st

    def sql(path, ddl, ins, rows, pk, full=True):
        c = raw_conn(path, "NORMAL")
        c.execute("DROP TABLE q")
        for x in ddl:
            c.execute(x)
        c.execute(st._LEDGER_BLOCKS_DDL)
        c.execute("CREATE TABLE counters (name VARCHAR PRIMARY KEY, value BIGINT NOT NULL DEFAULT 0)")
        c.executemany("INSERT INTO counters(name, value) VALUES (?, 0)", [(x,) for x in st.COUNTER_NAMES])
        prev: list = []
        t0 = time.process_time()
        for i in range(0, n, batch):
            chunk = rows[i:i + batch] if rows is not None else \
                [(p.idempotency_key, lean_header(p), p.payload, len(p.payload) + 256, "*") for p in pk[i:i + batch]]
            c.execute("BEGIN IMMEDIATE")
            if prev:
                marks = ",".join("?" * len(prev))
                if full:
                    c.execute(f"DELETE FROM queue WHERE id IN ({marks}) RETURNING id, size, key", prev).fetchall()
                    c.execute("INSERT INTO ledger_blocks(delivered_ns, n, hashes) VALUES (?, ?, ?)",
                              (1, len(prev), b"x" * 16 * len(prev)))
                else:
                    c.execute(f"DELETE FROM queue WHERE id IN ({marks})", prev)
            cur = c.executemany(ins, chunk)
            last = c.execute("SELECT last_insert_rowid()").fetchone()[0]
            prev = list(range(last - cur.rowcount + 1, last + 1))
            if full:
                c.executemany("UPDATE counters SET value = value + ? WHERE name = ?",
                              [(len(chunk), "depth"), (len(chunk), "accepted"), (100, "bytes"), (len(chunk), "delivered")])
            c.execute("COMMIT")
        t = time.process_time() - t0
        c.close()
        return t / (n / batch) * 1e3

    def store(path, pk):
        s = DurableStore(path, synchronous="NORMAL")
        prev: list = []
        t0 = time.process_time()
        for i in range(0, n, batch):
            s.write(pk[i:i + batch], None, [(prev, "*")] if prev else ())
            prev = [r.id for r in s.lease(batch)]
        t = time.process_time() - t0
        s.close()
        return t / (n / batch) * 1e3

    v3_ddl = [st._DDL_V1[1], "CREATE UNIQUE INDEX ix_queue_key ON queue(key)"]
    lean_ins = LEAN_INSERT % 123
    variants = {
        "raw insert+delete (id, key, payload)": lambda path, pk: sql(
            path, ["CREATE TABLE queue (id INTEGER PRIMARY KEY, key TEXT, payload BLOB)"],
            "INSERT INTO queue (key, payload) VALUES (?, ?)", [(p.idempotency_key, p.payload) for p in pk], pk,
            full=False),
        "store's statements, v3 schema (19 columns), rows built in advance": lambda path, pk: sql(
            path, v3_ddl, st._ENQUEUE_SQL % 123,
            [(p.idempotency_key, p.stream_id, p.seq, p.epoch, p.kind, p.schema, p.content_type, p.stamp_ns,
              p.frame_id, p.packet_id, p.payload, None, None, len(p.payload) + 256, "*") for p in pk], pk),
        "store's statements, lean schema, rows and headers built in advance": lambda path, pk: sql(
            path, list(LEAN_DDL), lean_ins,
            [(p.idempotency_key, lean_header(p), p.payload, len(p.payload) + 256, "*") for p in pk], pk),
        "store's statements, lean schema, header packed (JSON) inside the timing": lambda path, pk: sql(
            path, list(LEAN_DDL), lean_ins, None, pk),
        "store's statements, lean schema without the unique key index": lambda path, pk: sql(
            path, LEAN_DDL[:1], lean_ins,
            [(p.idempotency_key, lean_header(p), p.payload, len(p.payload) + 256, "*") for p in pk], pk),
        "DurableStore.write + lease (v3, every guarantee on)": store,
    }
    res: dict = {k: [] for k in variants}
    for r in range(rounds):
        items = list(enumerate(variants.items()))
        random.shuffle(items)
        for j, (k, fn) in items:
            res[k].append(fn(os.path.join(d, f"cpu{j}r{r}.db"), packets(n, f"cpu{j}r{r}")))
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
    raw = min(res["raw insert+delete (id, key, payload)"])
    lines = [f"CPU per batch of {batch} (`--cpu-split`: process_time, synchronous=NORMAL, min of {rounds} "
             "interleaved rounds in random order):", "",
             "| variant | CPU ms per batch | x raw insert+delete |", "| --- | ---: | ---: |"]
    lines += [f"| {k} | {min(v):.3f} | {min(v) / raw:.2f}x |" for k, v in res.items()]
    return lines


def load_store(path: str):
    """DurableStore from another store module (relative imports resolve in schnitzel_core)."""
    spec = importlib.util.spec_from_file_location("schnitzel_core._store_compare", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.DurableStore


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=20000)
    ap.add_argument("--batches", default="10,100,1000")
    ap.add_argument("--dir", default="", help="where the databases go (default: a temp dir under /tmp)")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--compare-with", default="", help="another store.py to measure in the same run ('before')")
    ap.add_argument("--rounds", type=int, default=3, help="median of this many rounds per cell")
    ap.add_argument("--cpu-split", type=int, default=0, metavar="ROUNDS",
                    help="also measure CPU per batch of each variant (batch 100, NORMAL), min of ROUNDS rounds")
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    before_cls = load_store(a.compare_with) if a.compare_with else None
    rows = []
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    with tempfile.TemporaryDirectory(dir=a.dir or None) as d:
        for sync in ("FULL", "NORMAL"):
            for b in batches:
                n = a.packets if b >= 100 else a.packets // 5
                cells: dict = {k: [] for k in ("ours", "sep", "nol", "raw", "raw_del", "before", "raw_schema", "raw_lean")}
                for r in range(a.rounds):  # interleaved, so drift hits every column alike
                    tag = f"{sync}{b}r{r}"
                    pk = packets(n, tag)
                    cells["raw"].append(bench_raw(d, sync, b, pk, False))
                    cells["raw_del"].append(bench_raw(d, sync, b, pk, True))
                    cells["raw_schema"].append(bench_raw_schema(d, sync, b, pk))
                    cells["raw_lean"].append(bench_raw_lean(d, sync, b, pk))
                    cells["ours"].append(bench_store(d, sync, b, pk, tag=tag))
                    if before_cls is not None:
                        cells["before"].append(bench_store(d, sync, b, packets(n, "old" + tag), store_cls=before_cls,
                                                           tag="old" + tag))
                    cells["sep"].append(bench_store_separate(d, sync, b, packets(n, f"sep{tag}")))
                    cells["nol"].append(bench_store(d, sync, b, packets(n, f"nol{tag}"), ledger=False, tag=tag))
                    for f in os.listdir(d):
                        os.unlink(os.path.join(d, f))
                m = {k: med(v) if v else 0.0 for k, v in cells.items()}
                rows.append((sync, b, n, m["ours"], m["sep"], m["nol"], m["raw"], m["raw_del"], m["before"],
                             m["raw_schema"], m["raw_lean"]))
                print(f"{sync:6} batch {b:5}: store {m['ours']:9.0f}/s  (before {m['before']:9.0f}/s, 2 commits "
                      f"{m['sep']:9.0f}/s, no ledger {m['nol']:9.0f}/s)  raw insert {m['raw']:9.0f}/s  "
                      f"raw insert+delete {m['raw_del']:9.0f}/s  raw, store's schema {m['raw_schema']:9.0f}/s  "
                      f"raw, lean schema {m['raw_lean']:9.0f}/s", flush=True)
    has_before = before_cls is not None
    head = "| synchronous | batch | packets | store pkt/s |" + (" before pkt/s |" if has_before else "") + \
        " store, 2 commits | store, ledger off | raw insert pkt/s | raw insert+delete pkt/s | " \
        "raw, store's statements pkt/s | raw, lean schema pkt/s | store / raw insert+delete | " \
        "store / raw, store's statements | raw, store's statements / raw insert+delete | " \
        "raw, lean schema / raw insert+delete |"
    lines = [head, "| --- | ---: | ---: | ---: |" + (" ---: |" if has_before else "") +
             " ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for sync, b, n, ours, sep, nol, raw, raw_del, before, raw_schema, raw_lean in rows:
        lines.append(f"| {sync} | {b} | {n} | {ours:,.0f} |" + (f" {before:,.0f} |" if has_before else "") +
                     f" {sep:,.0f} | {nol:,.0f} | {raw:,.0f} | {raw_del:,.0f} | {raw_schema:,.0f} | "
                     f"{raw_lean:,.0f} | {ours / raw_del:.2f}x | {ours / raw_schema:.2f}x | "
                     f"{raw_schema / raw_del:.2f}x | {raw_lean / raw_del:.2f}x |")
    full100 = next((r for r in rows if r[0] == "FULL" and r[1] == 100), None)
    if full100:
        ratio, pps = full100[3] / full100[7], full100[3]
        pk = packets(20000, "enc")
        t = time.perf_counter()
        for p in pk:
            lean_header(p)
        enc_us = (time.perf_counter() - t) / len(pk) * 1e6
        us = lambda r: 1e6 / r  # noqa: E731
        proj = us(full100[10]) + us(full100[3]) - us(full100[9])
        split = (f"Per packet at batch 100, FULL (1e6 / rate): store {us(full100[3]):.1f} us; its statements alone "
                 f"{us(full100[9]):.1f} us, so {us(full100[3]) - us(full100[9]):.1f} us of the store is Python; "
                 f"the lean schema's statements {us(full100[10]):.1f} us; raw insert+delete {us(full100[7]):.1f} us "
                 f"(0.5x of raw = {2 * us(full100[7]):.1f} us). A store on the lean schema with today's Python "
                 f"(a header codec no dearer than today's row building) would take about {proj:.1f} us per packet "
                 f"(= {1e6 / proj:,.0f}/s, {us(full100[7]) / proj:.2f}x raw insert+delete); packing the header "
                 f"as JSON adds {enc_us:.1f} us per packet.")
        lines += ["", f"Median of {a.rounds} interleaved rounds per cell. Targets at batch 100, FULL: "
                      f">= 0.5x raw insert+delete -> {ratio:.2f}x ({'met' if ratio >= 0.5 else 'NOT met'}); "
                      f">= 100,000 packets/s -> {pps:,.0f}/s ({'met' if pps >= 100_000 else 'NOT met'}).",
                  split,
                  "Columns: 'store' = `DurableStore.write(batch, acks of the previous batch)` (one commit) + "
                  "`lease(batch)`, every guarantee on; 'raw insert+delete' = the same logical work in bare sqlite3 "
                  "(one commit per batch: executemany INSERT of (key, payload), DELETE of the previous batch by "
                  "id); 'raw insert' = executemany INSERT + COMMIT only (nothing deleted); 'raw, store's statements' = "
                  "bare sqlite3 running the store's own statements on the store's schema (19 columns, unique key "
                  "index, one ledger block, counters; one commit per batch) with all Python work precomputed, i.e. the "
                  "SQLite share of the store's cost; 'raw, lean schema' = the same on the proposed leaner queue table (key, one packed header BLOB, payload and the columns the store queries on; header packed in advance). 'before' = the same 'store' measurement of the store module "
                  f"given with --compare-with ({os.path.basename(a.compare_with) or 'none'})."]
    if a.cpu_split:
        with tempfile.TemporaryDirectory(dir=a.dir or None) as d:
            lines += [""] + cpu_split(d, a.cpu_split)
    print()
    print("\n".join(lines))
    if not a.no_record:
        record("bench_store.py", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

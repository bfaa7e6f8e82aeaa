"""Delivery fault tests (issue 5, items 2-5) with real processes and real faults.

The queue and the HTTP sink run as their plugin logic inside one worker process
(test/delivery/_worker.py, wired in-process instead of over DDS); the reference backend is
its own process. Faults: SIGKILL of either process, a backend answering 503, a backend
closing connections without a response, a poison payload, and file writes failing
(RLIMIT_FSIZE lowered on the running worker: what a full disk looks like to SQLite).
"""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _faults import Backend, Worker, packet, queue_stats, wait_until  # noqa: E402


@pytest.fixture
def procs(tmp_path):
    made = []

    def make(cls, *a, **kw):
        obj = cls(tmp_path, *a, **kw)
        made.append(obj)
        return obj

    yield make
    for obj in reversed(made):
        obj.kill()


def cli(*args):
    return subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_sigkill_with_200_pending_then_restart_delivers_all(procs):
    be = procs(Backend)
    be.start()
    be.control(fail_for_s=3600)  # backend answers 503: rows pile up
    w = procs(Worker, be.url)
    w.start()
    sent = [packet(i) for i in range(1, 201)]
    for p in sent:
        w.send(p)
    assert wait_until(lambda: w.counter("accepted") == 200, 20), w.status
    w.kill()  # SIGKILL with 200 rows pending
    assert queue_stats(w.db)["depth"] == 200
    be.control(fail_for_s=0)
    w.start()
    assert wait_until(lambda: be.stats()["unique_keys"] == 200, 30), be.stats()
    assert set(be.keys()) == {p.idempotency_key for p in sent}
    assert wait_until(lambda: w.status.get("counters", {}).get("depth", -1) == 0, 10)
    w.kill()
    st = queue_stats(w.db)
    assert st["depth"] == 0 and st["counters"]["delivered"] == 200


def test_sigkill_between_2xx_and_ack_duplicate_is_absorbed_by_key(procs):
    be = procs(Backend)
    be.start()
    be.control(fail_for_s=3600)
    w = procs(Worker, be.url)
    w.start(crash_after_delivered=1)  # SIGKILL itself after the first 2xx, before any ack
    sent = [packet(i) for i in range(1, 31)]
    for p in sent:
        w.send(p)
    assert wait_until(lambda: w.counter("accepted") == 30, 20)
    be.control(fail_for_s=0)
    assert wait_until(lambda: not w.alive(), 20), "the worker should have crashed after the first 2xx"
    first = be.keys()
    assert first, "the backend stored something before the crash"
    w.start()
    assert wait_until(lambda: be.stats()["unique_keys"] == 30, 30), be.stats()
    # every row confirmed: the re-sent copies have all arrived (the last new key can arrive
    # before them when the restarted sink splits the rows over several requests)
    assert wait_until(lambda: w.status.get("counters", {}).get("depth", -1) == 0, 10)
    keys = be.keys()
    assert set(keys) == {p.idempotency_key for p in sent}
    twice = [k for k, n in keys.items() if n >= 2]
    assert twice and set(twice) <= set(first)  # re-sent after the restart, stored once
    st = be.stats()
    assert st["unique_keys"] == 30 and st["duplicates"] >= 1


def test_poison_row_dead_lettered_healthy_rows_flow_and_redrive_resends(procs):
    be = procs(Backend, reject_marker="POISON")
    be.start()
    w = procs(Worker, be.url)
    w.start()
    sent = [packet(i, note="POISON" if i == 25 else "ok") for i in range(1, 51)]
    for p in sent:
        w.send(p)
    assert wait_until(lambda: be.stats()["unique_keys"] == 49, 30), be.stats()
    poison_key = sent[24].idempotency_key
    assert poison_key not in be.keys()
    assert wait_until(lambda: w.status.get("counters", {}).get("dead", 0) == 1, 10)
    out = cli("queue", "dlq", str(w.db), "--format", "json")
    assert out.returncode == 0, out.stderr
    (dead,) = json.loads(out.stdout)
    assert dead["key"] == poison_key and dead["seq"] == 25 and "POISON" in dead["reason"]
    assert "rejected by sink" in dead["reason"]
    # the operator fixes the backend, then re-drives the row while the queue runs
    be.control(reject_marker="")
    out = cli("queue", "redrive", str(w.db))
    assert out.returncode == 0 and "redriven 1" in out.stdout, out.stderr
    assert wait_until(lambda: be.stats()["unique_keys"] == 50, 20), be.stats()
    assert poison_key in be.keys()
    assert wait_until(lambda: w.status.get("counters", {}).get("depth", -1) == 0, 10)


def test_503_for_20s_breaker_probes_then_closes_within_one_probe_interval(procs):
    be = procs(Backend)
    be.start()
    w = procs(Worker, be.url, sink_params={"failure_threshold": 3, "probe_interval_s": 1.0})
    w.start()
    w.send(packet(0))
    assert wait_until(lambda: be.stats()["unique_keys"] == 1, 10)
    be.control(fail_for_s=20)
    t_fail = time.monotonic()
    seq, blocked = 1, []
    samples = {}
    while time.monotonic() - t_fail < 20.0:
        blocked.append(w.send(packet(seq)))
        seq += 1
        el = time.monotonic() - t_fail
        for mark in (5, 19):
            if el >= mark and mark not in samples:
                samples[mark] = (el, be.stats()["failed"])
        time.sleep(0.1)
    (t5, f5), (t19, f19) = samples[5], samples[19]
    probe_rate = (f19 - f5) / (t19 - t5)
    assert 0.5 <= probe_rate <= 1.3, f"attempts while open: {probe_rate:.2f}/s (probe interval 1 s)"
    assert w.status["breaker"] in ("open", "half_open")
    # recovery: the breaker closes within one probe interval, then the backlog drains
    t_end = t_fail + 20.0
    assert wait_until(lambda: be.stats()["unique_keys"] > 1, 5, step=0.02)
    first_after = time.monotonic() - t_end
    assert first_after <= 1.0 + 0.35, f"first delivery {first_after:.2f}s after recovery"
    assert wait_until(lambda: be.stats()["unique_keys"] == seq, 20)
    assert wait_until(lambda: w.status["breaker"] == "closed", 5)
    assert max(blocked) < 0.1  # the producer never waited on the outage


def test_connection_dropped_without_response_is_retried(procs):
    be = procs(Backend)
    be.start()
    be.control(drop_next=3)
    w = procs(Worker, be.url, sink_params={"batch": False})
    w.start()
    sent = [packet(i) for i in range(1, 11)]
    for p in sent:
        w.send(p)
    assert wait_until(lambda: be.stats()["unique_keys"] == 10, 30), be.stats()
    assert be.stats()["dropped"] == 3
    assert wait_until(lambda: w.status["sink"].get("retries", 0) >= 1, 5), w.status
    assert w.alive()


@pytest.mark.skipif(not shutil.which("prlimit"), reason="needs util-linux prlimit")
def test_disk_full_reports_keeps_accepted_refuses_new_counted(procs):
    be = procs(Backend)
    be.start()
    be.control(fail_for_s=3600)  # keep rows in the queue
    w = procs(Worker, be.url, queue_params={"probe_s": 1.0})
    w.start()
    kept = [packet(i) for i in range(1, 21)]
    for p in kept:
        w.send(p)
    assert wait_until(lambda: w.counter("accepted") == 20, 20)
    # every file write of the running queue process now fails (EFBIG), like a full disk
    subprocess.run(["prlimit", "--pid", str(w.proc.pid), "--fsize=1:"], check=True)
    refused = [packet(i) for i in range(21, 41)]
    for p in refused:
        w.send(p)
        time.sleep(0.01)

    def refused_count():
        c = w.status.get("counters", {})
        return sum(v for k, v in c.items() if k.startswith("refused_"))

    assert wait_until(lambda: refused_count() == 20, 10), w.status
    h = w.status["health"]
    assert h["level"] == "error" and "refusing new packets" in h["message"]
    assert "disk" in h["message"] or "I/O" in h["message"]
    assert any(k in w.status["counters"] for k in ("refused_disk_full", "refused_io_error"))
    assert w.counter("accepted") == 20 and w.alive()
    # space comes back: the queue accepts again on its own (write probe every probe_s)
    subprocess.run(["prlimit", "--pid", str(w.proc.pid), "--fsize=unlimited:"], check=True)
    later = [packet(i) for i in range(41, 51)]
    for p in later:
        w.send(p)
        time.sleep(0.3)
    assert wait_until(lambda: w.status["health"]["level"] == "ok", 5), w.status["health"]
    be.control(fail_for_s=0)
    assert wait_until(lambda: w.status.get("counters", {}).get("depth", -1) == 0
                      and be.stats()["unique_keys"] >= 20, 30)
    keys = set(be.keys())
    assert {p.idempotency_key for p in kept} <= keys            # nothing accepted was lost
    assert not keys & {p.idempotency_key for p in refused}    # refused means never accepted
    # accepted again once the next write probe (probe_s = 1 s) succeeded: the last ones at least
    assert {p.idempotency_key for p in later[-5:]} <= keys

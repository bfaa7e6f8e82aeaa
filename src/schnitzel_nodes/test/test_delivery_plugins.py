"""durable_queue, sink_router, http_sink, jsonl_sink logic through LogicHarness (no DDS)."""
import http.server
import json
import threading
import time

import pytest

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Ack
from schnitzel_core.testing import LogicHarness, wait_for
from schnitzel_nodes.plugins.delivery import (DurableQueueLogic, HttpSinkLogic, JsonlSinkLogic,
                                              SinkRouterLogic)


def pk(i, kind="event", **kw):
    return Packet.from_json(kw.pop("stream_id", "cam0"), i, kind, {"i": i}, **kw)


def queue(tmp_path, **params):
    p = {"path": str(tmp_path / "q.db"), "commit_ms": 1.0}
    p.update(params)
    return LogicHarness(DurableQueueLogic, p, node_id="q")


def accept(h, packets):
    for p in packets:
        h.send("in", p)
    assert h.logic.committer.flush(5)


def delivered(h, sink, packets):
    for p in packets:
        h.logic.on_ack(Ack("q", sink, p.idempotency_key, int(p.meta["schnitzel.row_id"])))
    assert h.logic.committer.flush(5)


def test_queue_persists_then_forwards_and_removes_only_on_ack(tmp_path):
    h = queue(tmp_path)
    accept(h, [pk(i) for i in range(5)])
    assert h.ctx.counters["accepted"] == 5
    out = h.tick()
    assert [p.seq for p in out] == list(range(5))
    assert all(p.meta["schnitzel.queue"] == "q" and p.meta["schnitzel.row_id"] for p in out)
    assert h.tick() == []  # leased: not sent twice
    delivered(h, "http", out[:3])
    st = h.logic.store.stats()
    assert st.depth == 2 and st.counters["delivered"] == 3
    h.stop()


def test_queue_restart_resends_unacknowledged_rows(tmp_path):
    h = queue(tmp_path)
    accept(h, [pk(i) for i in range(4)])
    first = h.tick()
    delivered(h, "http", first[:1])
    h.stop()
    h2 = queue(tmp_path)
    again = h2.tick()
    assert [p.seq for p in again] == [1, 2, 3]
    assert [p.meta["schnitzel.row_id"] for p in again] == [p.meta["schnitzel.row_id"] for p in first[1:]]
    h2.stop()


def test_queue_resends_after_lease_expiry(tmp_path):
    h = queue(tmp_path, lease_s=0.2)
    accept(h, [pk(1)])
    assert len(h.tick()) == 1
    assert h.tick() == []
    time.sleep(0.25)
    again = h.tick()
    assert len(again) == 1 and again[0].meta["schnitzel.attempt"] == "1"
    h.stop()


def test_retry_keeps_row_leased_and_rejected_goes_to_dlq(tmp_path):
    h = queue(tmp_path, lease_s=30)
    accept(h, [pk(1), pk(2)])
    a, b = h.tick()
    h.logic.on_ack(Ack("q", "http", a.idempotency_key, int(a.meta["schnitzel.row_id"]), "retry", "HTTP 503"))
    h.logic.on_ack(Ack("q", "http", b.idempotency_key, int(b.meta["schnitzel.row_id"]), "rejected", "HTTP 400: bad"))
    h.logic.on_ack(Ack("other-queue", "http", a.idempotency_key, 1, "delivered"))  # not ours: ignored
    assert h.tick() == []  # the sink keeps retrying `a`: no re-send before the lease ends
    store = h.logic.store
    (row,) = store.peek()
    assert row.packet.seq == 1 and row.attempts == 1 and row.last_error == "HTTP 503"
    (dead,) = store.dlq()
    assert dead.packet.seq == 2 and dead.reason == "rejected by http: HTTP 400: bad"
    assert h.ctx.counters["dead_lettered"] == 1
    h.stop()


def test_max_attempts_dead_letters(tmp_path):
    h = queue(tmp_path, max_attempts=2)
    accept(h, [pk(1)])
    (a,) = h.tick()
    for _ in range(2):
        h.logic.on_ack(Ack("q", "http", a.idempotency_key, int(a.meta["schnitzel.row_id"]), "retry", "timeout"))
        h.tick()
    assert h.logic.store.stats().dead == 1
    h.stop()


def test_fan_out_counts_delivered_only_when_every_routed_sink_confirmed(tmp_path):
    routes = [{"kind": "event", "to": ["http"]}, {"meta": {"severity": "high"}, "to": ["http", "file"]}]
    h = queue(tmp_path, routes=routes, lease_s=0.2)
    r = LogicHarness(SinkRouterLogic, {"sinks": ["http", "file"], "routes": routes}, node_id="router")
    accept(h, [pk(1, meta={"severity": "high"}), pk(2), pk(3, kind="telemetry")])
    assert h.ctx.counters["dropped_unrouted"] == 1  # no route, no default: counted, not queued
    out = h.tick()
    assert [p.meta.get("schnitzel.sinks") for p in out] == ["file,http", "http"]
    for p in out:
        r.send("in", p)
    assert [p.seq for p in r.out("out0")] == [1, 2] and [p.seq for p in r.out("out1")] == [1]
    delivered(h, "http", out)
    assert h.logic.store.stats().depth == 1  # row 1 still waits for "file"
    time.sleep(0.25)
    (again,) = h.tick()
    assert again.seq == 1 and again.meta["schnitzel.sinks"] == "file"
    r.clear()
    r.send("in", again)
    assert r.out("out0") == [] and [p.seq for p in r.out("out1")] == [1]  # only the missing sink
    delivered(h, "file", [again])
    assert h.logic.store.stats().depth == 0
    h.stop()


def test_router_rules_and_unknown_target(tmp_path):
    with pytest.raises(ValueError, match="not in 'sinks'"):
        LogicHarness(SinkRouterLogic, {"sinks": ["a"], "routes": [{"kind": "x", "to": ["b"]}]})
    with pytest.raises(ValueError, match="sinks"):
        LogicHarness(SinkRouterLogic, {"sinks": []})
    r = LogicHarness(SinkRouterLogic, {"sinks": ["a", "b"]}, node_id="router")
    assert len(r.send("in", pk(1))) == 2  # no routes: every sink
    tagged = pk(2).with_meta(**{"schnitzel.queue": "q", "schnitzel.row_id": 7, "schnitzel.sinks": "zzz"})
    assert r.send("in", tagged) == []
    (ack,) = r.ctx.acks
    assert ack.outcome == "rejected" and ack.row_id == 7 and "zzz" in ack.reason


class Backend(http.server.BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        items = body["batch"] if "batch" in body else [body]
        self.server.got.extend(i["idempotency_key"] for i in items)
        code = self.server.code
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *a):
        pass


@pytest.fixture
def backend():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    srv.daemon_threads = True
    srv.got, srv.code = [], 200
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_http_sink_acks_each_queued_packet_and_never_crashes(backend):
    url = f"http://127.0.0.1:{backend.server_address[1]}/events"
    h = LogicHarness(HttpSinkLogic, {"url": url, "backoff_base_s": 0.01, "backoff_cap_s": 0.02,
                                     "failure_threshold": 2, "probe_interval_s": 0.1}, node_id="http")
    ps = [pk(i).with_meta(**{"schnitzel.queue": "q", "schnitzel.row_id": i + 1}) for i in range(5)]
    for p in ps:
        h.send("in", p)
    h.send("in", pk(99))  # standalone packet: delivered, nothing to acknowledge
    assert wait_for(lambda: len(h.ctx.acks) == 5 and len(backend.got) == 6)
    assert sorted(a.row_id for a in h.ctx.acks) == [1, 2, 3, 4, 5]
    assert all(a.outcome == "delivered" and a.sink_id == "http" and a.queue_id == "q" for a in h.ctx.acks)
    backend.code = 503
    h.ctx.acks.clear()
    h.send("in", pk(7).with_meta(**{"schnitzel.queue": "q", "schnitzel.row_id": 70}))
    assert wait_for(lambda: h.logic.worker.state.value != "closed")
    assert h.ctx.acks and all(a.outcome == "retry" and a.reason.startswith("HTTP 503") for a in h.ctx.acks)
    assert h.logic.health()["level"] == "warn"
    backend.code = 400
    assert wait_for(lambda: any(a.outcome == "rejected" for a in h.ctx.acks))
    h.stop()


def test_http_sink_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="http_sink .*url"):
        LogicHarness(HttpSinkLogic, {"url": "not a url"})
    with pytest.raises(ValueError, match="NO_SUCH_TOKEN_VAR"):
        LogicHarness(HttpSinkLogic, {"url": "http://127.0.0.1:1/x", "token_env": "NO_SUCH_TOKEN_VAR"})


def test_jsonl_sink_standalone_and_from_queue(tmp_path):
    path = tmp_path / "out.jsonl"
    h = LogicHarness(JsonlSinkLogic, {"path": str(path)}, node_id="file")
    h.send("in", pk(1))
    h.send("in", pk(2).with_meta(**{"schnitzel.queue": "q", "schnitzel.row_id": 5}))
    assert wait_for(lambda: len(h.ctx.acks) == 1 and len(path.read_text().splitlines()) == 2)
    assert h.ctx.acks[0].row_id == 5 and h.ctx.acks[0].outcome == "delivered"
    h.stop()


def test_queue_capacity_refusals_are_counted(tmp_path):
    h = queue(tmp_path, max_rows=3)
    accept(h, [pk(i) for i in range(5)])
    assert h.ctx.counters["accepted"] == 3 and h.ctx.counters["refused_full"] == 2
    h.stop()


def test_queue_reports_depth_and_oldest_age(tmp_path):
    h = queue(tmp_path, stats_s=0.05)
    accept(h, [pk(i) for i in range(3)])
    time.sleep(0.1)
    h.logic.deactivate()  # not forwarding: the backlog stays
    h.tick()
    assert h.ctx.counters["depth"] == 3 and h.ctx.counters["oldest_age_ms"] >= 50
    h.stop()


def test_queue_refuses_foreign_file_clearly(tmp_path):
    bad = tmp_path / "x.db"
    bad.write_text("not sqlite")
    with pytest.raises(RuntimeError, match="durable_queue q: .*not a SQLite database"):
        LogicHarness(DurableQueueLogic, {"path": str(bad)}, node_id="q")
    assert bad.read_text() == "not sqlite"


# ------------------------------------------------ the outbox's acknowledgement (issue 20.0)
def test_queue_acknowledges_outbox_packets_only_after_their_commit(tmp_path):
    from schnitzel_core.outbox import META_SENDER, Outbox

    box = Outbox("eb/out")
    h = queue(tmp_path)
    sent = [box.add(pk(i)) for i in range(1, 6)]
    for p in sent:
        h.send("in", p)
    assert h.logic.committer.flush(5)
    acks = [a for a in h.ctx.acks if a.outcome == "accepted"]
    assert acks and all(a.queue_id == "eb" and a.sink_id == "q" and a.idempotency_key == box.sender_id
                        for a in acks)
    assert len(acks) <= 5 and sum(len(a.seqs) for a in acks) < 2 * 5   # ranges, not one per packet
    for a in acks:
        box.ack(a.sink_id, a.seqs)
    assert box.pending == 0
    assert not any(META_SENDER in p.meta for p in h.tick())   # stored without the outbox tags
    # a copy re-sent after a lost acknowledgement: absorbed by its key, acknowledged again
    h.ctx.acks.clear()
    h.send("in", sent[0])
    assert h.logic.committer.flush(5)
    assert [a.seqs for a in h.ctx.acks if a.outcome == "accepted"] == [(1, 1)]
    assert h.ctx.counters["accepted"] == 5 and h.ctx.counters["duplicates"] == 1
    h.stop()


def test_queue_does_not_acknowledge_what_it_refused(tmp_path):
    from schnitzel_core.outbox import Outbox

    box = Outbox("eb/out")
    h = queue(tmp_path, max_rows=2, commit_rows=10, commit_ms=50.0)
    for i in range(1, 6):
        h.send("in", box.add(pk(i)))
    assert h.logic.committer.flush(5)
    assert h.ctx.counters.get("refused_full", 0) > 0
    assert [a for a in h.ctx.acks if a.outcome == "accepted"] == []   # the sender keeps all five
    h.stop()

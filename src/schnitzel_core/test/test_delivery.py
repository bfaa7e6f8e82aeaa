"""Sinks (HTTP, JSONL), routing rules and the retrying SinkWorker."""
import http.server
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from schnitzel_core.delivery import (DELIVERED, REJECTED, RETRY, DeliveryConfigError, HttpSink, JsonlSink,
                                     Outcome, Routes, Sink, SinkWorker, classify_status)
from schnitzel_core.packet import Packet
from schnitzel_core.resilience import Backoff, BreakerState, CircuitBreaker


def pk(i, **kw):
    stream = kw.pop("stream_id", "cam0")
    return Packet.from_json(stream, i, kw.pop("kind", "event"), {"i": i, **kw.pop("body", {})}, **kw)


# ------------------------------------------------------------ a scriptable HTTP server
class Scripted(http.server.BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802
        srv = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        srv.seen.append((dict(self.headers), body))
        status = srv.statuses.pop(0) if srv.statuses else 200
        if status == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        data = b'{"ok":true}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def scripted():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    srv.daemon_threads = True
    srv.seen, srv.statuses = [], []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url_of(srv, scheme="http"):
    return f"{scheme}://127.0.0.1:{srv.server_address[1]}/events"


def test_status_classification():
    assert [classify_status(s) for s in (200, 201, 204)] == [DELIVERED] * 3
    assert [classify_status(s) for s in (408, 429, 500, 502, 503, 504)] == [RETRY] * 6
    assert [classify_status(s) for s in (400, 401, 403, 404, 409, 413, 422)] == [REJECTED] * 7


def test_http_single_sends_key_header_and_json_body(scripted):
    sink = HttpSink(url_of(scripted), batch=False)
    p = pk(1)
    assert sink.deliver([p]) == [Outcome(DELIVERED)]
    headers, body = scripted.seen[0]
    assert headers["Idempotency-Key"] == p.idempotency_key
    assert headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert doc["idempotency_key"] == p.idempotency_key and doc["payload"] == {"i": 1}
    sink.close()


def test_http_outcomes_per_status_and_connection_errors(scripted):
    sink = HttpSink(url_of(scripted), batch=False, timeout_s=2)
    scripted.statuses[:] = [503, 429, 408, 400, 404, "drop", 201]
    got = [sink.deliver([pk(i)])[0] for i in range(7)]
    assert [o.status for o in got] == [RETRY, RETRY, RETRY, REJECTED, REJECTED, RETRY, DELIVERED]
    assert got[0].reason.startswith("HTTP 503") and got[3].reason.startswith("HTTP 400")
    assert "without a response" in got[5].reason or "connection" in got[5].reason
    # nothing listening: a retry, never an exception
    dead = HttpSink("http://127.0.0.1:9/events", timeout_s=1)
    o = dead.deliver([pk(1)])[0]
    assert o.status == RETRY and "connection" in o.reason


def test_http_batch_4xx_isolates_the_poison_item(scripted):
    sink = HttpSink(url_of(scripted), batch=True)
    scripted.statuses[:] = [400, 200, 400, 200]  # batch refused, then one by one: 2nd is poison
    out = sink.deliver([pk(1), pk(2), pk(3)])
    assert [o.status for o in out] == [DELIVERED, REJECTED, DELIVERED]
    assert json.loads(scripted.seen[0][1])["batch"][0]["seq"] == 1
    assert scripted.seen[0][0]["Idempotency-Key"].startswith("batch-")


def test_bearer_token_from_named_env_var(scripted, monkeypatch):
    monkeypatch.setenv("SZ_TEST_TOKEN", "s3cret")
    sink = HttpSink(url_of(scripted), token_env="SZ_TEST_TOKEN")
    assert sink.deliver([pk(1)])[0].ok
    assert scripted.seen[0][0]["Authorization"] == "Bearer s3cret"
    monkeypatch.delenv("SZ_TEST_TOKEN")
    with pytest.raises(DeliveryConfigError, match="SZ_TEST_TOKEN"):
        HttpSink(url_of(scripted), token_env="SZ_TEST_TOKEN")
    with pytest.raises(DeliveryConfigError, match="url"):
        HttpSink("ftp://x/y")


def test_tls_verification_on_by_default(scripted, tmp_path):
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    scripted.socket = ctx.wrap_socket(scripted.socket, server_side=True)
    o = HttpSink(url_of(scripted, "https")).deliver([pk(1)])[0]
    assert o.status == RETRY and "certificate" in o.reason.lower()
    assert HttpSink(url_of(scripted, "https"), ca_file=str(cert)).deliver([pk(2)])[0].ok
    assert HttpSink(url_of(scripted, "https"), verify_tls=False).deliver([pk(3)])[0].ok


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    db = tmp_path_factory.mktemp("be") / "events.db"
    proc = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.reference_backend", "--port", "0",
                             "--db", str(db), "--reject-marker", "POISON"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "listening on" in line, proc.stderr.read()
    base = line.split("http://")[1].split("/events")[0]
    yield f"http://{base}"
    proc.terminate()
    proc.wait(10)


def get(url):
    return json.loads(urllib.request.urlopen(url, timeout=5).read())


def test_reference_backend_stores_each_key_once(backend):
    sink = HttpSink(backend + "/events", batch=True)
    before = get(backend + "/stats")
    ps = [pk(i, stream_id="ref") for i in range(20)]
    assert all(o.ok for o in sink.deliver(ps))
    assert all(o.ok for o in sink.deliver(ps[:5]))                 # re-sent batch: absorbed
    assert HttpSink(backend + "/events", batch=False).deliver([ps[0]])[0].ok  # re-sent single
    st = get(backend + "/stats")
    assert st["unique_keys"] - before["unique_keys"] == 20
    assert st["duplicates"] - before["duplicates"] == 6
    poison = pk(99, stream_id="ref", body={"note": "POISON"})
    out = sink.deliver([pk(21, stream_id="ref"), poison])
    assert out[0].ok and out[1].status == REJECTED and "POISON" in out[1].reason
    single = HttpSink(backend + "/events", batch=False).deliver([poison])[0]
    assert single.status == REJECTED and single.reason.startswith("HTTP 400")


def test_jsonl_appends_and_rotates(tmp_path):
    path = tmp_path / "out" / "events.jsonl"
    sink = JsonlSink(str(path), fsync="always", rotate_bytes=2000, rotate_keep=2)
    for i in range(40):
        assert sink.deliver([pk(i)]) == [Outcome(DELIVERED)]
    sink.close()
    files = sorted(os.listdir(path.parent))
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]  # older ones beyond keep are gone
    for f in files:
        assert os.path.getsize(path.parent / f) <= 2000
    lines = [json.loads(x) for f in ("events.jsonl.2", "events.jsonl.1", "events.jsonl")
             for x in open(path.parent / f)]
    seqs = [d["seq"] for d in lines]
    assert seqs == list(range(seqs[0], 40))  # contiguous, newest last, nothing torn
    # append, not truncate, when reopened
    s2 = JsonlSink(str(path), fsync="never")
    s2.deliver([pk(100)])
    s2.close()
    assert json.loads(open(path).read().splitlines()[-1])["seq"] == 100
    with pytest.raises(DeliveryConfigError):
        JsonlSink(str(path), fsync="sometimes")


def test_jsonl_write_failure_is_retry_not_crash(tmp_path):
    d = tmp_path / "blocked"
    d.write_text("a file where a directory should be")
    o = JsonlSink(str(d / "x.jsonl")).deliver([pk(1)])
    assert o[0].status == RETRY and "cannot write" in o[0].reason


def test_routes_fan_out_and_default():
    r = Routes([{"kind": "event", "to": ["backend"]},
                {"stream": "cam*", "meta": {"severity": "high"}, "to": ["backend", "archive"]},
                {"schema": "audit/*", "to": "audit"}], default=["archive"])
    assert r.targets(pk(1)) == ["backend"]
    assert r.targets(pk(1, meta={"severity": "high"})) == ["backend", "archive"]
    assert r.targets(pk(1, kind="telemetry", stream_id="imu")) == ["archive"]
    assert r.targets(pk(1, kind="telemetry", schema="audit/v1")) == ["audit"]
    assert r.targets_all == ("backend", "archive", "audit")
    with pytest.raises(DeliveryConfigError, match="unknown field"):
        Routes([{"knd": "x", "to": ["a"]}])
    with pytest.raises(DeliveryConfigError, match="'to'"):
        Routes([{"kind": "x"}])


class FlakySink(Sink):
    name = "flaky"

    def __init__(self):
        self.down = True
        self.calls = []

    def deliver(self, packets):
        self.calls.append((time.monotonic(), len(packets)))
        if self.down:
            return [Outcome(RETRY, "HTTP 503")] * len(packets)
        return [Outcome(DELIVERED)] * len(packets)


def test_worker_breaker_limits_attempts_to_probe_rate_then_drains():
    sink = FlakySink()
    done, retries = [], []
    w = SinkWorker(sink, batch_size=10, backoff=Backoff(0.01, 0.02),
                   breaker=CircuitBreaker(3, probe_interval_s=0.3),
                   on_done=lambda p, o: done.append(p.seq), on_retry=lambda ps, r: retries.append(r))
    w.start()
    for i in range(30):
        assert w.offer(pk(i))
    assert w.offer(pk(0))  # already buffered: absorbed, not duplicated
    time.sleep(1.6)
    assert w.state != BreakerState.CLOSED
    opened = [t for t, _ in sink.calls]
    # after 3 quick failures, about one probe per 0.3 s, each a single packet
    late = [c for c in sink.calls if c[0] > opened[0] + 0.3]
    assert 3 <= len(late) <= 7 and all(n == 1 for _, n in late)
    sink.down = False
    t_up = time.monotonic()
    while len(done) < 30 and time.monotonic() - t_up < 3:
        time.sleep(0.01)
    assert sorted(done) == list(range(30))
    assert w.state == BreakerState.CLOSED
    first_ok = min(t for t, _ in sink.calls if t >= t_up)
    assert first_ok - t_up <= 0.3 + 0.1  # closes within one probe interval
    assert retries and retries[0] == "HTTP 503"
    w.stop()


def test_worker_survives_a_sink_that_raises():
    class Boom(Sink):
        n = 0

        def deliver(self, packets):
            Boom.n += 1
            if Boom.n == 1:
                raise RuntimeError("bug")
            return [Outcome(DELIVERED)] * len(packets)

    done = []
    w = SinkWorker(Boom(), backoff=Backoff(0.01, 0.01), on_done=lambda p, o: done.append(p.seq))
    w.start()
    w.offer(pk(1))
    t0 = time.monotonic()
    while not done and time.monotonic() - t0 < 3:
        time.sleep(0.01)
    w.stop()
    assert done == [1]


def test_worker_remembers_delivered_keys_for_resends():
    """A row re-sent after its acknowledgement was lost is recognised (and the node re-acks
    it) instead of reaching the backend twice; the memory is bounded."""
    sink = FlakySink()
    sink.down = False
    done = []
    w = SinkWorker(sink, batch_size=10, on_done=lambda p, o: done.append(p.seq), remember=5)
    w.start()
    for i in range(8):
        assert w.offer(pk(i))
    t0 = time.monotonic()
    while len(done) < 8 and time.monotonic() - t0 < 3:
        time.sleep(0.01)
    w.stop()
    assert sorted(done) == list(range(8))
    assert [w.delivered_recently(pk(i).idempotency_key) for i in range(8)] == [False] * 3 + [True] * 5

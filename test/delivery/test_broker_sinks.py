"""mqtt_sink and kafka_sink behind the durable queue, against real brokers, with real faults.

MQTT: Debian's mosquitto, started by the test on 127.0.0.1 (skipped with the reason where it is
not installed; scripts/test.sh installs it). Kafka: librdkafka's built-in mock cluster, hosted
in its own process (test/delivery/_kafka_mock.py) that the test freezes to take the broker away.
The queue and the sink run as their plugin logic in one worker process (test/delivery/_worker.py),
the process the tests SIGKILL.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _faults import Worker, free_port, packet, queue_stats, wait_until  # noqa: E402

HERE = Path(__file__).resolve().parent
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
needs_mosquitto = pytest.mark.skipif(MOSQUITTO is None, reason="needs Debian's mosquitto broker (apt-get install "
                                     "mosquitto; scripts/test.sh installs it when run as root)")


class Broker:
    """A mosquitto on 127.0.0.1 with persistence, so a stop/start keeps sessions and queued messages."""

    def __init__(self, tmp: Path, acl: str = "") -> None:
        self.port = free_port()
        self.dir = tmp / "mosquitto"
        self.dir.mkdir(exist_ok=True)
        self.log = self.dir / "broker.log"
        conf = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence true",
                f"persistence_location {self.dir}/", "max_queued_messages 0", "autosave_interval 1"]
        if os.geteuid() == 0:
            conf.append("user root")   # as root mosquitto drops to user "mosquitto", who cannot write the test's tmp dir
        if acl:
            (self.dir / "acl").write_text(acl)
            conf.append(f"acl_file {self.dir / 'acl'}")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(conf) + "\n")
        self.proc = None
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=fh, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        assert wait_until(self._up, 10), self.log.read_text()[-2000:]

    def _up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file and exits (an orderly broker restart)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


class Subscriber:
    """A consumer with a persistent session (QoS 1): it gets everything the broker accepted."""

    def __init__(self, port: int, topic: str, v5: bool = True) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.messages = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="schnitzel-test-sub",
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                             **({} if v5 else {"clean_session": False}))
        self.c.reconnect_delay_set(0.1, 0.5)
        self.topic = topic
        props = None
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(self.topic, qos=1)
        self.c.on_message = self._on_message
        kw = {"clean_start": False, "properties": props} if v5 else {}
        self.c.connect("127.0.0.1", port, keepalive=10, **kw)
        self.c.loop_start()
        self.subscribed = True

    def _on_message(self, client, userdata, msg) -> None:
        body = json.loads(msg.payload)
        prop = dict(getattr(msg.properties, "UserProperty", []) or []) if msg.properties else {}
        with self.lock:
            self.messages.append({"topic": msg.topic, "key": body["idempotency_key"], "seq": body["seq"],
                                  "prop_key": prop.get("idempotency_key")})

    def keys(self) -> Counter:
        with self.lock:
            return Counter(m["key"] for m in self.messages)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def cleanup():
    items = []
    yield items.append
    for obj in reversed(items):
        try:
            obj()
        except Exception:  # noqa: BLE001 - tear-down goes on
            pass


def _mqtt_worker(tmp_path, broker, **params):
    sp = {"url": broker.url, "topic": "fleet/{stream_id}/{kind}", "timeout_s": 2.0, "reconnect_base_s": 0.05,
          "reconnect_cap_s": 0.5, "batch_size": 50, **params}
    return Worker(tmp_path, "", sink_params=sp, sink_plugin="mqtt_sink")


@needs_mosquitto
def test_mqtt_1000_events_through_broker_restart_and_sink_sigkill(tmp_path, cleanup):
    broker = Broker(tmp_path)
    broker.start()
    cleanup(broker.stop)
    sub = Subscriber(broker.port, "fleet/#")
    cleanup(sub.close)
    w = _mqtt_worker(tmp_path, broker)
    w.start()
    cleanup(w.kill)
    sent = [packet(i) for i in range(1, 1001)]
    key_of = {p.seq: p.idempotency_key for p in sent}
    for p in sent[:400]:
        w.send(p)
    assert wait_until(lambda: len(sub.keys()) >= 100, 30), w.status

    broker.stop()                        # outage: the sink cannot publish, rows stay queued
    for p in sent[400:700]:
        w.send(p)
    assert wait_until(lambda: w.counter("accepted") == 700, 30), w.status
    assert wait_until(lambda: w.status.get("sink", {}).get("retries", 0) > 0, 20), w.status
    pending = queue_stats(w.db)["depth"]
    assert pending > 0, "rows not yet confirmed by the broker must stay in the queue"
    w.kill()                             # SIGKILL of the sink's process with rows pending
    assert queue_stats(w.db)["depth"] >= pending

    broker.start()
    w.start()
    for p in sent[700:]:
        w.send(p)
    want = {p.idempotency_key for p in sent}
    assert wait_until(lambda: set(sub.keys()) >= want, 30), _missing_seqs(sub, sent)
    assert wait_until(lambda: w.status.get("counters", {}).get("depth", -1) == 0, 20), w.status
    got = sub.keys()
    assert set(got) == want                               # nothing lost, nothing foreign
    for m in sub.messages:                                # a duplicate is the same packet, same key
        assert m["key"] == key_of[m["seq"]] and m["prop_key"] == m["key"], m
        assert m["topic"] == "fleet/cam0/event"
    dups = sum(n - 1 for n in got.values())
    assert queue_stats(w.db)["dead"] == 0
    print(f"mqtt: 1000 keys, {dups} duplicates with the same key")


def _make_tls(d: Path) -> None:
    """A private CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=schnitzel test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "server.pem", "-days", "2", "-extfile", "san.ext")


@needs_mosquitto
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make test certificates")
def test_mqtts_verifies_the_broker_certificate_by_default(tmp_path):
    from schnitzel_core.sink_mqtt import MqttSink

    tls = tmp_path / "tls"
    tls.mkdir()
    _make_tls(tls)
    broker = Broker(tmp_path)
    conf = broker.conf.read_text().replace(f"listener {broker.port} 127.0.0.1",
                                           f"listener {broker.port} 127.0.0.1\ncafile {tls / 'ca.pem'}\n"
                                           f"certfile {tls / 'server.pem'}\nkeyfile {tls / 'server.key'}")
    broker.conf.write_text(conf)
    broker.start()
    try:
        url = f"mqtts://127.0.0.1:{broker.port}"
        sent = [packet(i) for i in range(1, 6)]
        # verification is on by default: a certificate from an unknown CA is never trusted
        sink = MqttSink(url, "fleet/{kind}", connect_wait_s=3.0, timeout_s=2.0)
        try:
            out = sink.deliver(sent)
            assert all(o.status == "retry" for o in out), out
            assert "certificate verify failed" in out[0].reason or "CERTIFICATE_VERIFY_FAILED" in out[0].reason, out[0]
        finally:
            sink.close()
        # the private CA given as ca_file: delivered, acknowledged by the broker
        # (a generous connect wait: it ends at the connection; the other test worker may be
        # building a clean clone on both cores meanwhile)
        sink = MqttSink(url, "fleet/{kind}", ca_file=str(tls / "ca.pem"), connect_wait_s=15.0)
        try:
            out = sink.deliver(sent)
            assert all(o.ok for o in out), out
        finally:
            sink.close()
    finally:
        broker.stop()


@needs_mosquitto
def test_mqtt_v311_key_in_payload_and_not_authorized_is_dead_lettered(tmp_path, cleanup):
    # anonymous clients may write fleet/# only: a PUBACK for another topic is "not authorized"
    broker = Broker(tmp_path, acl="topic readwrite fleet/#\n")
    broker.start()
    cleanup(broker.stop)
    sub = Subscriber(broker.port, "fleet/#", v5=False)
    cleanup(sub.close)
    time.sleep(0.2)
    w = _mqtt_worker(tmp_path, broker, topic="{meta.area}/{stream_id}", protocol="3.1.1")
    w.start()
    cleanup(w.kill)
    good = [packet(i).with_meta(area="fleet") for i in range(1, 21)]
    for p in good:
        w.send(p)
    assert wait_until(lambda: set(sub.keys()) == {p.idempotency_key for p in good}, 30), w.status
    assert all(m["prop_key"] is None for m in sub.messages)   # 3.1.1 has no properties: the key is in the payload
    w.kill()

    # MQTT 5: a denied topic gets PUBACK 0x87, which a retry cannot fix: dead-lettered, never acknowledged as delivered
    w2 = Worker(tmp_path / "v5", "", sink_params={"url": broker.url, "topic": "{meta.area}/{stream_id}",
                                                  "timeout_s": 2.0, "batch_size": 10}, sink_plugin="mqtt_sink")
    (tmp_path / "v5").mkdir()
    w2.start()
    cleanup(w2.kill)
    w2.send(packet(99).with_meta(area="secret"))
    w2.send(packet(100).with_meta(area="fleet"))
    assert wait_until(lambda: w2.status.get("counters", {}).get("dead", 0) == 1, 20), w2.status
    out = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", "queue", "dlq", str(w2.db), "--format",
                          "json"], capture_output=True, text=True, timeout=60)
    (dead,) = json.loads(out.stdout)
    assert dead["seq"] == 99 and "not authorized" in dead["reason"], dead
    assert wait_until(lambda: packet(100).idempotency_key in sub.keys(), 20)


def test_kafka_broker_frozen_no_ack_before_delivery_report_then_all_keys(tmp_path, cleanup):
    confluent_kafka = pytest.importorskip("confluent_kafka")
    mock = subprocess.Popen([sys.executable, str(HERE / "_kafka_mock.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=open(tmp_path / "mock.log", "ab"), start_new_session=True)
    cleanup(lambda: (os.killpg(mock.pid, signal.SIGCONT), os.killpg(mock.pid, signal.SIGKILL)))
    bootstrap = json.loads(mock.stdout.readline())["bootstrap"]
    w = Worker(tmp_path, "", sink_plugin="kafka_sink",
               sink_params={"bootstrap_servers": bootstrap, "topic": "fleet.{kind}", "timeout_s": 2.0,
                            "batch_size": 50, "config": {"log_level": 3}})
    w.start()
    cleanup(w.kill)
    sent = [packet(i) for i in range(1, 601)]
    for p in sent[:300]:
        w.send(p)
    assert wait_until(lambda: w.status.get("sink", {}).get("delivered", 0) >= 300, 60), w.status

    os.killpg(mock.pid, signal.SIGSTOP)          # the broker stops answering
    for p in sent[300:]:
        w.send(p)
    assert wait_until(lambda: w.counter("accepted") == 600, 30), w.status
    assert wait_until(lambda: w.status.get("sink", {}).get("retries", 0) > 0, 30), w.status
    frozen = w.status["sink"].get("delivered", 0)
    assert frozen == 300, "nothing may count as delivered without a delivery report"
    assert queue_stats(w.db)["depth"] == 300
    os.killpg(mock.pid, signal.SIGCONT)          # the broker is back: the backlog drains
    assert wait_until(lambda: w.status.get("counters", {}).get("depth", -1) == 0, 90), w.status

    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "check", "auto.offset.reset": "earliest",
                                  "log_level": 3})
    cleanup(c.close)
    c.subscribe(["fleet.event"])
    seen = Counter()
    want = {p.idempotency_key for p in sent}
    deadline = time.monotonic() + 60
    while set(seen) != want and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        key = m.key().decode()
        assert dict(m.headers())["idempotency_key"].decode() == key
        assert json.loads(m.value())["idempotency_key"] == key
        seen[key] += 1
    assert set(seen) == want, f"{len(want - set(seen))} keys missing"


def _missing_seqs(sub, sent):
    got = set(sub.keys())
    missing = sorted(p.seq for p in sent if p.idempotency_key not in got)
    return missing[:5], missing[-5:], len(missing)


GRAPH = """\
schnitzel: 1
name: {name}
containers:
  - {{id: a}}
  - {{id: s}}
nodes:
  - id: src
    plugin: synthetic_source
    container: a
    params: {{mode: counter, count: {count}, rate_hz: 50}}
  - id: queue
    plugin: durable_queue
    container: a
    params: {{path: {db}, sinks: [broker, file]}}
  - id: route
    plugin: sink_router
    container: a
    params: {{sinks: [broker, file]}}
  - id: broker
    plugin: mqtt_sink
    container: s
    params: {{url: "{url}", topic: "fleet/{{stream_id}}/{{kind}}"}}
  - id: file
    plugin: jsonl_sink
    container: s
    params: {{path: {jsonl}}}
edges:
  - {{from: src.out, to: queue.in}}
  - {{from: queue.out, to: route.in}}
  - {{from: route.out0, to: broker.in}}
  - {{from: route.out1, to: file.in}}
"""


@needs_mosquitto
def test_mqtt_sink_behind_sink_router_in_a_running_graph(tmp_path, cleanup, ros_env):
    import uuid

    broker = Broker(tmp_path)
    broker.start()
    cleanup(broker.stop)
    sub = Subscriber(broker.port, "fleet/#")
    cleanup(sub.close)
    count, jsonl, db = 60, tmp_path / "out.jsonl", tmp_path / "queue.db"
    graph = tmp_path / "graph.yaml"
    graph.write_text(GRAPH.format(name=f"mq_{uuid.uuid4().hex[:8]}", count=count, db=db, url=broker.url, jsonl=jsonl))
    out = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(graph), "--run-dir",
                          str(tmp_path / "run"), "--quiet", "--duration", "12", "--report", str(tmp_path / "r.json")],
                         env=ros_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    file_keys = {json.loads(line)["idempotency_key"] for line in jsonl.read_text().splitlines()}
    assert len(file_keys) == count
    assert wait_until(lambda: set(sub.keys()) == file_keys, 10), (len(sub.keys()), len(file_keys))
    assert {m["topic"] for m in sub.messages} == {"fleet/src/telemetry"}
    assert queue_stats(db)["depth"] == 0


def test_kafka_fatal_producer_error_makes_a_new_producer_and_loses_no_row(tmp_path, cleanup):
    """librdkafka reports a fatal error (idempotence state lost) through error_cb; the test
    raises one through that same callback, since the mock cluster cannot be told to."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    from schnitzel_core.sink_kafka import KafkaSink

    mock = subprocess.Popen([sys.executable, str(HERE / "_kafka_mock.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    cleanup(lambda: os.killpg(mock.pid, signal.SIGKILL))
    bootstrap = json.loads(mock.stdout.readline())["bootstrap"]
    sink = KafkaSink(bootstrap, "fleet.{kind}", timeout_s=5.0, config={"log_level": 3})
    cleanup(sink.close)
    first = [packet(i) for i in range(1, 51)]
    assert all(o.ok for o in sink.deliver(first))
    sink._on_error(confluent_kafka.KafkaError(confluent_kafka.KafkaError._FATAL, "injected fatal error", fatal=True))
    second = [packet(i) for i in range(51, 101)]
    outcomes = sink.deliver(second)
    assert sink.producers_made == 2, "a fatal error must replace the producer"
    assert all(o.ok for o in outcomes), outcomes[:3]
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "fatal", "auto.offset.reset": "earliest",
                                  "log_level": 3})
    cleanup(c.close)
    c.subscribe(["fleet.event"])
    seen = set()
    deadline = time.monotonic() + 60
    while len(seen) < 100 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            seen.add(m.key().decode())
    assert seen == {p.idempotency_key for p in first + second}

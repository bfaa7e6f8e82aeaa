"""Kafka sink (confluent-kafka / librdkafka) behind the :class:`~.delivery.Sink` interface.

Guarantee: the producer is idempotent (``enable.idempotence=true``, so ``acks=all``), each
packet's idempotency key is the Kafka message key and the header ``idempotency_key``, and a
packet is ``delivered`` only when its delivery report says the partition leader and its
in-sync replicas have it. Every produced message gets exactly one delivery report within
``timeout_s`` (librdkafka's ``message.timeout.ms``): an error report is ``retry`` (or
``rejected`` for errors a retry cannot fix: message too large, unknown topic with auto-create
off, authorization), so the durable queue keeps the row and a broker outage loses nothing.

The sink runs on its SinkWorker thread, never on the ROS executor: ``deliver`` produces a
batch and polls for its reports. A fatal producer error (librdkafka's idempotence state is
then unusable) answers ``retry`` for what is outstanding and makes a new producer before the
next batch, so leased rows are re-sent with the same keys and never lost.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .delivery import OK, REJECTED, RETRY, DeliveryConfigError, Outcome, Sink
from .packet import Packet
from .sink_topics import TopicError, kafka_template, message

log = logging.getLogger("schnitzel.delivery.kafka")

KEY_HEADER = "idempotency_key"
#: librdkafka error names a retry will not fix.
PERMANENT_ERRORS = {"MSG_SIZE_TOO_LARGE", "_MSG_SIZE_TOO_LARGE", "TOPIC_AUTHORIZATION_FAILED",
                    "INVALID_RECORD", "_INVALID_ARG", "CLUSTER_AUTHORIZATION_FAILED", "UNKNOWN_TOPIC_OR_PART",
                    "_UNKNOWN_TOPIC", "TOPIC_EXCEPTION", "INVALID_TOPIC_EXCEPTION", "RECORD_LIST_TOO_LARGE"}
#: Producer settings the sink owns: a user's `config` may not weaken the guarantee.
OWNED = {"enable.idempotence": True, "acks": "all"}
SECRET_KEYS = ("sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret")


def check_config(params: Mapping[str, Any]) -> List[tuple]:
    """Static problems of a kafka_sink's params: [(param, message, hint)] (used by the validator)."""
    problems = []
    servers = str(params.get("bootstrap_servers", ""))
    if not servers or any(":" not in s for s in servers.split(",")):
        problems.append(("bootstrap_servers", f"bootstrap_servers must be host:port[,host:port...], got {servers!r}",
                         "e.g. `bootstrap_servers: 127.0.0.1:9092`"))
    try:
        kafka_template(str(params.get("topic", "")))
    except TopicError as exc:
        problems.append(("topic", str(exc), "e.g. `topic: fleet.{kind}`"))
    config = params.get("config") or {}
    if not isinstance(config, dict):
        problems.append(("config", "config must be a mapping of librdkafka settings", "e.g. `config: {linger.ms: 5}`"))
        config = {}
    for k, v in config.items():
        if k in OWNED and str(v).lower() != str(OWNED[k]).lower():
            problems.append(("config", f"config sets {k}={v!r}: the sink keeps {k}={OWNED[k]} for its no-loss "
                             "guarantee", f"remove {k} from config"))
        if k in SECRET_KEYS:
            problems.append(("config", f"config holds the secret {k!r} in the graph file",
                             "name an environment variable in secret_env instead"))
    for k in ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location"):
        path = config.get(k)
        if path and not os.path.isfile(str(path)):
            problems.append(("config", f"{k} {path!r} does not exist", "give the path of an existing PEM file"))
    return problems


class KafkaSink(Sink):
    name = "kafka"

    def __init__(self, bootstrap_servers: str, topic: str, *, timeout_s: float = 10.0,
                 config: Optional[Mapping[str, Any]] = None, secret_env: str = "",
                 linger_ms: int = 5) -> None:
        problems = check_config({"bootstrap_servers": bootstrap_servers, "topic": topic, "config": dict(config or {})})
        if problems:
            raise DeliveryConfigError("kafka sink: " + problems[0][1])
        self.topic = kafka_template(topic)
        self.timeout_s = float(timeout_s)
        conf: Dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "linger.ms": int(linger_ms),
                                "message.timeout.ms": max(1, int(self.timeout_s * 1000))}
        conf.update({k: v for k, v in (config or {}).items()})
        conf.update(OWNED)
        if secret_env:
            # SASL password (or the key password with client certificates) from the environment
            secret = os.environ.get(secret_env, "")
            if not secret:
                raise DeliveryConfigError(f"kafka sink: environment variable {secret_env!r} (secret_env) is not set or empty")
            key = "sasl.password" if "sasl.mechanism" in conf or "sasl.mechanisms" in conf else "ssl.key.password"
            conf[key] = secret
        conf["error_cb"] = self._on_error
        self._conf = conf
        self._fatal: Optional[str] = None
        self._lock = threading.Lock()
        self.producers_made = 0
        self.last_error = ""
        self._producer = self._make()

    def _make(self) -> Any:
        from confluent_kafka import Producer

        self._fatal = None
        self.producers_made += 1
        try:
            return Producer(self._conf)
        except Exception as exc:  # noqa: BLE001 - KafkaException for a bad setting
            raise DeliveryConfigError(f"kafka sink: cannot create the producer: {exc}") from None

    def _on_error(self, err: Any) -> None:
        self.last_error = str(err)
        if err.fatal():
            # idempotence state lost: this producer can deliver nothing more (see deliver)
            self._fatal = str(err)
            log.error("kafka sink: fatal producer error: %s (a new producer is made)", err)

    def deliver(self, packets: Sequence[Packet]) -> List[Outcome]:
        if not packets:
            return []
        with self._lock:
            if self._fatal is not None:
                self._replace()
            return self._deliver(packets)

    def _replace(self) -> None:
        old, self._producer = self._producer, None
        try:
            old.purge(in_queue=True, in_flight=True)   # their reports arrive as errors: retried rows
            old.poll(0)
        except Exception:  # noqa: BLE001
            pass
        self._producer = self._make()

    def _deliver(self, packets: Sequence[Packet]) -> List[Outcome]:
        from confluent_kafka import KafkaException

        out: List[Optional[Outcome]] = [None] * len(packets)
        pending = [0]

        def report(i: int) -> Any:
            def cb(err: Any, msg: Any) -> None:
                pending[0] -= 1
                out[i] = OK if err is None else self._outcome(err)
            return cb

        prod = self._producer
        for i, p in enumerate(packets):
            try:
                topic, body = message(self.topic, p)
            except ValueError as exc:   # the topic cannot be filled, or no JSON: dead-lettered
                out[i] = Outcome(REJECTED, str(exc))
                continue
            key = p.idempotency_key.encode()
            while True:
                try:
                    prod.produce(topic, value=body, key=key, headers=[(KEY_HEADER, key)], on_delivery=report(i))
                    pending[0] += 1
                    break
                except BufferError:
                    prod.poll(0.05)   # local queue full: serve reports, then try again
                except KafkaException as exc:
                    out[i] = self._outcome(exc.args[0])
                    break
        deadline = time.monotonic() + self.timeout_s + 5.0
        while pending[0] > 0 and time.monotonic() < deadline:
            prod.poll(0.05)
            if self._fatal is not None and pending[0] > 0:
                break
        return [o if o is not None else Outcome(RETRY, self._fatal and f"fatal producer error: {self._fatal}"
                                                or "no delivery report in time") for o in out]

    @staticmethod
    def _outcome(err: Any) -> Outcome:
        name = err.name() if hasattr(err, "name") else str(err)
        text = err.str() if hasattr(err, "str") else str(err)
        if name in PERMANENT_ERRORS and not (hasattr(err, "retriable") and err.retriable()):
            return Outcome(REJECTED, f"kafka: {name}: {text}")
        return Outcome(RETRY, f"kafka: {name}: {text}")

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                try:
                    self._producer.flush(min(self.timeout_s, 5.0))
                except Exception:  # noqa: BLE001
                    pass

"""Broker sinks: mqtt_sink (paho-mqtt) and kafka_sink (confluent-kafka) (docs/nodes.md).

Both sit behind a durable queue like http_sink: a SinkWorker feeds them with retries, backoff
and a circuit breaker, and each packet is acknowledged to its queue only after the broker
confirmed it (PUBACK/PUBCOMP, or the Kafka delivery report). The protocol work lives in
schnitzel_core.sink_mqtt / sink_kafka; this module declares the plugins.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Tuple

from schnitzel_core.delivery import Sink
from schnitzel_core.plugin import Category, In, Param, PluginSpec, Profile
from schnitzel_core.sink_kafka import check_config as kafka_check
from schnitzel_core.sink_mqtt import check_config as mqtt_check

from .delivery import _WORKER_PARAMS, _WorkerSinkLogic


def _worker_params(batch_size: int, why: str) -> Tuple[Param, ...]:
    """The SinkWorker params with this sink's own default batch size."""
    return tuple(dataclasses.replace(p, default=batch_size, description=p.description + why)
                 if p.name == "batch_size" else p for p in _WORKER_PARAMS)


class MqttSinkLogic(_WorkerSinkLogic):
    spec = PluginSpec(
        name="mqtt_sink", category=Category.SINK, version="0.1.0", external=True,
        description="Publishes packets as JSON to an MQTT broker (QoS 1 or 2); a packet is acknowledged to "
                    "its queue only on the broker's PUBACK/PUBCOMP with a success reason code.",
        ports=(In("in", profile=Profile.EVENT),),
        params=(
            Param("url", "str", description="mqtt://host[:1883] or mqtts://host[:8883] (TLS)"),
            Param("topic", "str", description="topic template: text with {stream_id} {kind} {frame_id} {schema} "
                  "{epoch} {seq} or {meta.NAME}, e.g. fleet/{stream_id}/{kind}"),
            Param("qos", "int", 1, "1 = at least once (PUBACK), 2 = exactly once to the broker (PUBCOMP)",
                  enum=(1, 2)),
            Param("protocol", "str", "5", "MQTT version: 5 (key also in a user property) or 3.1.1",
                  enum=("5", "3.1.1")),
            Param("client_id", "str", "", "MQTT client id (default: schnitzel-<random>)"),
            Param("keepalive_s", "int", 30, "MQTT keepalive", minimum=5),
            Param("timeout_s", "float", 10.0, "wait this long for a batch's acknowledgements, then retry "
                  "the rest", minimum=0.1),
            Param("max_inflight", "int", 100, "messages awaiting an acknowledgement at once", minimum=1),
            Param("max_queued", "int", 1000, "messages the client holds beyond the in-flight window "
                  "(then: retry later)", minimum=1),
            Param("retain", "bool", False, "publish with the retain flag"),
            Param("verify_tls", "bool", True, "verify the broker's certificate (mqtts://)"),
            Param("ca_file", "str", "", "CA bundle for verification (default: system store)"),
            Param("username_env", "str", "", "environment variable holding the username", secret_env=True),
            Param("password_env", "str", "", "environment variable holding the password", secret_env=True),
            Param("client_cert_env", "str", "", "environment variable holding the client certificate's path",
                  secret_env=True),
            Param("client_key_env", "str", "", "environment variable holding the client key's path",
                  secret_env=True),
            Param("reconnect_base_s", "float", 0.2, "first reconnect delay ceiling (full jitter)", minimum=0.01),
            Param("reconnect_cap_s", "float", 10.0, "largest reconnect delay ceiling", minimum=0.01),
            *_worker_params(500, " (MQTT has no batches: a batch is published back to back and its "
                            "acknowledgements awaited together, so a large one keeps the in-flight window full; "
                            "the queue's max_inflight bounds it)"),
        ),
        static_check=mqtt_check,
    )

    def make_sink(self) -> Sink:
        from schnitzel_core.sink_mqtt import MqttSink

        p = self.params
        return MqttSink(
            p["url"], p["topic"], qos=int(p.get("qos", 1)), protocol=str(p.get("protocol", "5")),
            client_id=p.get("client_id", "") or f"schnitzel-{self.ctx.graph}-{self.ctx.node_id}",
            keepalive_s=int(p.get("keepalive_s", 30)), timeout_s=float(p.get("timeout_s", 10.0)),
            max_inflight=int(p.get("max_inflight", 100)), max_queued=int(p.get("max_queued", 1000)),
            retain=bool(p.get("retain", False)), verify_tls=bool(p.get("verify_tls", True)),
            ca_file=p.get("ca_file", ""), username_env=p.get("username_env", ""),
            password_env=p.get("password_env", ""), client_cert_env=p.get("client_cert_env", ""),
            client_key_env=p.get("client_key_env", ""), reconnect_base_s=float(p.get("reconnect_base_s", 0.2)),
            reconnect_cap_s=float(p.get("reconnect_cap_s", 10.0)))

    def health(self) -> Dict[str, Any]:
        h = super().health()
        sink = self.worker.sink
        h["values"]["connected"] = bool(sink.connected)
        if not sink.connected and h["level"] == "ok":
            h["level"] = "warn"
            h["message"] = f"not connected: {sink.last_error or 'connecting'}"
        return h


class KafkaSinkLogic(_WorkerSinkLogic):
    spec = PluginSpec(
        name="kafka_sink", category=Category.SINK, version="0.1.0", external=True,
        description="Produces packets as JSON to Kafka with an idempotent producer (acks=all), the idempotency "
                    "key as the message key; a packet is acknowledged to its queue only on its delivery report.",
        ports=(In("in", profile=Profile.EVENT),),
        params=(
            Param("bootstrap_servers", "str", description="host:port[,host:port...]"),
            Param("topic", "str", description="topic template: letters, digits, . _ - and {stream_id} {kind} "
                  "{frame_id} {schema} {epoch} {seq} or {meta.NAME}, e.g. fleet.{kind}"),
            Param("timeout_s", "float", 10.0, "a message not confirmed within this time is retried "
                  "(librdkafka message.timeout.ms)", minimum=0.1),
            Param("linger_ms", "int", 5, "librdkafka linger.ms: how long to gather a batch", minimum=0),
            Param("config", "dict", {}, "further librdkafka producer settings (security.protocol, "
                  "sasl.mechanism, ssl.ca.location, compression.type, ...); enable.idempotence and acks are fixed"),
            Param("secret_env", "str", "", "environment variable holding the SASL password (or the client "
                  "key's password)", secret_env=True),
            *_WORKER_PARAMS,
        ),
        static_check=kafka_check,
    )

    def make_sink(self) -> Sink:
        from schnitzel_core.sink_kafka import KafkaSink

        p = self.params
        return KafkaSink(p["bootstrap_servers"], p["topic"], timeout_s=float(p.get("timeout_s", 10.0)),
                         config=dict(p.get("config") or {}), secret_env=p.get("secret_env", ""),
                         linger_ms=int(p.get("linger_ms", 5)))

"""MQTT sink (paho-mqtt 2.x, callback API v2) behind the :class:`~.delivery.Sink` interface.

Guarantee: a packet is ``delivered`` only when the broker acknowledged it: PUBACK (QoS 1) or
PUBCOMP (QoS 2) with a success reason code. Anything else is ``retry`` (no connection, no
acknowledgement within ``timeout_s``, a transient reason code) or ``rejected`` (a reason code
that will not change on a retry: not authorized, topic name invalid, payload format invalid,
packet too large; or a topic the packet cannot fill). The durable queue keeps the row until
then, so a broker outage or a crash of the sink loses nothing; a re-sent packet carries the
same idempotency key (MQTT v5: user property ``idempotency_key``; always also in the JSON
payload, the only place MQTT 3.1.1 has for it), so the consumer's effect is exactly-once.

One network thread per sink keeps the connection: it reconnects with exponential backoff and
full jitter (so a fleet does not reconnect in lock-step after a broker restart) and drives
paho's ``loop``. ``deliver`` publishes a batch and waits for its acknowledgements; paho's
in-flight window (``max_inflight``) and queue (``max_queued``) bound what is outstanding.
Credentials and client certificates come from environment variables named in the params and
are never logged.
"""
from __future__ import annotations

import logging
import os
import ssl
import threading
import time
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set

from .delivery import DELIVERED, OK, REJECTED, RETRY, DeliveryConfigError, Outcome, Sink
from .packet import Packet
from .resilience import Backoff
from .sink_topics import TopicError, message, mqtt_template

log = logging.getLogger("schnitzel.delivery.mqtt")

PROTOCOLS = ("5", "3.1.1")
#: v5 PUBACK/PUBCOMP reason codes that a retry cannot fix (MQTT 5.0 §3.4.2.1).
PERMANENT_REASONS = {0x87: "not authorized", 0x90: "topic name invalid", 0x95: "packet too large",
                     0x99: "payload format invalid"}
KEY_PROPERTY = "idempotency_key"


def parse_url(url: str) -> Dict[str, Any]:
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]`` -> host, port, tls."""
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise DeliveryConfigError(f"mqtt sink: url must be mqtt://host[:port] or mqtts://host[:port], got {url!r}")
    if u.path not in ("", "/") or u.query:
        raise DeliveryConfigError(f"mqtt sink: url {url!r} has a path or query; the topic comes from `topic`")
    if u.username or u.password:
        raise DeliveryConfigError("mqtt sink: credentials do not belong in the url; name environment variables "
                                  "in username_env / password_env")
    tls = u.scheme == "mqtts"
    try:
        port = u.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise DeliveryConfigError(f"mqtt sink: url {url!r}: {exc}") from None
    return {"host": u.hostname, "port": port, "tls": tls}


def _env(name: str, what: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise DeliveryConfigError(f"mqtt sink: environment variable {name!r} ({what}) is not set or empty")
    return value


def check_config(params: Mapping[str, Any]) -> List[tuple]:
    """Static problems of an mqtt_sink's params: [(param, message, hint)] (used by the validator)."""
    problems = []
    try:
        where = parse_url(str(params.get("url", "")))
    except DeliveryConfigError as exc:
        problems.append(("url", str(exc), "e.g. `url: mqtt://127.0.0.1:1883` (mqtts:// for TLS)"))
        where = {"tls": False}
    try:
        mqtt_template(str(params.get("topic", "")))
    except TopicError as exc:
        problems.append(("topic", str(exc), "e.g. `topic: fleet/{stream_id}/{kind}`"))
    ca = params.get("ca_file") or ""
    if ca and not os.path.isfile(ca):
        problems.append(("ca_file", f"CA file {ca!r} does not exist", "give the path of a PEM CA bundle"))
    if ca and not where.get("tls"):
        problems.append(("ca_file", "ca_file is set but the url is not mqtts://", "use mqtts://host:8883"))
    if bool(params.get("client_cert_env")) != bool(params.get("client_key_env")):
        problems.append(("client_cert_env", "client_cert_env and client_key_env go together",
                         "name both variables (certificate and key file paths) or neither"))
    if params.get("password_env") and not params.get("username_env"):
        problems.append(("password_env", "password_env without username_env", "name the username variable too"))
    return problems


class MqttSink(Sink):
    name = "mqtt"

    def __init__(self, url: str, topic: str, *, qos: int = 1, protocol: str = "5", client_id: str = "",
                 keepalive_s: int = 30, timeout_s: float = 10.0, connect_wait_s: float = 1.0,
                 max_inflight: int = 100, max_queued: int = 1000, verify_tls: bool = True, ca_file: str = "",
                 username_env: str = "", password_env: str = "", client_cert_env: str = "",
                 client_key_env: str = "", retain: bool = False, reconnect_base_s: float = 0.2,
                 reconnect_cap_s: float = 10.0) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        problems = check_config({"url": url, "topic": topic, "ca_file": ca_file, "client_cert_env": client_cert_env,
                                 "client_key_env": client_key_env, "username_env": username_env,
                                 "password_env": password_env})
        if problems:
            raise DeliveryConfigError(problems[0][1])
        if qos not in (1, 2):
            raise DeliveryConfigError(f"mqtt sink: qos must be 1 or 2 (0 has no acknowledgement), got {qos!r}")
        if protocol not in PROTOCOLS:
            raise DeliveryConfigError(f"mqtt sink: protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self._mqtt = mqtt
        where = parse_url(url)
        self.url, self.host, self.port, self.tls = url, where["host"], where["port"], where["tls"]
        self.topic = mqtt_template(topic)
        self.qos, self.retain = int(qos), bool(retain)
        self.v5 = protocol == "5"
        self.timeout_s, self.connect_wait_s, self.keepalive_s = float(timeout_s), float(connect_wait_s), int(keepalive_s)
        self.client_id = client_id or f"schnitzel-{uuid.uuid4().hex[:12]}"
        self._backoff = Backoff(reconnect_base_s, max(reconnect_cap_s, reconnect_base_s))
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
                        **({} if self.v5 else {"clean_session": True}))
        c.max_inflight_messages_set(int(max_inflight))
        c.max_queued_messages_set(int(max_queued))
        if username_env:
            c.username_pw_set(_env(username_env, "username_env"),
                              _env(password_env, "password_env") if password_env else None)
        if self.tls:
            cert = _env(client_cert_env, "client_cert_env") if client_cert_env else None
            key = _env(client_key_env, "client_key_env") if client_key_env else None
            for path, what in ((cert, "client certificate"), (key, "client key")):
                if path and not os.path.isfile(path):
                    raise DeliveryConfigError(f"mqtt sink: {what} file named by the environment does not exist")
            c.tls_set(ca_certs=ca_file or None, certfile=cert, keyfile=key,
                      cert_reqs=ssl.CERT_REQUIRED if verify_tls else ssl.CERT_NONE)
            if not verify_tls:
                c.tls_insecure_set(True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self._client = c
        self._connected = threading.Event()
        self._stop = threading.Event()
        # Acknowledgements by mid. Filled on paho's network thread while paho holds its own
        # message lock, so this lock is never held while calling into paho (no lock-order cycle).
        self._cv = threading.Condition()
        self._acks: Dict[int, int] = {}
        self._abandoned: Set[int] = set()
        self.last_error = ""
        self.connects = 0
        self.publishes = 0
        self._thread: Optional[threading.Thread] = None
        self._start()

    def _start(self) -> None:
        """Start the network thread (again after close(): a deactivated node can be activated again)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._network, name=f"mqtt-{self.host}:{self.port}",
                                            daemon=True)
            self._thread.start()

    # ------------------------------------------------------------ connection
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            self.last_error = f"broker refused the connection: {reason_code}"
            log.warning("mqtt sink %s:%s: %s", self.host, self.port, self.last_error)
            return
        self.connects += 1
        self.last_error = ""
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            self.last_error = f"disconnected from {self.host}:{self.port} ({reason_code})"

    def _network(self) -> None:
        mqtt, c = self._mqtt, self._client
        attempt, started = 0, False
        while not self._stop.is_set():
            if not started or c.socket() is None:
                try:
                    if started:
                        c.reconnect()
                    else:
                        c.connect(self.host, self.port, keepalive=self.keepalive_s)
                        started = True
                except (OSError, ssl.SSLError, ValueError) as exc:
                    started = started or isinstance(exc, OSError)
                    self.last_error = f"cannot connect to {self.host}:{self.port}: {exc}"
                    attempt += 1
                    self._stop.wait(self._backoff.delay(attempt))
                    continue
            rc = c.loop(timeout=0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._connected.clear()
                if not self.last_error:
                    self.last_error = f"connection to {self.host}:{self.port} lost ({mqtt.error_string(rc)})"
                attempt += 1
                self._stop.wait(self._backoff.delay(attempt))
            elif self._connected.is_set():
                attempt = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # --------------------------------------------------------------- publish
    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        value = int(getattr(reason_code, "value", 0) or 0)
        with self._cv:
            if mid in self._abandoned:
                self._abandoned.discard(mid)   # a batch that already gave up on it (counted as retry)
                return
            self._acks[mid] = value
            self._cv.notify_all()

    def _properties(self, p: Packet) -> Any:
        if not self.v5:
            return None
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = (KEY_PROPERTY, p.idempotency_key)
        props.ContentType = "application/json"
        props.PayloadFormatIndicator = 1
        return props

    def deliver(self, packets: Sequence[Packet]) -> List[Outcome]:
        if not packets:
            return []
        self._start()
        if not self._connected.wait(self.connect_wait_s):
            why = self.last_error or f"not connected to {self.host}:{self.port}"
            return [Outcome(RETRY, why)] * len(packets)
        mqtt = self._mqtt
        out: List[Optional[Outcome]] = [None] * len(packets)
        waiting: Dict[int, int] = {}   # mid -> index
        for i, p in enumerate(packets):
            try:
                topic, body = message(self.topic, p)
            except ValueError as exc:   # the topic cannot be filled, or no JSON: dead-lettered
                out[i] = Outcome(REJECTED, str(exc))
                continue
            try:
                info = self._client.publish(topic, body, qos=self.qos, retain=self.retain,
                                            properties=self._properties(p))
            except ValueError as exc:   # paho's own checks (payload too large, topic)
                out[i] = Outcome(REJECTED, f"paho refused the message: {exc}")
                continue
            self.publishes += 1
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                out[i] = Outcome(RETRY, "mqtt in-flight queue full")
            elif info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                out[i] = Outcome(RETRY, f"publish failed: {mqtt.error_string(info.rc)}")
            else:
                waiting[info.mid] = i   # NO_CONN: paho keeps it and sends it on reconnect
        deadline = time.monotonic() + self.timeout_s
        with self._cv:
            while True:
                for mid in [m for m in waiting if m in self._acks]:
                    out[waiting.pop(mid)] = self._outcome(self._acks.pop(mid))
                left = deadline - time.monotonic()
                if not waiting or left <= 0:
                    break
                self._cv.wait(min(left, 0.25))
            for mid, i in waiting.items():
                self._abandoned.add(mid)
                why = "no acknowledgement from the broker within %gs" % self.timeout_s
                if not self._connected.is_set():
                    why += f" ({self.last_error or 'disconnected'})"
                out[i] = Outcome(RETRY, why)
        return [o if o is not None else Outcome(RETRY, "not sent") for o in out]

    def _outcome(self, reason: int) -> Outcome:
        if reason < 0x80:
            return OK   # 0x00 success, 0x10 accepted with no matching subscribers
        if reason in PERMANENT_REASONS:
            return Outcome(REJECTED, f"broker rejected the message: {PERMANENT_REASONS[reason]} (0x{reason:02x})")
        return Outcome(RETRY, f"broker answered reason code 0x{reason:02x}")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        try:
            self._client.disconnect()
            self._client.loop(timeout=0.01)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        self._connected.clear()


__all__ = ["MqttSink", "check_config", "parse_url", "DELIVERED", "PROTOCOLS"]

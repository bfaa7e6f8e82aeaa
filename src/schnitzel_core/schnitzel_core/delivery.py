"""Sinks behind one interface, routing rules, and the retrying sink worker.

A sink delivers a batch of packets and answers one :class:`Outcome` per packet:
``delivered``, ``retry`` (transient: try again later) or ``rejected`` (permanent, with a
reason: goes to the dead-letter table). Sinks never raise for delivery failures.

- :class:`HttpSink`: JSON body (one packet, or ``{"batch": [...]}``), the packet's key
  in the ``Idempotency-Key`` header (a batch carries each item's key in the body and a
  key derived from all of them in the header), timeouts, TLS verification on by default,
  bearer token read from an environment variable. 2xx = delivered, 408/429/5xx and
  connection errors = retry, other 4xx = rejected. A 4xx on a batch is retried item by
  item so one poison packet never blocks healthy ones.
- :class:`JsonlSink`: appends one JSON line per packet, fsync policy, rotation by size.
- :class:`Routes`: the routing rules shared by ``sink_router`` and ``durable_queue``.
- :class:`SinkWorker`: a thread that feeds a sink with backoff (full jitter) and a
  circuit breaker and reports final outcomes through callbacks.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .packet import Packet, derive_key
from .resilience import Backoff, BreakerState, CircuitBreaker

DELIVERED, RETRY, REJECTED = "delivered", "retry", "rejected"
#: Meta the durable queue adds for its own bookkeeping (queue id, row id, attempt, sinks).
#: They depend on commit batching and retries, not on the packet: the JSONL file leaves them
#: out, so the same packets give the same bytes (deterministic replays, docs/record-replay.md).
QUEUE_META = ("schnitzel.queue", "schnitzel.row_id", "schnitzel.attempt", "schnitzel.sinks")

log = logging.getLogger("schnitzel.delivery")


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str                 # delivered | retry | rejected
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == DELIVERED


OK = Outcome(DELIVERED)


class DeliveryConfigError(ValueError):
    """A sink or route is misconfigured (bad URL, missing token variable, ...)."""


class Sink:
    """The sink interface."""

    name = "sink"

    def deliver(self, packets: Sequence[Packet]) -> List[Outcome]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- HTTP
def classify_status(status: int) -> str:
    if 200 <= status < 300:
        return DELIVERED
    if status in (408, 429) or status >= 500:
        return RETRY
    return REJECTED


class HttpSink(Sink):
    name = "http"

    def __init__(self, url: str, *, batch: bool = True, timeout_s: float = 5.0, verify_tls: bool = True,
                 ca_file: str = "", token_env: str = "", headers: Optional[Mapping[str, str]] = None) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise DeliveryConfigError(f"http sink: url must be http(s)://host[:port]/path, got {url!r}")
        self.url = url
        self.batch = bool(batch)
        self.timeout_s = float(timeout_s)
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        self.path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self.headers = {"Content-Type": "application/json", "User-Agent": "schnitzel-http-sink/1"}
        self.headers.update(headers or {})
        if token_env:
            token = os.environ.get(token_env)
            if not token:
                raise DeliveryConfigError(
                    f"http sink: environment variable {token_env!r} (token_env) is not set or empty")
            self.headers["Authorization"] = f"Bearer {token}"
        self._ssl: Optional[ssl.SSLContext] = None
        if self.scheme == "https":
            ctx = ssl.create_default_context(cafile=ca_file or None)
            if not verify_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ssl = ctx
        self._conn: Optional[http.client.HTTPConnection] = None
        self.requests = 0

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._ssl is not None:
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s,
                                                         context=self._ssl)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass
            self._conn = None

    def post(self, body: bytes, key: str) -> Tuple[int, bytes, str]:
        """One POST: (status, body, error). status 0 = no HTTP answer (error says why)."""
        headers = dict(self.headers)
        headers["Idempotency-Key"] = key
        self.requests += 1
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request("POST", self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self._drop()
                return resp.status, data, ""
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop()
                if attempt == 0 and isinstance(exc, (BrokenPipeError,)):
                    continue  # a stale keep-alive connection: reconnect once
                return 0, b"", f"connection closed without a response ({type(exc).__name__})"
            except socket.timeout:
                self._drop()
                return 0, b"", f"timeout after {self.timeout_s:g}s"
            except ssl.SSLError as exc:
                self._drop()
                return 0, b"", f"TLS error: {exc}"
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                return 0, b"", f"connection error: {exc}"
        return 0, b"", "connection error"

    @staticmethod
    def _reason(status: int, data: bytes, err: str) -> str:
        if status == 0:
            return err
        text = data[:300].decode("utf-8", "replace").strip()
        return f"HTTP {status}" + (f": {text}" if text else "")

    def deliver(self, packets: Sequence[Packet]) -> List[Outcome]:
        if not packets:
            return []
        if len(packets) == 1 or not self.batch:
            return [self._one(p) for p in packets]
        body = json.dumps({"batch": [p.to_dict() for p in packets]}, separators=(",", ":")).encode()
        key = "batch-" + derive_key(*[p.idempotency_key for p in packets])
        status, data, err = self.post(body, key)
        kind = classify_status(status) if status else RETRY
        if kind == DELIVERED:
            return self._per_item(packets, data)
        if kind == RETRY:
            return [Outcome(RETRY, self._reason(status, data, err))] * len(packets)
        # a 4xx for the whole batch: find the poison item(s) one by one
        return [self._one(p) for p in packets]

    def _one(self, p: Packet) -> Outcome:
        try:
            body = json.dumps(p.to_dict(), separators=(",", ":")).encode()
        except (ValueError, TypeError) as exc:
            return Outcome(REJECTED, f"cannot encode packet as JSON: {exc}")
        status, data, err = self.post(body, p.idempotency_key)
        kind = classify_status(status) if status else RETRY
        return OK if kind == DELIVERED else Outcome(kind, self._reason(status, data, err))

    @staticmethod
    def _per_item(packets: Sequence[Packet], data: bytes) -> List[Outcome]:
        """A 2xx batch answer may list per-item results: {"results": [{"key", "status", "reason"}]}."""
        try:
            results = json.loads(data or b"{}").get("results")
        except (ValueError, AttributeError):
            results = None
        if not isinstance(results, list):
            return [OK] * len(packets)
        by_key = {r.get("key"): r for r in results if isinstance(r, dict)}
        out = []
        for p in packets:
            r = by_key.get(p.idempotency_key)
            st = (r or {}).get("status", "stored")
            if st == "rejected":
                out.append(Outcome(REJECTED, str(r.get("reason", "rejected by the backend"))))
            elif st == "retry":
                out.append(Outcome(RETRY, str(r.get("reason", "backend asked to retry"))))
            else:
                out.append(OK)
        return out

    def close(self) -> None:
        self._drop()


# ---------------------------------------------------------------- JSONL
FSYNC_POLICIES = ("always", "interval", "never")


class JsonlSink(Sink):
    name = "jsonl"

    def __init__(self, path: str, *, fsync: str = "always", fsync_interval_s: float = 1.0,
                 rotate_bytes: int = 0, rotate_keep: int = 5) -> None:
        if fsync not in FSYNC_POLICIES:
            raise DeliveryConfigError(f"jsonl sink: fsync must be one of {FSYNC_POLICIES}, got {fsync!r}")
        if not path:
            raise DeliveryConfigError("jsonl sink: path is required")
        self.path = os.path.abspath(path)
        self.fsync = fsync
        self.fsync_interval_s = float(fsync_interval_s)
        self.rotate_bytes = int(rotate_bytes)
        self.rotate_keep = max(1, int(rotate_keep))
        self._f: Optional[Any] = None
        self._last_sync = time.monotonic()
        self._lock = threading.Lock()

    def _file(self) -> Any:
        if self._f is None:
            d = os.path.dirname(self.path)
            if d:
                os.makedirs(d, exist_ok=True)
            self._f = open(self.path, "ab")
        return self._f

    def _rotate(self) -> None:
        self._close_file()
        for i in range(self.rotate_keep - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")
        last = f"{self.path}.{self.rotate_keep + 1}"
        if os.path.exists(last):
            os.remove(last)

    def deliver(self, packets: Sequence[Packet]) -> List[Outcome]:
        out: List[Outcome] = []
        lines: List[Tuple[int, bytes]] = []
        for i, p in enumerate(packets):
            try:
                d = p.to_dict()
                d["meta"] = {k: v for k, v in d["meta"].items() if k not in QUEUE_META}
                lines.append((i, json.dumps(d, separators=(",", ":")).encode() + b"\n"))
                out.append(OK)
            except (ValueError, TypeError) as exc:
                out.append(Outcome(REJECTED, f"cannot encode packet as JSON: {exc}"))
        if not lines:
            return out
        with self._lock:
            try:
                f = self._file()
                for _, line in lines:
                    if self.rotate_bytes and f.tell() > 0 and f.tell() + len(line) > self.rotate_bytes:
                        f.flush()
                        os.fsync(f.fileno()) if self.fsync != "never" else None
                        self._rotate()
                        f = self._file()
                    f.write(line)
                f.flush()
                now = time.monotonic()
                if self.fsync == "always" or (self.fsync == "interval" and now - self._last_sync >= self.fsync_interval_s):
                    os.fsync(f.fileno())
                    self._last_sync = now
            except OSError as exc:
                self._close_file()
                reason = f"cannot write {self.path}: {exc.strerror or exc}"
                return [Outcome(RETRY, reason) if o.ok else o for o in out]
        return out

    def _close_file(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None

    def close(self) -> None:
        with self._lock:
            if self._f is not None and self.fsync != "never":
                try:
                    self._f.flush()
                    os.fsync(self._f.fileno())
                except OSError:
                    pass
            self._close_file()


# ---------------------------------------------------------------- routing
@dataclasses.dataclass
class Route:
    to: Tuple[str, ...]
    kind: str = ""
    stream: str = ""
    schema: str = ""
    meta: Dict[str, str] = dataclasses.field(default_factory=dict)

    def matches(self, p: Packet) -> bool:
        if self.kind and not fnmatch.fnmatchcase(p.kind, self.kind):
            return False
        if self.stream and not fnmatch.fnmatchcase(p.stream_id, self.stream):
            return False
        if self.schema and not fnmatch.fnmatchcase(p.schema, self.schema):
            return False
        for k, v in self.meta.items():
            if k not in p.meta or not fnmatch.fnmatchcase(p.meta[k], v or "*"):
                return False
        return True


class Routes:
    """Routing rules: every matching route contributes its ``to`` targets (fan-out);
    a packet no route matches goes to ``default``.

    Rule format (graph params)::

        routes:
          - {kind: "event", to: [backend]}
          - {stream: "cam*", meta: {severity: "high"}, to: [backend, archive]}
        default: [archive]
    """

    FIELDS = ("kind", "stream", "schema", "meta", "to")

    def __init__(self, routes: Iterable[Mapping[str, Any]] = (), default: Iterable[str] = ()) -> None:
        self.routes: List[Route] = []
        for i, r in enumerate(routes or ()):
            if not isinstance(r, Mapping):
                raise DeliveryConfigError(f"routes[{i}]: expected a mapping, got {type(r).__name__}")
            bad = set(r) - set(self.FIELDS)
            if bad:
                raise DeliveryConfigError(f"routes[{i}]: unknown field(s) {sorted(bad)}; allowed: {list(self.FIELDS)}")
            to = r.get("to")
            if isinstance(to, str):
                to = [to]
            if not to or not all(isinstance(t, str) and t for t in to):
                raise DeliveryConfigError(f"routes[{i}]: 'to' must name one or more sinks")
            meta = r.get("meta") or {}
            if not isinstance(meta, Mapping):
                raise DeliveryConfigError(f"routes[{i}]: 'meta' must be a mapping of key: value pattern")
            self.routes.append(Route(to=tuple(to), kind=str(r.get("kind", "") or ""),
                                     stream=str(r.get("stream", "") or ""), schema=str(r.get("schema", "") or ""),
                                     meta={str(k): str(v) for k, v in meta.items()}))
        self.default = tuple(default or ())

    @property
    def targets_all(self) -> Tuple[str, ...]:
        seen: "OrderedDict[str, None]" = OrderedDict()
        for r in self.routes:
            for t in r.to:
                seen[t] = None
        for t in self.default:
            seen[t] = None
        return tuple(seen)

    def targets(self, p: Packet) -> List[str]:
        out: "OrderedDict[str, None]" = OrderedDict()
        for r in self.routes:
            if r.matches(p):
                for t in r.to:
                    out[t] = None
        if not out:
            for t in self.default:
                out[t] = None
        return list(out)


# ---------------------------------------------------------------- worker
class SinkWorker:
    """Feeds a sink from a bounded in-memory buffer, in batches, in its own thread.

    Retryable failures are retried with exponential backoff and full jitter; after
    ``failure_threshold`` consecutive failed attempts the circuit breaker opens and only
    one probe per ``probe_interval_s`` is sent until the sink answers again. Packets are
    de-duplicated by idempotency key while buffered (a re-sent row is absorbed).

    Callbacks: ``on_done(packet, outcome)`` for delivered/rejected (final),
    ``on_retry(packets, reason)`` after every failed attempt (the packets stay buffered).

    The keys of the last ``remember`` delivered packets are kept: a row the queue sends
    again after its acknowledgement was lost (queue restart, lease expiry) is then
    acknowledged at once instead of being delivered a second time (:meth:`delivered_recently`).
    """

    def __init__(self, sink: Sink, *, batch_size: int = 100, max_buffer: int = 10_000,
                 backoff: Optional[Backoff] = None, breaker: Optional[CircuitBreaker] = None,
                 on_done: Optional[Callable[[Packet, Outcome], None]] = None,
                 on_retry: Optional[Callable[[List[Packet], str], None]] = None,
                 linger_s: float = 0.002, remember: int = 10_000) -> None:
        self.sink = sink
        self.remember = max(0, int(remember))
        self._done_keys: "OrderedDict[str, None]" = OrderedDict()
        self.batch_size = max(1, int(batch_size))
        self.max_buffer = int(max_buffer)
        self.backoff = backoff or Backoff(0.1, 2.0)
        self.breaker = breaker or CircuitBreaker(5, 1.0)
        self.on_done = on_done
        self.on_retry = on_retry
        self.linger_s = linger_s
        self._buf: "OrderedDict[str, Packet]" = OrderedDict()
        self._inflight: set = set()
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.attempts = 0
        self.failures = 0
        self.delivered = 0
        self.rejected = 0
        self.last_error = ""
        self.attempt_times: List[float] = []   # monotonic time of each attempt (tests, metrics)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"schnitzel-sink-{self.sink.name}",
                                            daemon=True)
            self._thread.start()

    def offer(self, packet: Packet) -> bool:
        """Buffer a packet; False when the buffer is full (the caller retries later).
        A packet whose key is already buffered or in flight is absorbed (True)."""
        with self._cv:
            k = packet.idempotency_key
            if k in self._buf or k in self._inflight:
                return True
            if self.max_buffer and len(self._buf) >= self.max_buffer:
                return False
            self._buf[k] = packet
            self._cv.notify()
            return True

    def pending(self) -> int:
        with self._cv:
            return len(self._buf) + len(self._inflight)

    def delivered_recently(self, key: str) -> bool:
        """True when a packet with this key was delivered by this worker (among the last
        ``remember``): a re-send whose first acknowledgement was lost."""
        with self._cv:
            return key in self._done_keys

    @property
    def state(self) -> BreakerState:
        return self.breaker.state

    def _take(self) -> List[Packet]:
        with self._cv:
            while not self._buf and not self._stop.is_set():
                self._cv.wait(0.2)
            if self._stop.is_set():
                return []
            if len(self._buf) < self.batch_size and self.linger_s:
                self._cv.wait(self.linger_s)
            batch = []
            while self._buf and len(batch) < self.batch_size:
                k, p = self._buf.popitem(last=False)
                self._inflight.add(k)
                batch.append(p)
            return batch

    def _requeue(self, packets: List[Packet]) -> None:
        with self._cv:
            items = [(p.idempotency_key, p) for p in packets]
            for k, _ in items:
                self._inflight.discard(k)
            old = list(self._buf.items())
            self._buf.clear()
            for k, p in items + old:
                self._buf.setdefault(k, p)

    def _loop(self) -> None:
        consecutive = 0
        while not self._stop.is_set():
            wait = self.breaker.time_to_probe()
            if wait > 0:
                self._stop.wait(min(wait, 0.5))
                continue
            if not self.breaker.allow():
                self._stop.wait(0.05)
                continue
            batch = self._take()
            if not batch:
                continue
            if self.breaker.state == BreakerState.HALF_OPEN:
                # a probe is one small request
                self._requeue(batch[1:])
                batch = batch[:1]
            self.attempts += 1
            self.attempt_times.append(time.monotonic())
            if len(self.attempt_times) > 10_000:
                del self.attempt_times[:5000]
            try:
                outcomes = self.sink.deliver(batch)
            except Exception as exc:  # noqa: BLE001 - a sink bug must not kill delivery
                log.exception("sink %s raised", self.sink.name)
                outcomes = [Outcome(RETRY, f"sink error: {exc}")] * len(batch)
            retry = [p for p, o in zip(batch, outcomes) if o.status == RETRY]
            final = [(p, o) for p, o in zip(batch, outcomes) if o.status != RETRY]
            with self._cv:
                for p, o in final:
                    self._inflight.discard(p.idempotency_key)
                    if o.ok and self.remember:
                        self._done_keys[p.idempotency_key] = None
                while len(self._done_keys) > self.remember:
                    self._done_keys.popitem(last=False)
            for p, o in final:
                if o.ok:
                    self.delivered += 1
                else:
                    self.rejected += 1
                self._call(self.on_done, p, o)
            if retry and not final:
                # nothing got through: a failed attempt for the breaker
                self.failures += 1
                consecutive += 1
                self.last_error = next(o.reason for o in outcomes if o.status == RETRY)
                self.breaker.failure()
                self._requeue(retry)
                self._call(self.on_retry, retry, self.last_error)
                if self.breaker.state == BreakerState.CLOSED:
                    self._stop.wait(self.backoff.delay(consecutive - 1))
            else:
                consecutive = 0
                self.breaker.success()
                if retry:  # partial success: retry the rest soon
                    self._requeue(retry)
                    self._call(self.on_retry, retry, next(o.reason for o in outcomes if o.status == RETRY))

    @staticmethod
    def _call(fn: Optional[Callable[..., None]], *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:  # noqa: BLE001
            log.exception("delivery callback failed")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.sink.close()

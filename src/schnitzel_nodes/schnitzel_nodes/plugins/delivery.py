"""Delivery plugins: durable_queue, sink_router, http_sink, jsonl_sink (docs/delivery.md).

Wiring: ``... -> durable_queue.in``; ``durable_queue.out -> sink_router.in`` (or straight
to one sink); ``sink_router.out<i> -> <sink>.in``. Sinks acknowledge every packet that
carries the meta ``schnitzel.queue`` / ``schnitzel.row_id`` through ``ctx.ack`` (the
runtime carries it as schnitzel_msgs/DeliveryAck on ``/<graph>/_delivery/ack``); the
queue removes a row once every sink it was routed to confirmed.

Routing: the queue computes each row's set of sinks when it accepts it, from its own
``routes``/``default``/``sinks`` params (the same rule format the router uses), stores it
with the row and sends it along as meta ``schnitzel.sinks``. The router sends a packet
carrying ``schnitzel.sinks`` to exactly those sinks (so a retry after one sink already
confirmed goes only to the ones still missing); packets without it are routed by the
router's own rules. ``sink_router.sinks`` lists the sink node ids in output-port order:
``sinks[i]`` is fed by port ``out<i>``.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional

from schnitzel_core.delivery import (DELIVERED, REJECTED, RETRY, DeliveryConfigError, HttpSink, JsonlSink,
                                     Outcome, Routes, Sink, SinkWorker)
from schnitzel_core import outbox as obx
from schnitzel_core.packet import Packet
from schnitzel_core.payload_ref import PayloadRefError
from schnitzel_core.plugin import Ack, Category, In, Out, Param, PluginSpec, Profile
from schnitzel_core.resilience import Backoff, CircuitBreaker
from schnitzel_core.store import (ANY_SINK, DurableStore, GroupCommitter, StoreError, StoreLockedError,
                                  StoreVersionError, StoreWriteError)
from schnitzel_core.tracelog import for_node as delivery_log

from ..base import ControlLogic, SinkLogic, StateLogic

META_QUEUE = "schnitzel.queue"
META_ROW = "schnitzel.row_id"
META_SINKS = "schnitzel.sinks"
META_ATTEMPT = "schnitzel.attempt"
ROUTER_PORTS = 8

_ROUTE_PARAMS = (
    Param("routes", "list", [], "routing rules: [{kind|stream|schema: glob, meta: {key: glob}, to: [sink ids]}]"),
    Param("default", "list", [], "sinks for packets no route matches", items="str"),
)


class DurableQueueLogic(StateLogic):
    """Persists every input packet (group commit) before counting it accepted, then
    forwards rows oldest-first on ``out`` and removes them only when acknowledged."""

    spec = PluginSpec(
        name="durable_queue", category=Category.STATE, version="0.1.0", durable_queue=True,
        description="Store-and-forward queue on SQLite (WAL): nothing accepted is lost through "
                    "outages, crashes or restarts; delivery is at-least-once with idempotency keys.",
        ports=(In("in", profile=Profile.EVENT), Out("out", profile=Profile.EVENT)),
        params=(
            Param("path", "str", description="SQLite database file of this queue"),
            Param("sinks", "list", [], "sink node ids every row must reach ([] = any one sink)", items="str"),
            *_ROUTE_PARAMS,
            Param("synchronous", "str", "FULL", "FULL survives power loss; NORMAL survives a process crash only",
                  enum=("FULL", "NORMAL")),
            Param("commit_rows", "int", 100, "group commit: at most this many packets per commit", minimum=1),
            Param("commit_ms", "float", 5.0, "group commit: a packet waits at most this long", minimum=0),
            Param("max_rows", "int", 0, "capacity in rows (0 = unbounded)", minimum=0),
            Param("max_bytes", "int", 0, "capacity in bytes (0 = unbounded)", minimum=0),
            Param("overflow", "str", "reject_new", "what happens when full", enum=("reject_new", "drop_oldest")),
            Param("ledger_retention_s", "float", 7 * 24 * 3600.0, "how long delivered keys are remembered",
                  minimum=0),
            Param("max_inflight", "int", 100, "rows sent and not yet acknowledged, the most any one fault re-sends "
                  "(keep it <= the QoS depth of the queue->sink edge, 100 for 'events'; the ack topic keeps "
                  "10,000)", minimum=1),
            Param("forward_batch", "int", 100, "rows read per poll", minimum=1),
            Param("lease_s", "float", 30.0, "an unacknowledged row is re-sent after this", minimum=0.1),
            Param("max_attempts", "int", 0, "dead-letter after this many failed attempts (0 = never)", minimum=0),
            Param("poll_s", "float", 0.02, "how often ready rows are looked for", minimum=0.001),
            Param("stats_s", "float", 1.0, "how often depth and oldest age are refreshed", minimum=0.05),
            Param("probe_s", "float", 5.0, "while writes fail, retry a write this often", minimum=0.1),
        ),
    )

    def configure(self) -> None:
        p = self.params
        sinks = [str(s) for s in (p.get("sinks") or [])]
        self.routes: Optional[Routes] = None
        try:
            if p.get("routes"):
                self.routes = Routes(p["routes"], p.get("default") or sinks)
        except DeliveryConfigError as exc:
            raise ValueError(f"durable_queue {self.ctx.node_id}: {exc}") from None
        self.sinks = sinks
        try:
            self.store = DurableStore(p["path"], synchronous=p.get("synchronous", "FULL"),
                                      max_rows=p.get("max_rows", 0), max_bytes=p.get("max_bytes", 0),
                                      overflow=p.get("overflow", "reject_new"),
                                      ledger_retention_s=p.get("ledger_retention_s", 7 * 24 * 3600.0),
                                      owner=True)   # one queue per file: a second run is refused
        except (StoreLockedError, StoreVersionError) as exc:   # the user's to fix: the message says how
            raise ValueError(f"durable_queue {self.ctx.node_id}: {exc}") from None
        except StoreError as exc:
            raise RuntimeError(f"durable_queue {self.ctx.node_id}: {exc}") from None
        self.committer = GroupCommitter(self.store, max_rows=int(p.get("commit_rows", 100)),
                                        max_ms=float(p.get("commit_ms", 5.0)), sinks=self._row_sinks,
                                        on_commit=self._committed, on_error=self._commit_failed)
        self.tick_period_s = float(p.get("poll_s", 0.02))
        self._lock = threading.Lock()
        self._retry: Dict[int, str] = {}
        # id(packet) -> (sender id, outbox seq) of packets waiting for their commit
        self._tags: Dict[int, Any] = {}
        self._reject: Dict[int, str] = {}
        self.refusing = ""          # reason new packets are refused ("" = accepting)
        self.last_error = ""
        self._next_probe = 0.0
        self._next_stats = 0.0
        self._gauges: Dict[str, int] = {}
        self.accepted = 0
        self.active = False
        # by-reference payloads (docs/delivery.md): the blob is held while a row stores it
        self.refs = getattr(self.ctx, "payload_refs", None)
        self.dlog = delivery_log(self.ctx.node_id)   # for `schnitzel trace` (None outside schnitzel run)
        self._set_gauges()

    def _row_sinks(self, p: Packet) -> List[str]:
        if self.routes is not None:
            return self.routes.targets(p)
        return self.sinks

    # ---- input
    def on_packet(self, port: str, packet: Packet) -> None:
        # a packet from an outbox: its sender keeps it until we acknowledge the commit
        sender, seq, packet = obx.untag(packet)
        if self.routes is not None and not self.routes.targets(packet):
            self.ctx.count("dropped_unrouted")
            if sender:   # dropped by our own routing on purpose: nothing to re-send
                self._ack_upstream([(sender, seq)])
            return
        if self.refusing:
            now = time.monotonic()
            if now < self._next_probe:
                self.ctx.count(f"refused_{self.refusing}")
                return   # not acknowledged: the sender's outbox sends it again
            self._next_probe = now + float(self.params.get("probe_s", 5.0))
        if self.refs is not None and packet.payload_ref is not None and not self._hold_blob(packet):
            if sender:   # its blob is gone for good: a re-send cannot help
                self._ack_upstream([(sender, seq)])
            return
        if sender:
            with self._lock:
                self._tags[id(packet)] = (sender, seq)
        self.committer.submit(packet)

    def _hold_blob(self, packet: Packet) -> bool:
        """Keep a by-reference packet's blob while a row stores it; a missing one is refused."""
        try:
            self.refs.hold(packet, self.ctx.node_id)
            return True
        except (PayloadRefError, OSError) as exc:
            self.ctx.count("payload_ref_errors")
            self.ctx.logger.error("durable_queue %s: packet %s not accepted: %s", self.ctx.node_id,
                                  packet.packet_id, exc)
            return False

    def _release_blobs(self) -> None:
        """Release the blobs of rows no longer stored (delivered everywhere, purged, dropped).
        Only when no commit is pending: a hold taken before this tick is then on a committed
        (or refused) row, so a row in flight never loses its blob."""
        if self.committer.pending():
            return
        try:
            n = self.refs.reconcile(self.ctx.node_id, self.store.has_key)
            self.refs.maybe_sweep()   # unheld blobs past their lease, also once producers stopped
        except (StoreError, OSError) as exc:
            self.last_error = str(exc)
            return
        if n:
            self.ctx.count("payload_refs_released", n)

    def _take_tags(self, batch: List[Packet]) -> List[Any]:
        if not self._tags:
            return []
        with self._lock:
            return [t for t in (self._tags.pop(id(p), None) for p in batch) if t is not None]

    def _ack_upstream(self, tags: List[Any]) -> None:
        """One 'accepted' acknowledgement per sender for committed outbox packets."""
        batch = obx.AcceptedBatch()
        for sender, seq in tags:
            batch.add(sender, seq)
        for sender, ranges in batch.acks():
            self.ctx.ack(Ack(obx.sender_node(sender), self.ctx.node_id, sender, 0, "accepted", seqs=tuple(ranges)))

    def _committed(self, batch: List[Packet], res: Any) -> None:
        tags = self._take_tags(batch)
        if tags and not res.rejected:
            # committed (or a duplicate of a committed key): the sender may forget them. A batch
            # partly refused for capacity is not acknowledged: the sender re-sends it all and
            # the key absorbs the rows that were accepted.
            self._ack_upstream(tags)
        if self.refusing:
            self.ctx.logger.warning("durable_queue %s: writes succeed again; accepting packets", self.ctx.node_id)
            self.refusing = ""
        self.accepted += res.accepted
        self.ctx.count("accepted", res.accepted)
        if self.dlog is not None and res.accepted + res.duplicates:
            status = ("queued" if not res.duplicates else "duplicate" if not res.accepted else "queued_or_duplicate")
            self.dlog.events("queued", [p.idempotency_key for p in batch], queue=self.ctx.node_id, status=status)
        for name in ("duplicates", "rejected", "dropped"):
            n = getattr(res, name)
            if n:
                self.ctx.count({"duplicates": "duplicates", "rejected": "refused_full",
                                "dropped": "dropped_overflow"}[name], n)

    def _commit_failed(self, batch: List[Packet], exc: StoreError) -> None:
        self._take_tags(batch)   # not acknowledged: the senders' outboxes send them again
        reason = exc.reason if isinstance(exc, StoreWriteError) else "store_error"
        if not self.refusing:
            self.ctx.logger.error("durable_queue %s: %s - refusing new packets; accepted rows are kept",
                                  self.ctx.node_id, exc)
        self.refusing = reason
        self.last_error = str(exc)
        self._next_probe = time.monotonic() + float(self.params.get("probe_s", 5.0))
        self.ctx.count("errors")
        self.ctx.count(f"refused_{reason}", len(batch))

    def health(self) -> Dict[str, Any]:
        """For the adapter's diagnostics/status: level ok|warn|error, message, values."""
        level = "error" if self.refusing else "ok"
        msg = (f"refusing new packets: {self.last_error}" if self.refusing else "accepting")
        return {"level": level, "message": msg, "values": dict(self._gauges), "last_error": self.last_error}

    # ---- forwarding
    def activate(self) -> None:
        self.active = True

    def deactivate(self) -> None:
        self.active = False

    def tick(self) -> None:
        self._apply_outcomes()
        if self.active:
            room = int(self.params.get("max_inflight", 100)) - self.store.leased
            if room > 0:
                try:
                    # never wait for a commit's fsync here: this executor also takes packets off DDS
                    rows = self.store.lease(min(room, int(self.params.get("forward_batch", 100))),
                                            float(self.params.get("lease_s", 30.0)), wait=False)
                except StoreError as exc:
                    self.last_error = str(exc)
                    self.ctx.count("errors")
                    rows = []
                for r in rows:
                    meta = {META_QUEUE: self.ctx.node_id, META_ROW: r.id, META_ATTEMPT: r.attempts + 1}
                    if r.sinks != (ANY_SINK,):
                        meta[META_SINKS] = ",".join(r.sinks)
                    self.ctx.emit("out", r.packet.with_meta(**meta))
                if rows:
                    self.ctx.count("forwarded", len(rows))
                    if self.dlog is not None:
                        for r in rows:
                            self.dlog.event("sent", r.packet.idempotency_key, row=r.id, attempt=r.attempts + 1)
        if time.monotonic() >= self._next_stats:
            self._set_gauges()
            if self.refs is not None:
                self._release_blobs()

    def _set_gauges(self) -> None:
        """depth, bytes, oldest_age_ms, leased, dead as gauges (counters set to the current value)."""
        self._next_stats = time.monotonic() + float(self.params.get("stats_s", 1.0))
        try:
            st = self.store.stats(wait=False)
        except StoreError as exc:
            self.last_error = str(exc)
            return
        if st is None:  # a commit holds the store: refresh at the next tick
            self._next_stats = 0.0
            return
        now = {"depth": st.depth, "bytes": st.bytes, "oldest_age_ms": int(st.oldest_age_s * 1000),
               "leased": st.leased, "dead": st.dead}
        for k, v in now.items():
            d = v - self._gauges.get(k, 0)
            if d or k not in self.ctx.counters:
                self.ctx.count(k, d)
        self._gauges = now

    # ---- acknowledgements
    def on_ack(self, ack: Ack) -> None:
        if ack.queue_id != self.ctx.node_id:
            return
        if self.dlog is not None:
            self.dlog.event("ack", ack.idempotency_key, sink=ack.sink_id, outcome=ack.outcome, row=ack.row_id,
                            reason=ack.reason)
        if ack.outcome == DELIVERED:
            self.committer.submit_ack([ack.row_id], ack.sink_id or ANY_SINK)
            self.ctx.count("acked")
        elif ack.outcome == RETRY:
            with self._lock:
                self._retry[ack.row_id] = ack.reason
        elif ack.outcome == REJECTED:
            with self._lock:
                self._reject[ack.row_id] = f"rejected by {ack.sink_id}: {ack.reason}"

    def _apply_outcomes(self) -> None:
        with self._lock:
            retry, self._retry = self._retry, {}
            reject, self._reject = self._reject, {}
        try:
            if retry:
                lease_s = float(self.params.get("lease_s", 30.0))
                by_reason: Dict[str, List[int]] = {}
                for rid, reason in retry.items():
                    by_reason.setdefault(reason, []).append(rid)
                for reason, ids in by_reason.items():
                    self.store.extend(ids, lease_s, reason)
                    ma = int(self.params.get("max_attempts", 0))
                    if ma:
                        n = self.store.nack_over(ids, ma, reason)
                        if n:
                            self.ctx.count("dead_lettered", n)
                self.ctx.count("retries", len(retry))
            for rid, reason in reject.items():
                n = self.store.dead_letter([rid], reason)
                self.ctx.count("dead_lettered", n)
        except StoreError as exc:
            self.last_error = str(exc)
            self.ctx.count("errors")

    def cleanup(self) -> None:
        try:
            self.committer.close()
            self._apply_outcomes()
            if self.refs is not None:
                self._release_blobs()   # the last acks' blobs go now, not at the next start
        finally:
            self.store.close()
            if self.dlog is not None:
                self.dlog.close()


class SinkRouterLogic(ControlLogic):
    """Routes packets to sink output ports by kind, stream, schema or meta key."""

    spec = PluginSpec(
        name="sink_router", category=Category.CONTROL, version="0.1.0",
        description="Routes packets to sinks (fan-out allowed); honours the per-row routing a durable "
                    "queue attaches (meta schnitzel.sinks).",
        ports=(In("in", profile=Profile.EVENT),
               *[Out(f"out{i}", profile=Profile.EVENT) for i in range(ROUTER_PORTS)]),
        params=(
            Param("sinks", "list", description="sink node ids in port order: sinks[i] is fed by out<i>",
                  items="str"),
            *_ROUTE_PARAMS,
        ),
    )

    def configure(self) -> None:
        sinks = [str(s) for s in self.params.get("sinks") or []]
        if not sinks or len(sinks) > ROUTER_PORTS or len(set(sinks)) != len(sinks):
            raise ValueError(f"sink_router {self.ctx.node_id}: 'sinks' must list 1..{ROUTER_PORTS} distinct "
                             f"sink ids (got {sinks})")
        try:
            self.routes = Routes(self.params.get("routes") or [], self.params.get("default") or
                                 ([] if self.params.get("routes") else sinks))
        except DeliveryConfigError as exc:
            raise ValueError(f"sink_router {self.ctx.node_id}: {exc}") from None
        unknown = [t for t in self.routes.targets_all if t not in sinks]
        if unknown:
            raise ValueError(f"sink_router {self.ctx.node_id}: routes name sinks {unknown} that are not in "
                             f"'sinks' {sinks}")
        self.port_of = {s: f"out{i}" for i, s in enumerate(sinks)}

    def on_packet(self, port: str, packet: Packet) -> None:
        tagged = packet.meta.get(META_SINKS)
        targets = tagged.split(",") if tagged else self.routes.targets(packet)
        if not targets:
            self.ctx.count("unrouted")
            return
        for t in targets:
            out = self.port_of.get(t)
            if out is None:
                self.ctx.count("unrouted")
                q, row = packet.meta.get(META_QUEUE), packet.meta.get(META_ROW)
                if q and row:
                    self.ctx.ack(Ack(q, t, packet.idempotency_key, int(row), REJECTED,
                                     f"router {self.ctx.node_id} has no port for sink {t!r}"))
                continue
            self.ctx.emit(out, packet)


_WORKER_PARAMS = (
    Param("batch_size", "int", 100, "packets per delivery attempt", minimum=1),
    Param("max_buffer", "int", 10000, "packets held in memory while delivering", minimum=1),
    Param("backoff_base_s", "float", 0.1, "first retry delay ceiling (full jitter)", minimum=0.001),
    Param("backoff_cap_s", "float", 2.0, "largest retry delay ceiling", minimum=0.001),
    Param("failure_threshold", "int", 5, "consecutive failures that open the circuit breaker", minimum=1),
    Param("probe_interval_s", "float", 1.0, "while the breaker is open, one probe this often", minimum=0.01),
    Param("remember", "int", 10000, "keys of recently delivered packets kept: a re-sent one is acknowledged "
          "again instead of delivered twice (0 = off)", minimum=0),
)


class _WorkerSinkLogic(SinkLogic):
    """A sink fed through a SinkWorker: retries, breaker, acks to the queue."""

    def make_sink(self) -> Sink:  # pragma: no cover - overridden
        raise NotImplementedError

    def configure(self) -> None:
        p = self.params
        try:
            sink = self.make_sink()
            backoff = Backoff(float(p.get("backoff_base_s", 0.1)),
                              max(float(p.get("backoff_cap_s", 2.0)), float(p.get("backoff_base_s", 0.1))))
            breaker = CircuitBreaker(int(p.get("failure_threshold", 5)), float(p.get("probe_interval_s", 1.0)),
                                     on_change=self._breaker_changed)
        except (DeliveryConfigError, ValueError) as exc:
            raise ValueError(f"{self.spec.name} {self.ctx.node_id}: {exc}") from None
        self.dlog = delivery_log(self.ctx.node_id)   # for `schnitzel trace` (None outside schnitzel run)
        self.worker = SinkWorker(sink, batch_size=int(p.get("batch_size", 100)),
                                 max_buffer=int(p.get("max_buffer", 10000)), backoff=backoff, breaker=breaker,
                                 on_done=self._done, on_retry=self._retry, remember=int(p.get("remember", 10000)))

    def _breaker_changed(self, old: Any, new: Any) -> None:
        self.ctx.logger.warning("%s %s: circuit breaker %s -> %s", self.spec.name, self.ctx.node_id,
                                old.value, new.value)
        self.ctx.count(f"breaker_{new.value}")
        # the current state as a gauge (0 closed, 1 half_open, 2 open) for the metrics endpoint
        code = {"closed": 0, "half_open": 1, "open": 2}.get(new.value, 0)
        self.ctx.count("breaker_state", code - int(self.ctx.counters.get("breaker_state", 0)))

    def activate(self) -> None:
        self.worker.start()

    def deactivate(self) -> None:
        self.worker.stop()

    def _ack(self, p: Packet, outcome: str, reason: str = "") -> None:
        q, row = p.meta.get(META_QUEUE), p.meta.get(META_ROW)
        if q and row:
            self.ctx.ack(Ack(q, self.ctx.node_id, p.idempotency_key, int(row), outcome, reason))

    def _done(self, p: Packet, o: Outcome) -> None:
        self.ctx.count("delivered" if o.ok else "rejected")
        if self.dlog is not None:
            self.dlog.event("attempt", p.idempotency_key, sink=self.ctx.node_id, result=o.status, reason=o.reason)
        self._ack(p, o.status, o.reason)

    def _retry(self, packets: List[Packet], reason: str) -> None:
        self.ctx.count("retries", len(packets))
        if self.dlog is not None:
            self.dlog.events("attempt", [p.idempotency_key for p in packets], sink=self.ctx.node_id,
                             result=RETRY, reason=reason)
        for p in packets:
            self._ack(p, RETRY, reason)

    def write(self, packet: Packet) -> None:
        if packet.meta.get(META_ROW) and self.worker.delivered_recently(packet.idempotency_key):
            # delivered before, its acknowledgement was lost (queue restart, lease expiry):
            # confirm again instead of delivering twice
            self.ctx.count("reacked")
            self._ack(packet, DELIVERED, "delivered earlier")
            return
        if not self.worker.offer(packet):
            self.ctx.count("busy")
            self._ack(packet, RETRY, "sink buffer full")

    def health(self) -> Dict[str, Any]:
        st = self.worker.state.value
        return {"level": "ok" if st == "closed" else "warn",
                "message": f"breaker {st}" + (f": {self.worker.last_error}" if st != "closed" else ""),
                "values": {"pending": self.worker.pending(), "breaker": st}, "last_error": self.worker.last_error}


class HttpSinkLogic(_WorkerSinkLogic):
    spec = PluginSpec(
        name="http_sink", category=Category.SINK, version="0.1.0", external=True,
        description="POSTs packets as JSON to an HTTP(S) backend with the Idempotency-Key header; "
                    "retries with backoff and a circuit breaker; never crashes on failure.",
        ports=(In("in", profile=Profile.EVENT),),
        params=(
            Param("url", "str", description="http(s)://host:port/path"),
            Param("batch", "bool", True, "send several packets per request ({\"batch\": [...]})"),
            Param("timeout_s", "float", 5.0, "connect/read timeout", minimum=0.01),
            Param("verify_tls", "bool", True, "verify the server certificate (https)"),
            Param("ca_file", "str", "", "CA bundle for verification (default: system store)"),
            Param("token_env", "str", "", "environment variable holding a bearer token", secret_env=True),
            *_WORKER_PARAMS,
        ),
    )

    def make_sink(self) -> Sink:
        p = self.params
        return HttpSink(p["url"], batch=bool(p.get("batch", True)), timeout_s=float(p.get("timeout_s", 5.0)),
                        verify_tls=bool(p.get("verify_tls", True)), ca_file=p.get("ca_file", ""),
                        token_env=p.get("token_env", ""))


class JsonlSinkLogic(_WorkerSinkLogic):
    spec = PluginSpec(
        name="jsonl_sink", category=Category.SINK, version="0.1.0", external=True,
        description="Appends packets as JSON lines to a file (fsync policy, rotation by size).",
        ports=(In("in", profile=Profile.EVENT),),
        params=(
            Param("path", "str", description="output file (.jsonl)"),
            Param("fsync", "str", "always", "always | interval | never", enum=("always", "interval", "never")),
            Param("fsync_interval_s", "float", 1.0, "with fsync=interval", minimum=0.0),
            Param("rotate_bytes", "int", 0, "rotate when the file would exceed this size (0 = never)", minimum=0),
            Param("rotate_keep", "int", 5, "rotated files kept (path.1 ... path.N)", minimum=1),
            *_WORKER_PARAMS,
        ),
    )

    def make_sink(self) -> Sink:
        p = self.params
        return JsonlSink(p["path"], fsync=p.get("fsync", "always"),
                         fsync_interval_s=float(p.get("fsync_interval_s", 1.0)),
                         rotate_bytes=int(p.get("rotate_bytes", 0)), rotate_keep=int(p.get("rotate_keep", 5)))

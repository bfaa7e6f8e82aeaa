"""Zenoh edges between sites (docs/multi-host.md): one Zenoh session per container process.

A ``transport: zenoh`` edge carries the StreamPacket's CDR bytes (exactly what DDS would carry)
under the edge's key expression ``schnitzel/<graph>/<src>/<port>/<dst>/<port>``; the receiving
side sends the sinks' acknowledgements (DeliveryAck CDR bytes) back under ``<key>/ack``. The
sending node is always a durable queue (validator SCH704): while the link is down puts go nowhere,
the rows stay leased in the queue and are sent again when their lease (``lease_s``) runs out, so a
link cut loses nothing and the backlog drains once the link is back.

The session is opened on a background thread and retried until it opens (a router or peer that
is not up yet must not block or fail the container); puts before that are dropped like puts
during a cut. Settings (``ports_json`` ``zenoh``, made by the compiler): ``mode`` peer | client,
``connect`` and ``listen`` endpoint lists.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

RETRY_S = 0.5


def make_config(settings: Mapping[str, Any]) -> Any:
    import zenoh

    mode = settings.get("mode", "peer")
    cfg = zenoh.Config()
    cfg.insert_json5("mode", json.dumps(mode))
    cfg.insert_json5("connect/endpoints", json.dumps(list(settings.get("connect") or [])))
    cfg.insert_json5("listen/endpoints", json.dumps(list(settings.get("listen") or [])))
    # peers find each other by the endpoints the compiler lists (host addresses), not by
    # multicast scouting: sites rarely share a multicast domain
    cfg.insert_json5("scouting/multicast/enabled", "false")
    if mode == "peer":
        # the later of two peers connects to the earlier one, which listens: no wait at open
        cfg.insert_json5("connect/timeout_ms", "0")
        cfg.insert_json5("connect/exit_on_failure", "false")
    return cfg


class Link:
    """One process-wide session for one settings mapping; thread-safe."""

    _links: Dict[str, "Link"] = {}
    _guard = threading.Lock()

    @classmethod
    def get(cls, settings: Mapping[str, Any]) -> "Link":
        key = json.dumps(settings, sort_keys=True)
        with cls._guard:
            link = cls._links.get(key)
            if link is None:
                link = cls._links[key] = Link(dict(settings))
            return link

    def __init__(self, settings: Dict[str, Any]) -> None:
        self.settings = settings
        self.session: Any = None
        self.error = ""
        self._lock = threading.Lock()
        self._subs: Dict[int, Tuple[str, Callable[[bytes], None], Any]] = {}
        self._next = 0
        self._stop = threading.Event()
        threading.Thread(target=self._open, name="zenoh-open", daemon=True).start()

    def _open(self) -> None:
        import zenoh

        while not self._stop.is_set():
            try:
                session = zenoh.open(make_config(self.settings))
            except Exception as exc:  # noqa: BLE001 - router or peer not reachable yet: retry
                self.error = str(exc)
                self._stop.wait(RETRY_S)
                continue
            with self._lock:
                self.session = session
                self.error = ""
                for sid, (key, cb, _h) in list(self._subs.items()):
                    self._subs[sid] = (key, cb, self._declare(key, cb))
            return

    def _declare(self, key: str, cb: Callable[[bytes], None]) -> Any:
        return self.session.declare_subscriber(key, lambda sample: cb(bytes(sample.payload.to_bytes())))

    def put(self, key: str, data: bytes) -> bool:
        """Send; False when the session is not open yet (the bytes go nowhere, like during a cut)."""
        s = self.session
        if s is None:
            return False
        s.put(key, data)
        return True

    def subscribe(self, key: str, cb: Callable[[bytes], None]) -> int:
        with self._lock:
            self._next += 1
            handle = self._declare(key, cb) if self.session is not None else None
            self._subs[self._next] = (key, cb, handle)
            return self._next

    def unsubscribe(self, sid: int) -> None:
        with self._lock:
            entry = self._subs.pop(sid, None)
        if entry is not None and entry[2] is not None:
            try:
                entry[2].undeclare()
            except Exception:  # noqa: BLE001 - session closing
                pass


def ack_key(key: str) -> str:
    return f"{key}/ack"


def edge_keys(decl: Mapping[str, Any]) -> List[str]:
    """The zenoh keys of an output port's ports_json declaration."""
    return [str(k) for k in (decl.get("zenoh_keys") or [])]


def settings_of(ports: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    return dict((ports or {}).get("zenoh") or {})

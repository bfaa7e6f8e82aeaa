"""Policy: zones, dedup, rules, event_builder. Decisions use packet stamps (event time) only."""
from __future__ import annotations

import json
import os
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from schnitzel_core.packet import Packet, derive_key
from schnitzel_core.plugin import Category, In, Out, Param, PluginSpec, Profile

from ._common import (BadPacket, ConfigError, FieldRef, Policy, detections_of, json_body,
                      with_json)
from .expr import Expression

NS = 1_000_000_000
EPS = 1e-9


# ---- geometry ----------------------------------------------------------------------

def point_in_polygon(x: float, y: float, poly: Sequence[Sequence[float]]) -> bool:
    """True when (x, y) is inside ``poly`` or on one of its edges or vertices."""
    n = len(poly)
    for i in range(n):
        (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % n]
        cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
        if abs(cross) <= EPS * max(1.0, abs(x2 - x1) + abs(y2 - y1)) and \
                min(x1, x2) - EPS <= x <= max(x1, x2) + EPS and min(y1, y2) - EPS <= y <= max(y1, y2) + EPS:
            return True
    inside = False
    for i in range(n):
        (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % n]
        if (y1 > y) != (y2 > y):
            xin = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < xin:
                inside = not inside
    return inside


def parse_zones(data: Any, where: str) -> List[Dict[str, Any]]:
    """Validate zone definitions: a list (or {"zones": [...]}) of {id, polygon, labels?, normalized?,
    enabled?} (``enabled: false`` keeps the zone defined but it never matches a box)."""
    if isinstance(data, dict) and "zones" in data:
        data = data["zones"]
    if not isinstance(data, list):
        raise ConfigError(f"{where}: zones must be a list of {{id, polygon}} (or an object with a 'zones' list)")
    zones, seen = [], set()
    for i, z in enumerate(data):
        if not isinstance(z, dict):
            raise ConfigError(f"{where}: zone {i} must be an object with id and polygon")
        zid = z.get("id")
        if not isinstance(zid, (str, int)) or isinstance(zid, bool) or str(zid) == "":
            raise ConfigError(f"{where}: zone {i} needs an id (text)")
        zid = str(zid)
        if zid in seen:
            raise ConfigError(f"{where}: zone id {zid!r} appears twice")
        seen.add(zid)
        poly = z.get("polygon")
        ok = isinstance(poly, list) and len(poly) >= 3 and all(
            isinstance(pt, (list, tuple)) and len(pt) == 2 and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in pt)
            for pt in poly)
        if not ok:
            raise ConfigError(f"{where}: zone {zid!r} polygon must be a list of at least 3 [x, y] points")
        labels = z.get("labels") or []
        if not isinstance(labels, list):
            raise ConfigError(f"{where}: zone {zid!r} labels must be a list")
        enabled = z.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}: zone {zid!r} enabled must be true or false, got {enabled!r}")
        zones.append({"id": zid, "polygon": [[float(a), float(b)] for a, b in poly], "enabled": enabled,
                      "labels": [str(x) for x in labels], "normalized": bool(z.get("normalized", False)),
                      "severity": z.get("severity"), "name": z.get("name", zid)})
    return zones


def _read_zone_text(text: str, path: str) -> Any:
    if path.lower().endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_load(text)
    return json.loads(text)


class ZonesLogic(Policy):
    """Tests detections against polygon zones; adds zone ids to boxes and emits enter/exit events.

    Zones come from ``zones`` (inline), ``zones_file`` (JSON/YAML, reloaded when its mtime
    changes) or ``zones_url`` (HTTP GET of the same JSON, refreshed every ``refresh_s`` in a
    background thread; each good answer is written to ``cache_file``, which is used when the
    endpoint is unreachable). While no zone set is known, detections are passed with
    ``zones_unknown: true`` (meta ``zones_unknown=1``) and no event is emitted: an object is
    never judged "outside" zones nobody knows.
    """

    spec = PluginSpec(
        name="zones", category=Category.POLICY, version="1.0.0", stateful=True,
        description="Polygon zones over detections: zone membership and zone enter/exit events.",
        ports=(In("in", ("detections",)),
               Out("out", ("detections",), description="detections with each box's 'zones' list"),
               Out("events", ("event",), profile=Profile.EVENT, description="zone_enter / zone_exit / zone_inside events"),
               Out("error", ("*",))),
        params=(
            Param("zones", "list", [], "inline zones: [{id, polygon: [[x, y], ...], labels?: [..], normalized?: bool, severity?, enabled?: bool}]"),
            Param("zones_file", "str", "", "JSON or YAML zone file, reloaded when it changes"),
            Param("zones_url", "str", "", "HTTP(S) URL serving the zone JSON"),
            Param("cache_file", "str", "", "where the last zones fetched from zones_url are kept (fallback when it is unreachable)"),
            Param("refresh_s", "float", 60.0, "zones_url refresh period (seconds)", minimum=0.1),
            Param("timeout_s", "float", 2.0, "zones_url request timeout (seconds)", minimum=0.05, maximum=60.0),
            Param("rule", "str", "bottom_center", "which point of a box decides membership", enum=("bottom_center", "bbox_center"), live=True),
            Param("emit", "list", ["enter"], "events to emit: enter, exit (tracked boxes), inside (every box in a zone)", items="str", live=True),
            Param("drop_outside", "bool", False, "drop boxes in no zone from the out port", live=True),
            Param("forget_s", "float", 10.0, "a track unseen for this long (stamp time) is forgotten; seen again "
                  "later, it enters afresh", minimum=0.0, live=True),
        ),
    )

    def configure(self) -> None:
        p = self.params
        sources = [bool(p["zones"]), bool(p["zones_file"]), bool(p["zones_url"])]
        if sum(sources) > 1:
            raise ConfigError("zones: give only one of zones, zones_file or zones_url")
        self.check_params(p)
        self.zones: Optional[List[Dict[str, Any]]] = None
        self.zones_source = "none"
        self._lock = threading.Lock()
        self._mtime: Optional[Tuple[float, int]] = None
        self.membership: Dict[str, Dict[str, Any]] = {}  # "stream\x1ftrack" -> {zones, seen}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if p["zones"]:
            self.zones = parse_zones(p["zones"], "zones")
            self.zones_source = "inline"
        elif p["zones_file"]:
            self._check_file(initial=True)
        elif p["zones_url"]:
            self.refresh_url()
        else:
            raise ConfigError("zones: give zones (inline), zones_file or zones_url")

    def check_params(self, params: Mapping[str, Any]) -> None:
        # also the check of a live change of emit (before it is applied)
        bad = [e for e in params["emit"] if e not in ("enter", "exit", "inside")]
        if bad:
            raise ConfigError(f"zones: emit may contain enter, exit, inside; got {bad}")

    # -- zone sources
    def _check_file(self, initial: bool = False) -> None:
        path = self.params["zones_file"]
        try:
            st = os.stat(path)
        except OSError as exc:
            if initial:
                self.ctx.logger.warning("zones: zone file %s cannot be read (%s); zones unknown until it appears", path, exc.strerror)
            return
        sig = (st.st_mtime, st.st_size)
        if sig == self._mtime:
            return
        self._mtime = sig
        try:
            with open(path, "r", encoding="utf-8") as fh:
                zones = parse_zones(_read_zone_text(fh.read(), path), f"zones file {path}")
        except (OSError, ValueError, Exception) as exc:  # keep the last good zones on a bad edit
            self.ctx.count("zone_reload_errors")
            self.ctx.logger.warning("zones: zone file %s not loaded (%s); keeping the previous zones", path, exc)
            return
        with self._lock:
            self.zones, self.zones_source = zones, "file"
        self.ctx.count("zone_reloads")
        self.ctx.logger.info("zones: loaded %d zones from %s", len(zones), path)

    def refresh_url(self) -> bool:
        """Fetch zones_url once; on failure fall back to cache_file. True when zones are known."""
        import urllib.request

        p = self.params
        try:
            with urllib.request.urlopen(p["zones_url"], timeout=float(p["timeout_s"])) as resp:
                text = resp.read().decode("utf-8")
            zones = parse_zones(json.loads(text), f"zones from {p['zones_url']}")
        except Exception as exc:  # network errors, HTTP errors, bad JSON
            self.ctx.count("zone_fetch_errors")
            with self._lock:
                known = self.zones is not None
            if known:
                self.ctx.logger.warning("zones: %s unreachable (%s); keeping the zones in use", p["zones_url"], exc)
                return True
            return self._load_cache(exc)
        with self._lock:
            self.zones, self.zones_source = zones, "url"
        if p["cache_file"]:
            tmp = p["cache_file"] + ".tmp"
            try:
                with open(tmp, "w", encoding="utf-8") as fh:
                    json.dump({"zones": zones}, fh)
                os.replace(tmp, p["cache_file"])
            except OSError as exc:
                self.ctx.logger.warning("zones: cannot write cache %s (%s)", p["cache_file"], exc)
        return True

    def _load_cache(self, why: Exception) -> bool:
        path = self.params["cache_file"]
        if path and os.path.exists(path):
            try:
                with open(path, "r", encoding="utf-8") as fh:
                    zones = parse_zones(json.load(fh), f"zone cache {path}")
                with self._lock:
                    self.zones, self.zones_source = zones, "cache"
                self.ctx.logger.warning("zones: %s unreachable (%s); using the cached zones from %s",
                                        self.params["zones_url"], why, path)
                return True
            except Exception as exc:
                self.ctx.logger.warning("zones: cache %s unusable (%s)", path, exc)
        self.ctx.logger.warning("zones: %s unreachable (%s) and no cache; zones unknown", self.params["zones_url"], why)
        return False

    def activate(self) -> None:
        if self.params["zones_url"] and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, name=f"zones-{self.ctx.node_id}", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(float(self.params["refresh_s"])):
            self.refresh_url()

    def deactivate(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=float(self.params["timeout_s"]) + 1)
            self._thread = None

    # -- judging
    def point(self, b: Mapping[str, float]) -> Tuple[float, float]:
        if self.params["rule"] == "bbox_center":
            return (b["x1"] + b["x2"]) / 2.0, (b["y1"] + b["y2"]) / 2.0
        return (b["x1"] + b["x2"]) / 2.0, float(b["y2"])

    def zones_of(self, b: Mapping[str, Any], zones: List[Dict[str, Any]], w: Any, h: Any) -> List[str]:
        x, y = self.point(b)
        hits = []
        for z in zones:
            if not z["enabled"]:
                continue   # a disabled zone never matches: no membership, no event
            if z["labels"] and str(b.get("label")) not in z["labels"]:
                continue
            poly = z["polygon"]
            if z["normalized"]:
                if not w or not h:
                    continue
                poly = [[px * float(w), py * float(h)] for px, py in poly]
            if point_in_polygon(x, y, poly):
                hits.append(z["id"])
        return hits

    def process(self, port: str, packet: Packet) -> Any:
        if self.params["zones_file"]:
            self._check_file()
        doc = detections_of(packet)
        with self._lock:
            zones = self.zones
        if zones is None:
            self.ctx.count("zones_unknown")
            doc["zones_unknown"] = True
            return [("out", with_json(packet, doc).with_meta(zones_unknown="1"))]
        emit = set(self.params["emit"])
        by_id = {z["id"]: z for z in zones}
        events: List[Tuple[str, Packet]] = []
        kept = []
        for i, b in enumerate(doc["boxes"]):
            zs = self.zones_of(b, zones, doc.get("width"), doc.get("height"))
            b["zones"] = zs
            if zs or not self.params["drop_outside"]:
                kept.append(b)
            tid = b.get("track_id")
            if tid is not None:
                key = f"{packet.stream_id}\x1f{tid}"
                before = self.membership.get(key, {}).get("zones", [])
                self.membership[key] = {"zones": zs, "seen": packet.stamp_ns}
                if "enter" in emit:
                    for z in zs:
                        if z not in before:
                            events.append(self._event(packet, "zone_enter", z, b, by_id))
                if "exit" in emit:
                    for z in before:
                        if z not in zs:
                            events.append(self._event(packet, "zone_exit", z, b, by_id))
            if "inside" in emit:
                for z in zs:
                    events.append(self._event(packet, "zone_inside", z, b, by_id, index=i))
        # a track missing from a few frames keeps its zones (no spurious re-enter); one unseen
        # for forget_s of stamp time is forgotten (no exit event without a box)
        prefix = f"{packet.stream_id}\x1f"
        horizon = packet.stamp_ns - int(float(self.params["forget_s"]) * NS)
        for key in [k for k, m in self.membership.items() if k.startswith(prefix) and m["seen"] < horizon]:
            del self.membership[key]
        doc["boxes"] = kept
        return [("out", with_json(packet, doc))] + events

    def _event(self, packet: Packet, etype: str, zone: str, b: Mapping[str, Any],
               by_id: Mapping[str, Any], index: Any = None) -> Tuple[str, Packet]:
        tid = b.get("track_id")
        body = {"event_type": etype, "zone": zone, "track_id": tid, "object_type": b.get("label"),
                "bbox": [b["x1"], b["y1"], b["x2"], b["y2"]], "confidence": b.get("score")}
        sev = by_id.get(zone, {}).get("severity")
        if sev is not None:
            body["severity"] = sev
        if "sensor" in b:
            body["sensor"] = b["sensor"]
        parts = ("zones", etype, zone, tid if tid is not None else f"box{index}")
        return ("events", with_json(packet, body, kind="event", key_parts=parts).with_meta(
            event_type=etype, zone=zone, **({"track_id": tid} if tid is not None else {})))

    def get_state(self) -> Any:
        return {"membership": self.membership}

    def set_state(self, state: Any) -> None:
        if isinstance(state, dict) and isinstance(state.get("membership"), dict):
            self.membership = state["membership"]


# ---- dedup -------------------------------------------------------------------------

DEFAULT_SEVERITIES = ["info", "low", "medium", "high", "critical"]


class DedupLogic(Policy):
    """Suppresses repeats of the same key within ``cooldown_s`` of event time (packet stamps).

    The key is built from ``key_fields`` (payload paths, or meta.x / kind / stream_id). A packet
    passes when its key was not seen, when its stamp is at least ``cooldown_s`` after the last
    passed one, or when its severity is higher than the last passed one. Because only stamps
    count, a replay at any speed passes exactly the same packets. A stamp earlier than the
    last passed one by more than the cooldown (a replay restarting) starts the key afresh.
    """

    spec = PluginSpec(
        name="dedup", category=Category.POLICY, version="1.0.0", stateful=True,
        description="Cooldown per key on event time; a higher severity passes through.",
        ports=(In("in", ("*",)), Out("out", ("*",)), Out("error", ("*",))),
        params=(
            Param("key_fields", "list", ["stream_id", "track_id", "zone", "event_type"],
                  "fields forming the key (payload paths, meta.x, kind, stream_id)", items="str"),
            Param("cooldown_s", "float", 30.0, "seconds of event time a key stays suppressed", minimum=0.0, live=True),
            Param("severity_field", "str", "severity", "path of the severity (empty: no severity escalation)"),
            Param("severities", "list", DEFAULT_SEVERITIES, "severity names, lowest first (numbers compare as numbers)", items="str"),
            Param("max_keys", "int", 100000, "keys remembered (the stalest are forgotten first)", minimum=1),
        ),
    )

    def configure(self) -> None:
        p = self.params
        if not p["key_fields"]:
            raise ConfigError("dedup: key_fields must name at least one field")
        self._keys = [FieldRef(k) for k in p["key_fields"]]
        self._sev = FieldRef(p["severity_field"]) if p["severity_field"] else None
        self._rank = {str(s).lower(): i for i, s in enumerate(p["severities"])}
        self.last: Dict[str, List[Any]] = {}  # key -> [stamp_ns, severity rank]

    def rank(self, v: Any) -> float:
        if v is None:
            return -1.0
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        return float(self._rank.get(str(v).lower(), -1))

    def process(self, port: str, packet: Packet) -> Optional[Packet]:
        body = json_body(packet, required=False)
        key = json.dumps([k.get(packet, body) for k in self._keys], sort_keys=True, default=str)
        sev = self.rank(self._sev.get(packet, body)) if self._sev else -1.0
        t = packet.stamp_ns
        cool = int(float(self.params["cooldown_s"]) * NS)
        prev = self.last.get(key)
        passed = (prev is None or t - prev[0] >= cool or t < prev[0] - cool or sev > prev[1])
        if not passed:
            self.ctx.count("suppressed")
            return None
        self.last[key] = [t, sev]
        if len(self.last) > int(self.params["max_keys"]):
            stalest = min(self.last, key=lambda k: (self.last[k][0], k))
            del self.last[stalest]
        return packet

    def get_state(self) -> Any:
        return {"last": self.last}

    def set_state(self, state: Any) -> None:
        if isinstance(state, dict) and isinstance(state.get("last"), dict):
            self.last = state["last"]


# ---- rules -------------------------------------------------------------------------

RULE_PORTS = ("out", "out0", "out1", "out2", "out3")


class RulesLogic(Policy):
    """Ordered rules ``{when: <expression>, action: emit|route|drop, port?, set_meta?}``.

    The first rule whose ``when`` is true decides; no match applies ``default``. ``emit``
    sends to ``out``; ``route`` to ``port`` (out0..out3). Expressions are the safe language
    of :mod:`schnitzel_nodes.plugins.expr` (field access, comparisons, and/or/not, arithmetic).
    """

    spec = PluginSpec(
        name="rules", category=Category.POLICY, version="1.0.0",
        description="Emit, route or drop packets by safe expressions over their fields.",
        ports=(In("in", ("*",)),) + tuple(Out(n, ("*",)) for n in RULE_PORTS),
        params=(
            Param("rules", "list", [], "ordered rules: {when, action: emit|route|drop, port (route), set_meta?: {k: v}}", live=True),
            Param("default", "str", "emit", "what happens to a packet no rule matches", enum=("emit", "drop"), live=True),
        ),
    )

    def configure(self) -> None:
        self._rules = self._compile(self.params["rules"])

    @staticmethod
    def _compile(rules: Any) -> List[Tuple[Expression, str, str, Dict[str, str]]]:
        if not isinstance(rules, list):
            raise ConfigError("rules: rules must be a list of {when, action}")
        out = []
        for i, r in enumerate(rules):
            if not isinstance(r, dict) or "when" not in r:
                raise ConfigError(f"rules: rule {i} must be an object with 'when' and 'action'")
            action = r.get("action", "emit")
            if action not in ("emit", "route", "drop"):
                raise ConfigError(f"rules: rule {i} action must be emit, route or drop, got {action!r}")
            port = r.get("port", "out") if action == "route" else "out"
            if port not in RULE_PORTS:
                raise ConfigError(f"rules: rule {i} port must be one of {', '.join(RULE_PORTS)}, got {port!r}")
            meta = r.get("set_meta") or {}
            if not isinstance(meta, dict):
                raise ConfigError(f"rules: rule {i} set_meta must be a mapping")
            out.append((Expression(str(r["when"]), f"rules: rule {i} 'when'"), action, port,
                        {str(k): str(v) for k, v in meta.items()}))
        return out

    def on_params(self, changed: Mapping[str, Any]) -> None:
        if "rules" in changed:
            self._rules = self._compile(changed["rules"])
        if "default" in changed and changed["default"] not in ("emit", "drop"):
            raise ConfigError(f"rules: default must be emit or drop, got {changed['default']!r}")
        self.params.update(changed)

    def process(self, port: str, packet: Packet) -> Any:
        for i, (expr, action, out, meta) in enumerate(self._rules):
            if expr.test(packet):
                self.ctx.count(f"rule{i}")
                if action == "drop":
                    self.ctx.count("dropped")
                    return None
                return [(out, packet.with_meta(rule=str(i), **meta) if meta else packet.with_meta(rule=str(i)))]
        if self.params["default"] == "drop":
            self.ctx.count("dropped")
            return None
        return [("out", packet)]


# ---- event_builder -----------------------------------------------------------------

class EventBuilderLogic(Policy):
    """Builds events in event protocol v0.2 shape with deterministic ids.

    Input ``event`` packets (e.g. from zones) are completed; ``detections`` packets give one
    event per box. ``event_id`` = derive_key(stream_id, epoch, seq, track_id, zone,
    event_type), so a rerun or replay yields the same ids. Output: kind ``event``, schema
    ``legacy.event/0.2``, idempotency key = event_id.
    """

    spec = PluginSpec(
        name="event_builder", category=Category.POLICY, version="1.0.0",
        description="Events in event protocol v0.2 shape with deterministic event ids.",
        ports=(In("in", ("event", "detections")),
               Out("out", ("event",), profile=Profile.EVENT), Out("error", ("*",))),
        params=(
            Param("event_type", "str", "detection", "event_type when the input has none", live=True),
            Param("site_id", "str", "", "site_id of every event", live=True),
            Param("camera_id", "str", "", "camera_id (empty: the packet's stream_id)", live=True),
            Param("severity", "str", "info", "severity when the input has none", live=True),
            Param("severity_by_type", "dict", {}, "object_type -> severity (overrides the default)", live=True),
            Param("min_confidence", "float", 0.0, "detections input: skip boxes scoring below", minimum=0.0, maximum=1.0, live=True),
        ),
    )

    def process(self, port: str, packet: Packet) -> Any:
        body = json_body(packet)
        if not isinstance(body, dict):
            raise BadPacket(f"event_builder needs a JSON object, got {type(body).__name__}")
        if packet.kind == "detections" or ("boxes" in body and "event_type" not in body):
            doc = detections_of(packet)
            out = []
            for i, b in enumerate(doc["boxes"]):
                if (b.get("score") or 0) < float(self.params["min_confidence"]):
                    continue
                zones = b.get("zones") or [None]
                for z in zones:
                    ev = {"bbox": [b["x1"], b["y1"], b["x2"], b["y2"]], "confidence": b.get("score"),
                          "object_type": b.get("label"), "track_id": b.get("track_id"), "zone": z}
                    if "sensor" in doc:
                        ev["sensor"] = doc["sensor"]
                    out.append(self._build(packet, ev, f"box{i}"))
            return out
        return [self._build(packet, dict(body), "")]

    def _build(self, packet: Packet, src: Dict[str, Any], fallback: str) -> Tuple[str, Packet]:
        from schnitzel_core.codecs import legacy

        p = self.params
        ev: Dict[str, Any] = {}
        ev["event_type"] = src.get("event_type") or packet.meta.get("event_type") or p["event_type"]
        ev["camera_id"] = p["camera_id"] or src.get("camera_id") or packet.stream_id
        if p["site_id"] or src.get("site_id"):
            ev["site_id"] = p["site_id"] or src.get("site_id")
        otype = src.get("object_type")
        sev = src.get("severity") or (p["severity_by_type"].get(str(otype)) if otype is not None else None) or p["severity"]
        ev["severity"] = sev
        for k in ("bbox", "confidence", "zone", "track_id", "object_type", "sensor"):
            if src.get(k) is not None:
                ev[k] = src[k]
        tid, zone = ev.get("track_id"), ev.get("zone")
        ident = tid if tid is not None else fallback
        ev["event_id"] = derive_key(packet.stream_id, packet.epoch, packet.seq, ident, zone or "", ev["event_type"])
        ev["ts"] = legacy.format_ts(packet.stamp_ns)
        try:
            legacy.validate_event(ev)
        except ValueError as exc:
            raise BadPacket(f"cannot build a v0.2 event: {exc}") from None
        meta = {k: str(ev[k]) for k in legacy.META_FIELDS if ev.get(k) is not None and isinstance(ev[k], (str, int))}
        out = with_json(packet, ev, kind="event", key_parts=("event", ident, zone or "", ev["event_type"]),
                        schema=legacy.SCHEMA)
        out.idempotency_key = ev["event_id"]
        out.meta.update(meta)
        return ("out", out)


__all__ = ["ZonesLogic", "DedupLogic", "RulesLogic", "EventBuilderLogic", "point_in_polygon", "parse_zones"]

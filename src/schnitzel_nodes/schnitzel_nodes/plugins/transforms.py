"""Transforms: sampler, resize, convert, schema_validate, map (pure Python; cv2/jsonschema in configure)."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, In, Out, Param, PluginSpec

from ._common import (BadPacket, ConfigError, FieldRef, Transform, deepcopy_json, del_path,
                      json_body, set_path, split_path, with_json)

NS = 1_000_000_000


# ---- sampler -------------------------------------------------------------------

class SamplerLogic(Transform):
    """Passes every N-th packet, or at most ``fps`` packets per second of event time.

    The fps mode divides event time (packet stamps) into slots of 1/fps seconds and passes the
    first packet of each slot, so the output rate is exact and a replay at any speed passes the
    same packets. Counts ``dropped``.
    """

    spec = PluginSpec(
        name="sampler", category=Category.TRANSFORM, version="1.0.0",
        description="Keep every N-th packet or a target rate by packet stamps (event time).",
        ports=(In("in", ("*",), qos="frames", description="any stream, usually video.frame"),
               Out("out", ("*",), qos="frames", description="the kept packets, unchanged")),
        params=(
            Param("mode", "str", "every_n", "every_n: keep 1 of each n packets; fps: keep at most fps per second of stamp time",
                  enum=("every_n", "fps"), live=True),
            Param("n", "int", 1, "every_n mode: keep one packet out of n (the 1st, n+1-th, ...)", minimum=1, live=True),
            Param("fps", "float", 5.0, "fps mode: target rate in packets per second of event time",
                  minimum=0.001, maximum=1000.0, live=True),
        ),
    )

    def configure(self) -> None:
        self._apply(self.params)
        self._count = 0
        self._slot: Dict[str, int] = {}

    def _apply(self, p: Mapping[str, Any]) -> None:
        if p["mode"] not in ("every_n", "fps"):
            raise ConfigError(f"sampler: mode must be every_n or fps, got {p['mode']!r}")
        if int(p["n"]) < 1:
            raise ConfigError(f"sampler: n must be >= 1, got {p['n']!r}")
        if not float(p["fps"]) > 0:
            raise ConfigError(f"sampler: fps must be > 0, got {p['fps']!r}")
        self.mode, self.n = p["mode"], int(p["n"])
        self.period_ns = max(1, int(round(NS / float(p["fps"]))))

    def on_params(self, changed: Mapping[str, Any]) -> None:
        merged = dict(self.params)
        merged.update(changed)
        self._apply(merged)
        self.params.update(changed)
        self._slot.clear()

    def process(self, port: str, packet: Packet) -> Optional[Packet]:
        if self.mode == "every_n":
            keep = self._count % self.n == 0
            self._count += 1
        else:
            slot = packet.stamp_ns // self.period_ns
            last = self._slot.get(packet.stream_id)
            keep = last is None or slot != last  # a stamp going back (replay restart) starts over
            if keep:
                self._slot[packet.stream_id] = slot
        if not keep:
            self.ctx.count("dropped")
            return None
        return packet


# ---- frames: resize / convert ---------------------------------------------------

_INTERP = ("nearest", "linear", "area", "cubic")


class ResizeLogic(Transform):
    """Resizes raw video frames (stretch, fit keeping aspect, or letterbox with padding)."""

    spec = PluginSpec(
        name="resize", category=Category.TRANSFORM, version="1.0.0",
        description="Resize raw video.frame packets (stretch, keep aspect, or letterbox).",
        ports=(In("in", ("video.frame",), qos="frames"), Out("out", ("video.frame",), qos="frames"),
               Out("error", ("video.frame",), qos="events", description="frames that could not be decoded, reason in meta schnitzel.error")),
        params=(
            Param("width", "int", 640, "output width in pixels (0: derived from height keeping aspect)", minimum=0, maximum=16384, live=True),
            Param("height", "int", 0, "output height in pixels (0: derived from width keeping aspect)", minimum=0, maximum=16384, live=True),
            Param("mode", "str", "stretch", "stretch: exactly width x height; fit: largest size inside width x height keeping aspect; "
                  "letterbox: fit then pad to width x height", enum=("stretch", "fit", "letterbox"), live=True),
            Param("interpolation", "str", "area", "OpenCV interpolation", enum=_INTERP, live=True),
            Param("pad_value", "int", 114, "letterbox padding grey level", minimum=0, maximum=255, live=True),
        ),
    )

    def configure(self) -> None:
        import cv2  # noqa: F401  (heavy import here, not at module import)
        from schnitzel_core.codecs import image  # noqa: F401

        self._check(self.params)

    def _check(self, p: Mapping[str, Any]) -> None:
        w, h = int(p["width"]), int(p["height"])
        if w < 0 or h < 0 or (w == 0 and h == 0):
            raise ConfigError(f"resize: give width and/or height (> 0), got width={w} height={h}")
        if p["mode"] in ("fit", "letterbox") and (w == 0 or h == 0):
            raise ConfigError(f"resize: mode {p['mode']} needs both width and height")
        if p["interpolation"] not in _INTERP:
            raise ConfigError(f"resize: interpolation must be one of {', '.join(_INTERP)}, got {p['interpolation']!r}")

    def check_params(self, params: Mapping[str, Any]) -> None:
        self._check(params)

    def process(self, port: str, packet: Packet) -> Packet:
        import cv2
        import numpy as np
        from schnitzel_core.codecs.image import image_packet, packet_image, parse_content_type

        img = packet_image(packet)
        encoding = parse_content_type(packet.content_type)[1]["encoding"]
        ih, iw = img.shape[:2]
        if ih == 0 or iw == 0:
            raise BadPacket("frame is empty (0 pixels)")
        p = self.params
        w, h, mode = int(p["width"]), int(p["height"]), p["mode"]
        interp = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR,
                  "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}[p["interpolation"]]
        if w == 0:
            w = max(1, round(iw * h / ih))
        if h == 0:
            h = max(1, round(ih * w / iw))
        pad = (0, 0)
        if mode == "stretch":
            tw, th = w, h
        else:
            s = min(w / iw, h / ih)
            tw, th = max(1, round(iw * s)), max(1, round(ih * s))
        out = cv2.resize(np.ascontiguousarray(img), (tw, th), interpolation=interp) if (tw, th) != (iw, ih) else np.asarray(img)
        if out.ndim == 2 and img.ndim == 3:
            out = out[:, :, None]
        if mode == "letterbox" and (tw, th) != (w, h):
            canvas = np.full((h, w) + out.shape[2:], int(p["pad_value"]), dtype=out.dtype)
            x0, y0 = (w - tw) // 2, (h - th) // 2
            canvas[y0:y0 + th, x0:x0 + tw] = out
            out, pad = canvas, (x0, y0)
        new = image_packet(out, encoding, packet.stream_id, packet.seq)
        meta = {"resize.scale_x": f"{tw / iw:.6g}", "resize.scale_y": f"{th / ih:.6g}"}
        if mode == "letterbox":
            meta.update({"resize.pad_x": str(pad[0]), "resize.pad_y": str(pad[1])})
        return packet.derive(payload=new.payload, content_type=new.content_type).with_meta(**meta)


_CONVERSIONS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


class ConvertLogic(Transform):
    """Converts raw video frames between colour encodings (rgb8, bgr8, rgba8, bgra8, mono8, mono16)."""

    spec = PluginSpec(
        name="convert", category=Category.TRANSFORM, version="1.0.0",
        description="Convert raw video.frame packets between colour encodings.",
        ports=(In("in", ("video.frame",), qos="frames"), Out("out", ("video.frame",), qos="frames"),
               Out("error", ("video.frame",), qos="events", description="frames that could not be converted, reason in meta schnitzel.error")),
        params=(
            Param("encoding", "str", "rgb8", "target encoding", enum=_CONVERSIONS, live=True),
        ),
    )

    def configure(self) -> None:
        import cv2  # noqa: F401

        if self.params["encoding"] not in _CONVERSIONS:
            raise ConfigError(f"convert: encoding must be one of {', '.join(_CONVERSIONS)}, got {self.params['encoding']!r}")

    def on_params(self, changed: Mapping[str, Any]) -> None:
        if "encoding" in changed and changed["encoding"] not in _CONVERSIONS:
            raise ConfigError(f"convert: encoding must be one of {', '.join(_CONVERSIONS)}, got {changed['encoding']!r}")
        self.params.update(changed)

    def process(self, port: str, packet: Packet) -> Packet:
        from schnitzel_core.codecs.image import image_packet, packet_image, parse_content_type

        src = parse_content_type(packet.content_type)[1].get("encoding", "")
        img = packet_image(packet)
        dst = self.params["encoding"]
        if src == dst:
            return packet
        out = convert_image(img, src, dst)
        new = image_packet(out, dst, packet.stream_id, packet.seq)
        return packet.derive(payload=new.payload, content_type=new.content_type)


def convert_image(img: Any, src: str, dst: str) -> Any:
    """``img`` (encoding ``src``) as encoding ``dst`` (rgb8/bgr8/rgba8/bgra8/mono8; mono16 source)."""
    import cv2
    import numpy as np

    if src == dst:
        return img
    if src in ("mono16", "16UC1"):
        img = (np.asarray(img) >> 8).astype(np.uint8)
        src = "mono8"
    if src not in _CONVERSIONS or dst not in _CONVERSIONS:
        raise BadPacket(f"cannot convert {src!r} to {dst!r}; supported: {', '.join(_CONVERSIONS)} (and mono16 as a source)")
    codes = {
        ("rgb8", "bgr8"): cv2.COLOR_RGB2BGR, ("bgr8", "rgb8"): cv2.COLOR_BGR2RGB,
        ("rgb8", "rgba8"): cv2.COLOR_RGB2RGBA, ("rgb8", "bgra8"): cv2.COLOR_RGB2BGRA,
        ("bgr8", "rgba8"): cv2.COLOR_BGR2RGBA, ("bgr8", "bgra8"): cv2.COLOR_BGR2BGRA,
        ("rgba8", "rgb8"): cv2.COLOR_RGBA2RGB, ("rgba8", "bgr8"): cv2.COLOR_RGBA2BGR,
        ("bgra8", "rgb8"): cv2.COLOR_BGRA2RGB, ("bgra8", "bgr8"): cv2.COLOR_BGRA2BGR,
        ("rgba8", "bgra8"): cv2.COLOR_RGBA2BGRA, ("bgra8", "rgba8"): cv2.COLOR_BGRA2RGBA,
        ("rgb8", "mono8"): cv2.COLOR_RGB2GRAY, ("bgr8", "mono8"): cv2.COLOR_BGR2GRAY,
        ("rgba8", "mono8"): cv2.COLOR_RGBA2GRAY, ("bgra8", "mono8"): cv2.COLOR_BGRA2GRAY,
        ("mono8", "rgb8"): cv2.COLOR_GRAY2RGB, ("mono8", "bgr8"): cv2.COLOR_GRAY2BGR,
        ("mono8", "rgba8"): cv2.COLOR_GRAY2RGBA, ("mono8", "bgra8"): cv2.COLOR_GRAY2BGRA,
    }
    return cv2.cvtColor(np.ascontiguousarray(img), codes[(src, dst)])


# ---- schema_validate -------------------------------------------------------------

class SchemaValidateLogic(Transform):
    """Checks JSON payloads against a JSON Schema; invalid packets go to ``error`` with the reason."""

    spec = PluginSpec(
        name="schema_validate", category=Category.TRANSFORM, version="1.0.0",
        description="Validate JSON payloads against a JSON Schema; invalid ones go to the error port.",
        ports=(In("in", ("*",)), Out("out", ("*",), description="valid packets, unchanged"),
               Out("error", ("*",), description="invalid packets, reason in meta schnitzel.error, path in schnitzel.error_path")),
        params=(
            Param("schema", "dict", None, "the JSON Schema (inline); give this or schema_file"),
            Param("schema_file", "str", "", "path of a JSON or YAML file holding the schema"),
        ),
    )

    def configure(self) -> None:
        import jsonschema

        schema = self.params.get("schema")
        path = self.params.get("schema_file") or ""
        if (schema is None) == (not path):
            raise ConfigError("schema_validate: give exactly one of schema (inline) or schema_file")
        if path:
            schema = load_json_or_yaml(path, "schema_validate: schema_file")
        if not isinstance(schema, dict):
            raise ConfigError(f"schema_validate: the schema must be a JSON object, got {type(schema).__name__}")
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ConfigError(f"schema_validate: the schema is not a valid JSON Schema: {exc.message} "
                              f"(at {'/'.join(str(p) for p in exc.path) or 'the top'})") from None
        self._validator = cls(schema)

    def process(self, port: str, packet: Packet) -> Any:
        try:
            body = json_body(packet)
        except BadPacket as exc:
            return self._invalid(packet, str(exc), "")
        errors = sorted(self._validator.iter_errors(body), key=lambda e: (list(e.path), e.message))
        if not errors:
            self.ctx.count("valid")
            return [("out", packet)]
        e = errors[0]
        path = "/".join(str(p) for p in e.path)
        reason = f"{e.message} (at {path or 'the top'})" + (f"; {len(errors) - 1} more error(s)" if len(errors) > 1 else "")
        return self._invalid(packet, reason, path)

    def _invalid(self, packet: Packet, reason: str, path: str) -> List[Tuple[str, Packet]]:
        self.ctx.count("invalid")
        return [("error", packet.with_meta(**{"schnitzel.error": reason[:500], "schnitzel.error_path": path,
                                              "schnitzel.error_node": self.ctx.node_id}))]


def load_json_or_yaml(path: str, what: str) -> Any:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"{what} {path!r} cannot be read: {exc.strerror or exc}") from None
    try:
        if path.lower().endswith((".yaml", ".yml")):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as exc:  # yaml.YAMLError, json.JSONDecodeError
        raise ConfigError(f"{what} {path!r} is not valid {'YAML' if path.lower().endswith(('.yaml', '.yml')) else 'JSON'}: {exc}") from None


# ---- map -------------------------------------------------------------------------

class MapLogic(Transform):
    """Maps fields of JSON payloads: copy/rename from any field path, constants, removals.

    ``fields`` maps a target payload path to a source path (``payload.a.b``, ``meta.k``,
    ``kind``, ``stream_id``, ``seq``, ``stamp_ns``...). A rename is a ``fields`` entry plus
    the old path in ``remove``.
    """

    spec = PluginSpec(
        name="map", category=Category.TRANSFORM, version="1.0.0",
        description="Rename, copy, set and remove fields of JSON payloads (dotted paths).",
        ports=(In("in", ("*",)), Out("out", ("*",)),
               Out("error", ("*",), description="packets whose payload is not a JSON object, or lacks a field (missing=error)")),
        params=(
            Param("fields", "dict", {}, "target payload path -> source path (payload.x.y, meta.k, kind, stream_id, seq, stamp_ns, ...)", live=True),
            Param("constants", "dict", {}, "target payload path -> constant value", live=True),
            Param("remove", "list", [], "payload paths to remove (applied after fields and constants)", items="str", live=True),
            Param("keep", "bool", True, "start from a copy of the input payload (false: only mapped fields)", live=True),
            Param("missing", "str", "skip", "a missing source field: skip it, set null, or send the packet to error",
                  enum=("skip", "null", "error"), live=True),
            Param("kind", "str", "", "output kind (empty: unchanged)", live=True),
        ),
    )

    def configure(self) -> None:
        self._compile(self.params)

    def _compile(self, p: Mapping[str, Any]) -> None:
        if not isinstance(p["fields"], dict) or not isinstance(p["constants"], dict):
            raise ConfigError("map: fields and constants must be mappings of path -> value")
        self._fields = [(split_path(dst), FieldRef(src), src) for dst, src in p["fields"].items()]
        for dst, src in p["fields"].items():
            if not isinstance(src, str):
                raise ConfigError(f"map: fields[{dst!r}] must be a source path (text), got {src!r}")
        self._consts = [(split_path(dst), v) for dst, v in p["constants"].items()]
        if not isinstance(p["remove"], list):
            raise ConfigError("map: remove must be a list of paths")
        self._remove = [split_path(r) for r in p["remove"]]
        if p["missing"] not in ("skip", "null", "error"):
            raise ConfigError(f"map: missing must be skip, null or error, got {p['missing']!r}")

    def on_params(self, changed: Mapping[str, Any]) -> None:
        merged = dict(self.params)
        merged.update(changed)
        self._compile(merged)
        self.params.update(changed)

    def process(self, port: str, packet: Packet) -> Packet:
        body = json_body(packet)
        if not isinstance(body, dict):
            raise BadPacket(f"map needs a JSON object payload, got {type(body).__name__}")
        out: Dict[str, Any] = deepcopy_json(body) if self.params["keep"] else {}
        missing = self.params["missing"]
        sentinel = object()
        for dst, ref, src in self._fields:
            v = ref.get(packet, body, sentinel)
            if v is sentinel:
                if missing == "error":
                    raise BadPacket(f"field {src!r} is missing")
                if missing == "skip":
                    continue
                v = None
            set_path(out, dst, deepcopy_json(v))
        for dst, v in self._consts:
            set_path(out, dst, deepcopy_json(v))
        for r in self._remove:
            del_path(out, r)
        kind = self.params.get("kind") or None
        return with_json(packet, out, kind=kind) if kind else packet.derive(
            payload=with_json(packet, out).payload, content_type="application/json")


__all__ = ["SamplerLogic", "ResizeLogic", "ConvertLogic", "SchemaValidateLogic", "MapLogic",
           "convert_image", "load_json_or_yaml"]

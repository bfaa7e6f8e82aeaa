"""``serial_sensor``: line-oriented serial devices through pyserial.

Each line becomes one JSON packet. Formats (``format``):

- ``number``: a bare number, ``"1.25"`` -> ``{field: 1.25}``
- ``kv``: ``key=value`` pairs separated by commas, semicolons or spaces
  (``"temp=21.5, hum=40 ok=true"``) -> ``{"temp": 21.5, "hum": 40, "ok": true}``; values that
  are not numbers or booleans stay strings.
- ``json``: a JSON value per line; objects pass as they are, anything else becomes ``{field: value}``.
- ``auto`` (default): JSON when the line starts with ``{`` or ``[``, else a number, else kv.

Lines that do not parse (or are not valid text, or are longer than ``max_line_bytes``) are
counted (``garbage``) and skipped. When the device disappears (unplugged USB adapter, closed
pty) the source closes it and reopens ``port`` with exponential backoff and jitter; each
successful reopen bumps ``epoch``. ``port`` is anything ``serial.serial_for_url`` accepts: a
device path (``/dev/ttyUSB0``, a stable ``/dev/serial/by-id/...`` link) or a URL such as
``socket://host:port``.

Counters: ``lines``, ``garbage``, ``disconnects``, ``reconnects``, ``open_failures``.
"""
from __future__ import annotations

import json
import math
import re
import threading
from typing import Any, Dict, Optional

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, Out, Param, PluginSpec
from schnitzel_nodes.base import SourceLogic

from ._common import Backoff, check_enum, check_range

NODE = "serial_sensor"
FORMATS = ("auto", "number", "kv", "json")
_KV_SPLIT = re.compile(r"[,;\s]+")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")


class ParseError(ValueError):
    pass


def _scalar(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        v = float(text)
    except ValueError:
        return text
    return v if math.isfinite(v) else text


def parse_number(line: str) -> float:
    try:
        v = float(line)
    except ValueError:
        raise ParseError(f"not a number: {line[:60]!r}") from None
    if not math.isfinite(v):
        raise ParseError(f"not a finite number: {line[:60]!r}")
    return int(line) if re.fullmatch(r"[+-]?\d+", line) else v


def parse_kv(line: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for token in _KV_SPLIT.split(line.strip()):
        if not token:
            continue
        key, sep, value = token.partition("=")
        if not sep:
            key, sep, value = token.partition(":")
        if not sep or not _KEY.match(key) or value == "":
            raise ParseError(f"not key=value: {token[:60]!r}")
        out[key] = _scalar(value)
    if not out:
        raise ParseError("empty key=value list")
    return out


def parse_line(line: str, fmt: str = "auto", field: str = "value") -> Dict[str, Any]:
    """The JSON object for one text line; ParseError when it does not fit ``fmt``."""
    line = line.strip()
    if not line:
        raise ParseError("empty line")
    if fmt == "auto":
        if line[0] in "{[":
            fmt = "json"
        elif re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", line):
            fmt = "number"
        else:
            fmt = "kv"
    if fmt == "number":
        return {field: parse_number(line)}
    if fmt == "kv":
        return parse_kv(line)
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ParseError(f"not JSON ({exc.msg})") from None
    return value if isinstance(value, dict) else {field: value}


class SerialSensorLogic(SourceLogic):
    spec = PluginSpec(
        name=NODE,
        category=Category.SOURCE,
        version="1.0.0",
        description="Line-oriented serial sensors (numbers, key=value, JSON lines) with garbage "
                    "counting and reconnect.",
        ports=(
            Out("out", ("*",), qos="sensor", description="One JSON packet per parsed line."),
        ),
        params=(
            Param("port", "str", description="Serial device (/dev/ttyUSB0, /dev/serial/by-id/...) "
                  "or a pyserial URL (socket://host:port)."),
            Param("baudrate", "int", 115200, "Baud rate.", minimum=50, maximum=4_000_000),
            Param("format", "str", "auto", "Line format.", enum=FORMATS),
            Param("field", "str", "value", "JSON field for a bare number (or a non-object JSON value)."),
            Param("kind", "str", "telemetry", "Packet kind, e.g. sensor.range."),
            Param("text_encoding", "str", "utf-8", "Text encoding of the lines."),
            Param("max_line_bytes", "int", 4096, "Longer lines are counted as garbage and skipped.",
                  minimum=16, maximum=1_048_576),
            Param("read_timeout_s", "float", 0.2, "Read poll period (how fast a stop is noticed).",
                  minimum=0.01, maximum=10.0),
            Param("reconnect_min_s", "float", 0.2, "First reconnect delay (doubles each failure, "
                  "with jitter).", minimum=0.01, maximum=60.0),
            Param("reconnect_max_s", "float", 5.0, "Longest reconnect delay.", minimum=0.01,
                  maximum=600.0),
            Param("stream_id", "str", "", "Stream id of the packets (default: the node id)."),
            Param("frame_id", "str", "", "frame_id (sensor frame) of the packets."),
            Param("epoch", "int", 0, "Initial epoch (bumped on every reconnect).", minimum=0),
        ),
    )
    threaded = True

    def configure(self) -> None:
        import codecs

        import serial  # pyserial: only here

        self._serial = serial
        p = self.params
        if not str(p.get("port") or "").strip():
            raise ValueError(f"{NODE}: param 'port' is empty; give a device such as /dev/ttyUSB0")
        check_enum(NODE, p, "format", FORMATS)
        check_range(NODE, p, "baudrate", 50)
        check_range(NODE, p, "max_line_bytes", 16)
        for name in ("read_timeout_s", "reconnect_min_s", "reconnect_max_s"):
            check_range(NODE, p, name, 0.001)
        if p["reconnect_max_s"] < p["reconnect_min_s"]:
            raise ValueError(f"{NODE}: reconnect_max_s must be >= reconnect_min_s")
        try:
            codecs.lookup(str(p["text_encoding"]))
        except LookupError:
            raise ValueError(f"{NODE}: unknown text_encoding {p['text_encoding']!r}") from None
        self.claim_live_epoch()  # a restarted reader must not repeat an earlier run's keys
        self.status = "configured"

    def handle_line(self, raw: bytes) -> Optional[Packet]:
        """Parse one raw line (without or with its newline) and emit it; None for garbage."""
        p = self.params
        if len(raw) > int(p["max_line_bytes"]):
            self.ctx.count("garbage")
            return None
        try:
            text = raw.decode(str(p["text_encoding"]))
        except UnicodeDecodeError:
            self.ctx.count("garbage")
            return None
        if not text.strip():
            return None
        try:
            value = parse_line(text, p["format"], str(p.get("field") or "value"))
        except ParseError as exc:
            self.ctx.count("garbage")
            self.ctx.logger.debug("%s: skipped line: %s", NODE, exc)
            return None
        self.ctx.count("lines")
        self.seq += 1
        pkt = Packet.from_json(self.stream_id, self.seq, str(p["kind"]), value, epoch=self.epoch,
                               stamp_ns=self.ctx.clock_ns(), frame_id=str(p.get("frame_id") or ""))
        self.emit("out", pkt)
        return pkt

    def _open(self):
        p = self.params
        return self._serial.serial_for_url(str(p["port"]), baudrate=int(p["baudrate"]),
                                           timeout=float(p["read_timeout_s"]))

    def run(self, stop: threading.Event) -> None:
        serial = self._serial
        p = self.params
        backoff = Backoff(p["reconnect_min_s"], p["reconnect_max_s"])
        opened_before = False
        max_line = int(p["max_line_bytes"])
        while not stop.is_set():
            self.status = "connecting"
            try:
                dev = self._open()
            except (serial.SerialException, OSError, ValueError) as exc:
                self.ctx.count("open_failures")
                self.status = "backoff"
                delay = backoff.next_delay()
                self.ctx.logger.warning("%s: cannot open %s (%s); retrying in %.2f s", NODE,
                                        p["port"], exc, delay)
                if stop.wait(delay):
                    return
                continue
            if opened_before:
                self.bump_epoch()
                self.ctx.count("reconnects")
                self.ctx.logger.info("%s: reopened %s (epoch %d)", NODE, p["port"], self.epoch)
            opened_before = True
            backoff.reset()
            self.status = "reading"
            buf = b""
            discarding = False  # inside an over-long line: drop bytes up to its newline
            try:
                while not stop.is_set():
                    chunk = dev.read(max(1, min(4096, dev.in_waiting or 1)))
                    if not chunk:
                        continue
                    buf += chunk
                    while True:
                        nl = buf.find(b"\n")
                        if nl < 0:
                            break
                        line, buf = buf[:nl], buf[nl + 1:]
                        if discarding:
                            discarding = False
                            continue
                        self.handle_line(line.rstrip(b"\r"))
                    if len(buf) > max_line:
                        if not discarding:
                            self.ctx.count("garbage")
                        buf, discarding = b"", True
            except (serial.SerialException, OSError) as exc:
                self.ctx.count("disconnects")
                self.ctx.logger.warning("%s: %s disappeared (%s); reopening", NODE, p["port"], exc)
            finally:
                try:
                    dev.close()
                except Exception:  # noqa: BLE001 - closing a dead device may fail; nothing to do
                    pass
            if stop.is_set():
                return
            self.status = "backoff"
            if stop.wait(backoff.next_delay()):
                return

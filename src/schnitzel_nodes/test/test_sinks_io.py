"""stdout_sink: compact lines and JSON lines; a closed stdout is counted, not raised."""
import io
import json
import sys

import numpy as np
import pytest

from schnitzel_core.codecs.image import image_packet
from schnitzel_core.packet import Packet
from schnitzel_core.testing import LogicHarness
from schnitzel_nodes.plugins.sinks_io import StdoutSinkLogic

STAMP = 1_764_133_201_123_000_000  # 2025-11-26T05:00:01.123Z


def test_line_format_for_json_and_frames(capsys):
    h = LogicHarness(StdoutSinkLogic, {})
    h.send("in", Packet.from_json("range", 3, "sensor.range", {"range": 2.01}, stamp_ns=STAMP))
    h.send("in", image_packet(np.zeros((24, 32, 3), np.uint8), "rgb8", "cam0", 17, stamp_ns=STAMP))
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "2025-11-26T05:00:01.123Z range/0/3 sensor.range {\"range\":2.01}",
        "2025-11-26T05:00:01.123Z cam0/0/17 video.frame image/raw rgb8 32x24 2304B",
    ]
    assert h.ctx.counters["printed"] == 2


def test_long_payload_is_cut_and_prefix_applies(capsys):
    h = LogicHarness(StdoutSinkLogic, {"max_payload_chars": 20, "prefix": "[s] "})
    h.send("in", Packet.from_json("s", 1, "telemetry", {"text": "x" * 100}, stamp_ns=STAMP))
    line = capsys.readouterr().out.strip()
    assert line.startswith("[s] 2025-11-26T05:00:01.123Z s/0/1 telemetry ")
    assert line.endswith("…") and len(line.split(" telemetry ")[1]) == 20


def test_json_format_round_trips(capsys):
    h = LogicHarness(StdoutSinkLogic, {"format": "json", "stream": "stderr"})
    pkt = Packet(stream_id="a", seq=1, kind="audio.chunk", payload=b"\x00\x01", stamp_ns=STAMP,
                 content_type="audio/pcm;rate=8000;channels=1;width=2", meta={"k": "v"})
    bad = Packet(stream_id="a", seq=2, kind="x", payload=b"{nope", content_type="application/json",
                 stamp_ns=STAMP)
    h.send("in", pkt)
    h.send("in", bad)
    err = capsys.readouterr().err.splitlines()
    assert Packet.from_dict(json.loads(err[0])) == pkt
    assert Packet.from_dict(json.loads(err[1])).payload == b"{nope"


def test_closed_stdout_is_counted_not_raised(monkeypatch):
    h = LogicHarness(StdoutSinkLogic, {})
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stdout", closed)
    h.send("in", Packet.from_json("s", 1, "telemetry", {}))
    assert h.ctx.counters == {"write_errors": 1}


def test_bad_format_param():
    with pytest.raises(ValueError, match="format"):
        LogicHarness(StdoutSinkLogic, {"format": "xml"})


def test_received_time_leads_the_line_when_asked(capsys):
    h = LogicHarness(StdoutSinkLogic, {"time": "received"}, clock_ns=lambda: STAMP + 2_000_000_000)
    h.send("in", Packet.from_json("s", 1, "telemetry", {"a": 1}, stamp_ns=STAMP))
    assert capsys.readouterr().out.startswith("2025-11-26T05:00:03.123Z s/0/1 telemetry")

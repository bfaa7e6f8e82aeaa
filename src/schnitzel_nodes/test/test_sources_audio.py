"""audio_source: WAV files (made at test time) in fixed-length PCM chunks."""
import math
import struct
import threading
import time
import wave

import pytest

from schnitzel_core.testing import LogicHarness
from schnitzel_nodes.plugins.sources.audio import AudioSourceLogic


def make_wav(path, seconds=0.5, rate=16000, channels=1, width=2):
    n = int(seconds * rate)
    frames = bytearray()
    for i in range(n):
        v = int(10000 * math.sin(2 * math.pi * 440 * i / rate))
        sample = struct.pack("<i", v << (8 * (width - 2)))[:width] if width >= 2 else bytes([128 + v // 256])
        frames += sample * channels
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return path, bytes(frames)


def run(h, timeout=10.0, stop_after=None):
    stop = threading.Event()
    t = threading.Thread(target=h.logic.run, args=(stop,), daemon=True)
    t0 = time.monotonic()
    t.start()
    if stop_after is not None:
        time.sleep(stop_after)
        stop.set()
    t.join(timeout)
    assert not t.is_alive()
    return time.monotonic() - t0


def test_chunks_cover_the_file_exactly(tmp_path):
    path, frames = make_wav(tmp_path / "a.wav", seconds=0.33)
    h = LogicHarness(AudioSourceLogic, {"path": str(path), "chunk_ms": 100, "realtime": False},
                     node_id="mic")
    run(h)
    out = h.out("audio")
    assert [len(p.payload) for p in out] == [3200, 3200, 3200, 2 * 5280 - 9600]
    assert b"".join(p.payload for p in out) == frames
    assert all(p.content_type == "audio/pcm;rate=16000;channels=1;width=2" for p in out)
    assert all(p.kind == "audio.chunk" for p in out) and [p.seq for p in out] == [1, 2, 3, 4]
    stamps = [p.stamp_ns for p in out]
    assert [b - a for a, b in zip(stamps, stamps[1:])] == [100_000_000] * 3
    assert out[3].meta["samples"] == "480"


def test_stereo_24bit_content_type(tmp_path):
    path, frames = make_wav(tmp_path / "s.wav", seconds=0.1, rate=8000, channels=2, width=3)
    h = LogicHarness(AudioSourceLogic, {"path": str(path), "chunk_ms": 50, "realtime": False})
    run(h)
    out = h.out()
    assert out[0].content_type == "audio/pcm;rate=8000;channels=2;width=3"
    assert len(out[0].payload) == 400 * 6 and b"".join(p.payload for p in out) == frames


def test_realtime_pacing(tmp_path):
    path, _ = make_wav(tmp_path / "a.wav", seconds=0.6)
    h = LogicHarness(AudioSourceLogic, {"path": str(path), "chunk_ms": 100})
    elapsed = run(h)
    assert len(h.out()) == 6 and 0.45 <= elapsed < 2.0, elapsed


def test_loop_keeps_going_with_increasing_stamps(tmp_path):
    path, _ = make_wav(tmp_path / "a.wav", seconds=0.1)
    h = LogicHarness(AudioSourceLogic, {"path": str(path), "chunk_ms": 50, "realtime": False,
                                        "loop": True})
    run(h, stop_after=0.2)
    out = h.out()
    assert len(out) > 10 and h.ctx.counters["loops"] >= 5
    stamps = [p.stamp_ns for p in out]
    assert all(b - a == 50_000_000 for a, b in zip(stamps, stamps[1:]))


def test_not_a_wav_and_missing_file(tmp_path):
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"RIFF....not really")
    with pytest.raises(ValueError, match="not a PCM WAV"):
        LogicHarness(AudioSourceLogic, {"path": str(bad)})
    with pytest.raises(ValueError, match="not found"):
        LogicHarness(AudioSourceLogic, {"path": str(tmp_path / "none.wav")})

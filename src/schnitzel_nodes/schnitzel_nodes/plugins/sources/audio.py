"""``audio_source``: WAV files (stdlib ``wave``) as fixed-length PCM chunks.

Each packet carries ``chunk_ms`` of interleaved little-endian PCM frames exactly as stored
in the file (the last chunk of a file may be shorter). ``content_type`` is
``audio/pcm;rate=R;channels=C;width=W`` (W = bytes per sample). Stamps are the media time of
the chunk's first sample (start + samples / rate), continuing across loops.
``realtime: true`` paces chunks at the audio rate; ``false`` reads as fast as possible.

Sound devices (ALSA/PortAudio) are not supported yet: the platform ships no audio I/O
library; feed live audio through ``ros_topic_source`` or a WAV/pipe instead.

Counters: ``chunks``, ``loops``.
"""
from __future__ import annotations

import os
import threading
import time
import wave

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, Out, Param, PluginSpec
from schnitzel_nodes.base import SourceLogic

from ._common import check_range

NODE = "audio_source"


class AudioSourceLogic(SourceLogic):
    spec = PluginSpec(
        name=NODE,
        category=Category.SOURCE,
        version="1.0.0",
        description="PCM chunks from a WAV file, at real-time pace or as fast as possible.",
        ports=(
            Out("audio", ("audio.chunk",), qos="sensor",
                description="PCM chunks (audio/pcm;rate;channels;width)."),
        ),
        params=(
            Param("path", "str", description="WAV file (PCM, 8/16/24/32-bit)."),
            Param("chunk_ms", "int", 20, "Chunk length in milliseconds.", minimum=1, maximum=10000),
            Param("realtime", "bool", True, "Pace chunks at the audio rate (false: as fast as possible)."),
            Param("loop", "bool", False, "Start again at the end of the file."),
            Param("kind", "str", "audio.chunk", "Packet kind."),
            Param("stream_id", "str", "", "Stream id of the packets (default: the node id)."),
            Param("frame_id", "str", "", "frame_id (microphone frame) of the packets."),
            Param("epoch", "int", 0, "Epoch of the packets.", minimum=0),
        ),
    )
    threaded = True

    def configure(self) -> None:
        p = self.params
        path = str(p.get("path") or "")
        if not path:
            raise ValueError(f"{NODE}: param 'path' is empty; give a WAV file")
        if not os.path.isfile(path):
            raise ValueError(f"{NODE}: WAV file not found: {path}")
        check_range(NODE, p, "chunk_ms", 1, 10000)
        try:
            with wave.open(path, "rb") as w:
                self.rate, self.channels, self.width = w.getframerate(), w.getnchannels(), w.getsampwidth()
                self.total_frames = w.getnframes()
        except (wave.Error, EOFError) as exc:
            raise ValueError(f"{NODE}: {path} is not a PCM WAV file ({exc})") from None
        if self.rate <= 0:
            raise ValueError(f"{NODE}: {path} has an invalid sample rate {self.rate}")
        self.frames_per_chunk = max(1, self.rate * int(p["chunk_ms"]) // 1000)
        self.content_type = f"audio/pcm;rate={self.rate};channels={self.channels};width={self.width}"
        self.status = "configured"

    def run(self, stop: threading.Event) -> None:
        p = self.params
        start_wall = time.monotonic()
        start_ns = self.ctx.clock_ns()
        sent = 0  # sample frames emitted, over all loops
        with wave.open(str(p["path"]), "rb") as w:
            self.status = "streaming"
            while not stop.is_set():
                data = w.readframes(self.frames_per_chunk)
                n = len(data) // (self.channels * self.width)
                if n == 0:
                    if not p.get("loop") or self.total_frames == 0:
                        self.status = "finished"
                        return
                    self.ctx.count("loops")
                    w.rewind()
                    continue
                media_t = sent / self.rate
                if p.get("realtime", True):
                    delay = start_wall + media_t - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        return
                self.seq += 1
                pkt = Packet(stream_id=self.stream_id, seq=self.seq, epoch=self.epoch,
                             kind=str(p["kind"]), payload=data, content_type=self.content_type,
                             stamp_ns=start_ns + sent * 1_000_000_000 // self.rate,
                             frame_id=str(p.get("frame_id") or ""),
                             meta={"samples": str(n)})
                sent += n
                self.ctx.count("chunks")
                self.emit("audio", pkt)

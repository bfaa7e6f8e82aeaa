"""serial_sensor: line parsing, and a real pseudo-terminal pair including unplug/replug.

The source opens a symlink to the pty's slave side (like /dev/serial/by-id/...); unplugging
closes the master (the slave then fails with EIO, as a pulled USB adapter does), replugging
makes a new pty and points the symlink at it.
"""
import os
import threading
import time

import pytest

from schnitzel_core.testing import LogicHarness
from schnitzel_nodes.plugins.sources.serial_sensor import ParseError, SerialSensorLogic, parse_line
from schnitzel_core.testing import wait_for

pytest.importorskip("serial")


@pytest.mark.parametrize("line, fmt, expected", [
    ("1.25", "auto", {"value": 1.25}),
    ("-3", "auto", {"value": -3}),
    ("temp=21.5, hum=40 ok=true;name=abc", "auto", {"temp": 21.5, "hum": 40, "ok": True, "name": "abc"}),
    ("a:1 b:2", "kv", {"a": 1, "b": 2}),
    ('{"range": 2.5, "q": [1, 2]}', "auto", {"range": 2.5, "q": [1, 2]}),
    ("[1, 2]", "json", {"value": [1, 2]}),
    ("7", "json", {"value": 7}),
    ("12.5\r", "number", {"value": 12.5}),
])
def test_parse_line(line, fmt, expected):
    assert parse_line(line, fmt) == expected


@pytest.mark.parametrize("line, fmt", [
    ("hello world", "auto"), ("nan", "number"), ("1.2.3", "auto"), ("{broken", "auto"),
    ("a=1 junk", "kv"), ("=5", "kv"), ("x=", "kv"), ("abc", "number"), ("1,5", "json"),
])
def test_parse_garbage(line, fmt):
    with pytest.raises(ParseError):
        parse_line(line, fmt)


class Pty:
    """A pseudo-terminal pair whose slave is reachable through a fixed symlink."""

    def __init__(self, link):
        self.link = link
        self.plug()

    def plug(self):
        self.master, self.slave = os.openpty()
        tmp = f"{self.link}.new"
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.link)

    def unplug(self):
        os.close(self.master)
        os.close(self.slave)

    def write(self, data: bytes):
        os.write(self.master, data)


def start(h):
    stop = threading.Event()
    t = threading.Thread(target=h.logic.run, args=(stop,), daemon=True)
    t.start()
    return stop, t


def test_pty_lines_garbage_and_replug(tmp_path):
    link = str(tmp_path / "ttyUSB-sensor")
    pty = Pty(link)
    h = LogicHarness(SerialSensorLogic, {"port": link, "baudrate": 9600, "kind": "sensor.range",
                                         "field": "range", "reconnect_min_s": 0.05,
                                         "reconnect_max_s": 0.2, "read_timeout_s": 0.05},
                     node_id="sonar")
    stop, t = start(h)
    try:
        assert wait_for(lambda: h.logic.status == "reading")
        pty.write(b"1.5\r\n")
        pty.write(b"\xff\xfe\x00garbage\n")               # not text: garbage
        pty.write(b"hello there\n")                       # no key=value: garbage
        pty.write(b"range=2.25,ok=true\n")
        pty.write(b'{"range": 3')                          # a line split across writes
        time.sleep(0.1)
        pty.write(b'.5, "unit": "m"}\n\n')
        assert wait_for(lambda: len(h.out()) == 3)
        out = h.out()
        assert [p.json() for p in out] == [{"range": 1.5}, {"range": 2.25, "ok": True},
                                           {"range": 3.5, "unit": "m"}]
        assert all(p.kind == "sensor.range" and p.epoch == 0 and p.stream_id == "sonar" for p in out)
        assert [p.seq for p in out] == [1, 2, 3]
        assert h.ctx.counters["garbage"] == 2

        pty.unplug()                                       # the adapter is pulled
        assert wait_for(lambda: h.ctx.counters.get("disconnects", 0) == 1)
        time.sleep(0.5)                                    # stays unplugged: reopen attempts fail
        assert h.ctx.counters.get("open_failures", 0) >= 1 and t.is_alive()

        pty.plug()                                         # plugged back in (a new pty)
        assert wait_for(lambda: h.ctx.counters.get("reconnects", 0) == 1 and h.logic.status == "reading")
        pty.write(b"4.75\n")
        assert wait_for(lambda: len(h.out()) == 4)
        p4 = h.out()[3]
        assert p4.json() == {"range": 4.75} and p4.epoch == 1 and p4.seq == 1
        keys = [p.idempotency_key for p in h.out()]
        assert len(set(keys)) == 4
    finally:
        stop.set()
        t.join(3)
        h.stop()
    assert not t.is_alive()


def test_overlong_line_is_garbage_and_stream_recovers(tmp_path):
    link = str(tmp_path / "tty")
    pty = Pty(link)
    h = LogicHarness(SerialSensorLogic, {"port": link, "max_line_bytes": 32, "read_timeout_s": 0.05})
    stop, t = start(h)
    try:
        assert wait_for(lambda: h.logic.status == "reading")
        pty.write(b"x" * 200 + b"\n" + b"5\n")
        assert wait_for(lambda: len(h.out()) == 1)
        assert h.out()[0].json() == {"value": 5} and h.ctx.counters["garbage"] == 1
    finally:
        stop.set()
        t.join(3)
        pty.unplug()
    assert not t.is_alive()


def test_missing_device_at_start_keeps_retrying(tmp_path):
    h = LogicHarness(SerialSensorLogic, {"port": str(tmp_path / "nope"), "reconnect_min_s": 0.05,
                                         "reconnect_max_s": 0.1})
    stop, t = start(h)
    time.sleep(0.6)
    stop.set()
    t.join(3)
    assert not t.is_alive() and h.ctx.counters["open_failures"] >= 3 and h.out() == []


@pytest.mark.parametrize("params, text", [
    ({"port": ""}, "port"), ({"port": "/dev/x", "format": "xml"}, "format"),
    ({"port": "/dev/x", "text_encoding": "klingon"}, "text_encoding"),
])
def test_bad_params(params, text):
    with pytest.raises(ValueError, match=text):
        LogicHarness(SerialSensorLogic, params)

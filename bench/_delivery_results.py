"""Shared by bench_store.py, bench_http.py and bench_backlog.py: machine line and
appending a block under the "## Durable delivery (issue 5)" heading of bench/RESULTS.md."""
from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
HEAD = "## Durable delivery (issue 5)"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def record(title: str, lines: List[str]) -> None:
    results = HERE / "RESULTS.md"
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    block = "\n".join(["", f"### {title} ({stamp()})", "", f"Machine: {machine()}.", ""] + lines) + "\n"
    if HEAD not in text:
        text = text.rstrip("\n") + f"\n\n{HEAD}\n\nDurable store, HTTP delivery and backlog start-up " \
                                   "(`bench/bench_store.py`, `bench/bench_http.py`, `bench/bench_backlog.py`).\n"
    start = text.index(HEAD) + len(HEAD)
    nxt = text.find("\n## ", start)
    if nxt == -1:
        text = text.rstrip("\n") + "\n" + block
    else:
        text = text[:nxt].rstrip("\n") + "\n" + block + text[nxt:]
    results.write_text(text)

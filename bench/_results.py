"""Shared by the benchmarks: the machine line, a UTC stamp, and appending a block to a
section ("## ...") of bench/RESULTS.md, creating the section when it is missing."""
from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
DELIVERY = ("## Durable delivery (issue 5)",
            "Durable store, HTTP delivery and backlog start-up "
            "(`bench/bench_store.py`, `bench/bench_http.py`, `bench/bench_backlog.py`).")


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


def append_block(head: str, intro: str, block: str) -> None:
    """Add ``block`` at the end of the ``head`` section of RESULTS.md."""
    results = HERE / "RESULTS.md"
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    if head not in text:
        text = text.rstrip("\n") + f"\n\n{head}\n\n{intro}\n"
    start = text.index(head) + len(head)
    nxt = text.find("\n## ", start)
    if nxt == -1:
        text = text.rstrip("\n") + "\n" + block
    else:
        text = text[:nxt].rstrip("\n") + "\n" + block + text[nxt:]
    results.write_text(text)


def record(title: str, lines: List[str], section=DELIVERY) -> None:
    """A dated block with the machine line, under ``section`` (head, intro)."""
    block = "\n".join(["", f"### {title} ({stamp()})", "", f"Machine: {machine()}.", ""] + lines) + "\n"
    append_block(*section, block)


def publish(title: str, lines: List[str], save: bool = True) -> None:
    """Print a benchmark's block and, unless ``save`` is false (--no-record), add it to RESULTS.md."""
    print("\n".join(lines))
    if save:
        record(title, lines)

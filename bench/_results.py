"""Shared by the benchmarks: the machine line, a UTC stamp, and bench/RESULTS.md.

RESULTS.md holds the *current* figure of each benchmark once: a new run replaces the block of
the same benchmark (``### <script>`` plus an optional label), so history lives in git, not in
superseded blocks. Set SCHNITZEL_BENCH_LABEL (e.g. "device machine") to keep a second current
figure of one benchmark on another kind of machine beside the first.
"""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Tuple

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
Section = Tuple[str, str]   # (heading "## ...", one-line intro written when the section is new)
DELIVERY: Section = ("## Durable delivery",
                     "Durable store, HTTP delivery, backlog start-up and the queue node over DDS.")


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


def command() -> str:
    """The command line that produced the figures, as a user would type it from the repository root."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(HERE.parent)
    except ValueError:
        pass
    return " ".join(["python", shlex.quote(str(script))] + [shlex.quote(a) for a in sys.argv[1:]])


def block_key(name: str) -> str:
    label = os.environ.get("SCHNITZEL_BENCH_LABEL", "").strip()
    return f"{name} ({label})" if label else name


def _split_blocks(text: str) -> List[str]:
    """The file cut before every "## " and "### " heading (the first piece is the title)."""
    pieces: List[str] = []
    cur: List[str] = []
    for line in text.splitlines():
        if (line.startswith("## ") or line.startswith("### ")) and cur:
            pieces.append("\n".join(cur))
            cur = []
        cur.append(line)
    if cur:
        pieces.append("\n".join(cur))
    return pieces


def put_block(section: Section, key: str, body: str, path: Optional[Path] = None) -> None:
    """Make ``### key`` + ``body`` the one block of that benchmark in RESULTS.md.

    An older block with the same key is replaced where it stands; a new one goes to the end of
    ``section`` (created at the end of the file when missing).
    """
    results = path or RESULTS
    text = results.read_text(encoding="utf-8") if results.exists() else "# Benchmark results\n"
    new = f"### {key}\n\n{body.strip()}"
    pieces = _split_blocks(text)
    for i, piece in enumerate(pieces):
        if piece.splitlines()[0].strip() == f"### {key}":
            pieces[i] = new
            break
    else:
        head, intro = section
        starts = [i for i, p in enumerate(pieces) if p.splitlines()[0].strip() == head]
        if not starts:
            pieces += [f"{head}\n\n{intro}", new]
        else:
            j = starts[0] + 1
            while j < len(pieces) and not pieces[j].startswith("## "):
                j += 1
            pieces.insert(j, new)
    results.write_text("\n\n".join(p.strip("\n") for p in pieces) + "\n", encoding="utf-8")


def record(title: str, lines: List[str], section: Section = DELIVERY) -> None:
    """The current block of benchmark ``title``: when, where, the command, then its lines."""
    head = f"{stamp()}; {machine()}.\nCommand: `{command()}`"
    put_block(section, block_key(title), "\n".join([head, ""] + lines))


def publish(title: str, lines: List[str], save: bool = True, section: Section = DELIVERY) -> None:
    """Print a benchmark's block and, unless ``save`` is false (--no-record), make it the current one."""
    print("\n".join(lines))
    if save:
        record(title, lines, section)

"""Checks of the packets extracted at an output, and the diff printed when one fails."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from schnitzel_core.packet import Packet

from .spec import BASE_STAMP_NS, Expect

OPS = {"eq", "ne", "min", "max", "in", "contains", "exists"}
_MISSING = object()


def view(p: Packet) -> Dict[str, Any]:
    """A packet as the test file sees it: ``stamp`` in seconds after the test's time zero."""
    try:
        payload = p.json() if p.content_type.startswith("application/json") else None
    except ValueError:
        payload = None
    return {"kind": p.kind, "stream_id": p.stream_id, "seq": p.seq, "epoch": p.epoch,
            "stamp": round((p.stamp_ns - BASE_STAMP_NS) / 1e9, 9), "stamp_ns": p.stamp_ns, "frame_id": p.frame_id,
            "schema": p.schema, "content_type": p.content_type, "packet_id": p.packet_id,
            "idempotency_key": p.idempotency_key, "meta": dict(p.meta), "payload": payload}


def get(v: Dict[str, Any], path: str) -> Any:
    cur: Any = v
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def check_value(got: Any, cond: Any) -> Optional[str]:
    """None when ``got`` meets ``cond``, else why not."""
    if isinstance(cond, dict) and cond and set(cond) <= OPS:
        if "exists" in cond:
            if (got is not _MISSING) != bool(cond["exists"]):
                return "is missing" if got is _MISSING else "exists"
        if got is _MISSING:
            return "is missing" if set(cond) - {"exists"} else None
        for op, want in cond.items():
            try:
                bad = {"eq": lambda: got != want, "ne": lambda: got == want, "min": lambda: got < want,
                       "max": lambda: got > want, "in": lambda: got not in want, "contains": lambda: want not in got,
                       "exists": lambda: False}[op]()
            except TypeError:
                return f"{_s(got)} cannot be compared with {op} {_s(want)}"
            if bad:
                return f"{_s(got)} fails {op}: {_s(want)}"
        return None
    if got is _MISSING:
        return "is missing"
    if got != cond and not (isinstance(got, float) and isinstance(cond, (int, float)) and abs(got - cond) < 1e-9):
        return f"{_s(got)} != {_s(cond)}"
    return None


def _s(v: Any) -> str:
    return "<missing>" if v is _MISSING else json.dumps(v, sort_keys=True, default=str)


def match(v: Dict[str, Any], fields: Dict[str, Any]) -> List[str]:
    return [f"{k}: {why}" for k, cond in fields.items() for why in [check_value(get(v, k), cond)] if why]


def _short(v: Dict[str, Any]) -> str:
    keep = {k: v[k] for k in ("kind", "stream_id", "seq", "stamp", "meta", "payload") if v.get(k) not in (None, {}, "")}
    text = json.dumps(keep, sort_keys=True, default=str)
    return text if len(text) < 400 else text[:400] + "..."


def evaluate(e: Expect, got: Sequence[Packet], inputs: Sequence[Packet]) -> List[Tuple[int, str]]:
    """Every way the packets extracted at ``e.at`` fail ``e``: (line in the test file, a readable
    entry of the diff); the line is the expected packet's own for a packet that differs."""
    views = [view(p) for p in got]
    fails: List[Any] = []
    n = len(views)
    if isinstance(e.count, int) and n != e.count:
        fails.append(f"count: expected {e.count}, got {n}")
    elif isinstance(e.count, dict) and not (e.count.get("min", 0) <= n <= e.count.get("max", n)):
        fails.append(f"count: expected {e.count}, got {n}")
    if e.packets is not None:
        for i, want in enumerate(e.packets):
            if i >= n:
                fails.append((e.packet_lines[i], f"packet #{i}: expected {json.dumps(want, sort_keys=True)}, got nothing "
                              f"(only {n} packet{'s' if n != 1 else ''} came out)"))
                continue
            why = match(views[i], want)
            if why:
                fails.append((e.packet_lines[i], f"packet #{i}: expected {json.dumps(want, sort_keys=True)}\n"
                              f"      got {_short(views[i])}\n      differs: " + "; ".join(why)))
    if e.all:
        for i, v in enumerate(views):
            why = match(v, e.all)
            if why:
                fails.append(f"packet #{i} ({v['packet_id']}): " + "; ".join(why))
    if e.order:
        prev = None
        for i, v in enumerate(views):
            cur = get(v, e.order)
            if cur is _MISSING:
                fails.append(f"order: packet #{i} has no {e.order}")
            elif prev is not None and cur < prev:
                fails.append(f"order: packet #{i} has {e.order} = {_s(cur)} after {_s(prev)}")
                break
            prev = cur if cur is not _MISSING else prev
    if e.within_s is not None:
        by_id = {(p.stream_id, p.epoch, p.seq): p.stamp_ns for p in inputs}
        stamps = sorted(p.stamp_ns for p in inputs)
        for i, p in enumerate(got):
            ref = by_id.get((p.stream_id, p.epoch, p.seq))
            if ref is None and stamps:   # derived from no single input: the nearest input's stamp
                ref = min(stamps, key=lambda s: abs(s - p.stamp_ns))
            if ref is None or abs(p.stamp_ns - ref) > e.within_s * 1e9:
                d = "no input" if ref is None else f"{(p.stamp_ns - ref) / 1e9:+.3f} s"
                fails.append(f"within_s: packet #{i} ({p.packet_id}) is {d} from its input's stamp "
                             f"(limit {e.within_s:g} s)")
    return [f if isinstance(f, tuple) else (e.line, f) for f in fails]

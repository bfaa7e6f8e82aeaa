"""Run a test file's cases and chaos profiles; each gives a :class:`Result`."""
from __future__ import annotations

import os
import time
from typing import Any, Callable, List, Optional, Tuple

from .result import Result
from .spec import Case, SpecError, TestFile, resolved_env


class GraphError(Exception):
    """The graph a test file names does not load or validate (bad input: exit code 2)."""


def load(tf: TestFile) -> Tuple[Any, Any]:
    """(graph, registry); the graph validated as `schnitzel validate` does."""
    from schnitzel_core.registry import load_registry
    from schnitzel_validator import validate_path

    registry = load_registry()
    tenv = resolved_env(tf)
    env = {**os.environ, **tenv}
    old = {k: os.environ.get(k) for k in tenv}
    os.environ.update(tenv)        # the validator interpolates ${env:...} from the environment
    try:
        report = validate_path(str(tf.graph), registry=registry)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not report.valid or report.graph is None:
        raise GraphError(report.format_text())
    del env
    hosts = [h.name for h in report.graph.hosts]
    for prof in tf.chaos:
        for f in prof.faults:
            if f.do == "cut_link" and hosts and f.args.get("host") not in hosts:
                raise SpecError(str(tf.path), f.line, f"chaos profile {prof.name!r}: cut_link: the graph declares no "
                                f"host {f.args.get('host')!r}", f"use one of its hosts: {', '.join(hosts)}")
    return report.graph, registry


def run_case(tf: TestFile, graph: Any, registry: Any, case: Case, mode: Optional[str] = None) -> Result:
    from .conditions import evaluate
    from .inproc import CaseError

    t0 = time.monotonic()
    res = Result(str(tf.path), case.name, "pass")
    try:
        if (mode or case.mode) == "runtime":
            from .runtime import run_case as run
            outs, inputs = run(tf, graph, registry, case)
        else:
            from .inproc import run_case as run_inproc
            outs, inputs = run_inproc(graph, registry, case)
    except CaseError as exc:
        res.status, res.details = "error", [str(exc)]
        res.seconds = time.monotonic() - t0
        return res
    except Exception as exc:  # noqa: BLE001 - e.g. a runtime run that hung: the case's error, never a traceback
        res.status, res.details = "error", [f"the case could not run: {type(exc).__name__}: {exc}"]
        res.seconds = time.monotonic() - t0
        return res
    res.outputs = outs
    for e in case.expect:
        for line, text in evaluate(e, outs.get(e.at, []), inputs):
            res.details.append(f"{tf.path}:{line}: at {e.at}: {text}")
    if res.details:
        res.status = "fail"
    res.notes.append(f"mode {mode or case.mode}: " + ", ".join(f"{k}: {len(v)} packets" for k, v in outs.items()))
    res.seconds = time.monotonic() - t0
    return res


def run_file(tf: TestFile, only: Optional[str] = None, mode: Optional[str] = None, chaos: bool = True,
             say: Callable[[str], None] = lambda s: None) -> List[Result]:
    graph, registry = load(tf)
    results: List[Result] = []
    for case in tf.cases:
        if only and only not in case.name:
            continue
        r = run_case(tf, graph, registry, case, mode)
        say(_line(r))
        results.append(r)
    if chaos and tf.chaos:
        from .chaos import run_profile
        for prof in tf.chaos:
            if only and only not in prof.name:
                continue
            r = run_profile(tf, graph, prof)
            say(_line(r))
            results.append(r)
    return results


def _line(r: Result) -> str:
    head = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "skip": "SKIP"}[r.status]
    body = "".join(f"\n    {d}" for d in r.details)
    # a chaos profile always says what fired and what the checks found; a case only when it failed
    notes = "".join(f"\n    - {n}" for n in r.notes) if r.status != "pass" or r.name.startswith("chaos:") else ""
    return f"{head} {r.name} ({r.seconds:.1f} s){body}{notes}"


__all__ = ["load", "run_case", "run_file", "GraphError", "SpecError"]

"""Static validation of schnitzel graphs: nothing starts unless every check passes.

    from schnitzel_validator import validate_path
    report = validate_path("lobby.yaml")          # uses the installed plugins
    if not report.valid:
        print(report.format_text())

``validate(graph, registry)`` checks an already loaded graph;
``validate_path`` / ``validate_text`` load the file too, so shape errors
(SCH0xx, SCH1xx) and semantic errors (SCH2xx..SCH6xx) come in one report.
Codes and their meaning: docs/validation.md (table in :mod:`.codes`).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Union

from schnitzel_core.graph import Graph
from schnitzel_core.graph_loader import GraphLoadError, Issue, parse_graph
from schnitzel_core.registry import Registry, load_registry

from .codes import CODES, ERROR, WARNING

__all__ = ["validate", "validate_path", "validate_text", "Report", "Issue", "CODES"]


class Report:
    """The outcome of validating one graph file."""

    def __init__(self, graph: Optional[Graph], issues: List[Issue], file: str = "<graph>",
                 unreadable: bool = False) -> None:
        self.graph = graph
        self.file = file
        self.unreadable = unreadable     # the file could not be read or is not YAML
        self.issues = sorted(issues, key=lambda i: (i.line, i.column, i.code))
        #: what each edge guarantees about delivery (valid graphs only; .guarantees)
        self.delivery: List[Dict[str, str]] = []

    @property
    def errors(self) -> List[Issue]:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> List[Issue]:
        return [i for i in self.issues if i.severity == WARNING]

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def codes(self) -> List[str]:
        return [i.code for i in self.issues]

    def format_text(self, color: bool = False) -> str:
        lines = []
        for i in self.issues:
            lines.append(str(i))
            if i.hint:
                lines.extend("    hint: " + h if n == 0 else "          " + h
                             for n, h in enumerate(i.hint.splitlines()))
        for d in self.delivery:
            lines.append(f"info: edge {d['edge']}: {d['guarantee']}: {d['detail']}")
        ne, nw = len(self.errors), len(self.warnings)
        if ne:
            summary = f"{self.file}: invalid: {ne} error{'s' if ne != 1 else ''}"
        else:
            summary = f"{self.file}: valid"
        if nw:
            summary += f", {nw} warning{'s' if nw != 1 else ''}"
        lines.append(summary)
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        return {"file": self.file, "valid": self.valid,
                "errors": [i.to_dict() for i in self.errors],
                "warnings": [i.to_dict() for i in self.warnings], "delivery": list(self.delivery)}

    def to_json(self, indent: Optional[int] = 2) -> str:
        """``{"valid": bool, "errors": [...], "warnings": [...], "file": ...}`` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    def __repr__(self) -> str:
        return f"<Report {self.file} valid={self.valid} codes={self.codes}>"


def validate(graph: Graph, registry: Optional[Registry] = None) -> Report:
    """Check a loaded graph against the plugins in ``registry`` (default: the installed ones)."""
    from .checks import run_checks

    reg = load_registry() if registry is None else registry
    return _with_delivery(Report(graph, run_checks(graph, reg), graph.file), reg)


def _with_delivery(report: Report, registry: Registry) -> Report:
    from .guarantees import edge_guarantees

    if report.valid and report.graph is not None:
        report.delivery = edge_guarantees(report.graph, registry)
    return report


def _validate_source(source: Any, file: Optional[str], registry: Optional[Registry],
                     env: Optional[Mapping[str, str]]) -> Report:
    name = file or (str(source) if isinstance(source, (str, os.PathLike)) else "<graph>")
    try:
        graph, issues = parse_graph(source, file=file, env=env)
    except GraphLoadError as exc:
        return Report(None, exc.issues, exc.issues[0].file if exc.issues else name, unreadable=exc.unreadable)
    if graph is None:
        return Report(None, issues, issues[0].file if issues else name)
    if any(i.code in ("SCH101",) for i in issues):
        return Report(graph, issues, graph.file)
    from .checks import run_checks

    reg = load_registry() if registry is None else registry
    return _with_delivery(Report(graph, issues + run_checks(graph, reg), graph.file), reg)


def validate_path(path: Union[str, "os.PathLike[str]"], registry: Optional[Registry] = None,
                  env: Optional[Mapping[str, str]] = None) -> Report:
    """Load and check a graph file; never raises for a bad file (see ``Report.unreadable``)."""
    from pathlib import Path

    return _validate_source(Path(path), os.fspath(path), registry, env)


def validate_text(text: Union[str, bytes], file: str = "<graph>", registry: Optional[Registry] = None,
                  env: Optional[Mapping[str, str]] = None) -> Report:
    """Load and check a graph given as text."""
    if isinstance(text, str) and "\n" not in text:
        text = text + "\n"   # a one-line text must not be taken for a path
    return _validate_source(text, file, registry, env)

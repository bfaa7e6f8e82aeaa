"""`schnitzel validate` and `schnitzel plugins` (registered into the `schnitzel` CLI).

Exit codes of `validate`: 0 every file valid (warnings allowed unless
--strict), 1 some file invalid, 2 some file unreadable or not YAML (or the
validator itself failed).
No input ever produces a traceback: an unexpected failure is reported as
SCH000 with the file name.
"""
from __future__ import annotations

import enum
import json
import sys
from typing import Any, Dict, List

import typer

from schnitzel_core.graph_loader import Issue
from schnitzel_core.registry import PluginEntry, Registry, load_registry

from . import Report, validate_path, validate_text


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"


FORMAT_OPTION = typer.Option(OutputFormat.text, "--format", "-f", help="Output format: text or json.",
                             case_sensitive=False)


def _echo(text: str) -> None:
    # Plain print: no rich markup interpretation of user-provided text (e.g. "[x]" in messages).
    sys.stdout.write(text + "\n")


def _validate_one(path: str, registry_box: Dict[str, Registry]) -> Report:
    try:
        if "reg" not in registry_box:
            registry_box["reg"] = load_registry()
        if path == "-":   # the graph on standard input
            data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
            return validate_text(data, file="<stdin>", registry=registry_box["reg"])
        return validate_path(path, registry_box["reg"])
    except Exception as exc:  # noqa: BLE001 - a bug in a check must not become a traceback
        issue = Issue("SCH000", f"internal error while validating: {type(exc).__name__}: {exc}", path, 0, 0,
                      "please report this with the file attached")
        return Report(None, [issue], path, unreadable=True)


def validate_cmd(files: List[str] = typer.Argument(..., metavar="FILE...",
                                                  help="Graph files to check ('-' reads standard input)."),
                 format: OutputFormat = FORMAT_OPTION,
                 strict: bool = typer.Option(False, "--strict", help="Treat warnings as errors (exit 1).")) -> None:
    """Check graph files: every error with FILE:LINE:COL, its code and a hint."""
    box: Dict[str, Registry] = {}
    reports = [_validate_one(f, box) for f in files]
    if format == OutputFormat.json:
        out: Dict[str, Any] = {
            "valid": all(r.valid for r in reports),
            "errors": [i.to_dict() for r in reports for i in r.errors],
            "warnings": [i.to_dict() for r in reports for i in r.warnings],
            "delivery": [d for r in reports for d in r.delivery],   # each edge's delivery guarantee
        }
        if len(reports) == 1:
            out["file"] = reports[0].file
        else:
            out["files"] = [r.to_dict() for r in reports]
        _echo(json.dumps(out, indent=2, default=str))
    else:
        _echo("\n".join(r.format_text() for r in reports))
    if any(r.unreadable for r in reports):
        raise typer.Exit(2)
    if not all(r.valid for r in reports) or (strict and any(r.warnings for r in reports)):
        raise typer.Exit(1)


def _port_dict(p: Any) -> Dict[str, Any]:
    return {"name": p.name, "direction": p.direction.value, "kinds": list(p.kinds), "profile": p.profile.value,
            "msg_type": p.msg_type, "qos": p.qos, "description": p.description}


def _entry_dict(e: PluginEntry, full: bool = False) -> Dict[str, Any]:
    spec = e.spec
    d: Dict[str, Any] = {"name": e.name, "ok": e.ok, "error": e.error, "dist": e.dist, "entry_point": e.value,
                         "warnings": list(e.warnings)}
    if spec is not None:
        d.update({"category": spec.category.value, "version": spec.version, "api_version": spec.api_version,
                  "description": spec.description, "ports": [_port_dict(p) for p in spec.ports]})
        flags = [f for f in ("external", "delay", "durable_queue", "stateful") if getattr(spec, f)]
        d["flags"] = flags
        if full:
            d["params"] = spec.params_json_schema()
    return d


def _safe_registry() -> Registry:
    try:
        return load_registry()
    except Exception as exc:  # noqa: BLE001
        _echo(f"schnitzel: cannot list plugins: {type(exc).__name__}: {exc}")
        raise typer.Exit(2)


def plugins_cmd(ctx: typer.Context, format: OutputFormat = FORMAT_OPTION) -> None:
    """List installed plugins with category, version and ports."""
    if ctx.invoked_subcommand is not None:
        return
    reg = _safe_registry()
    entries = reg.entries()
    if format == OutputFormat.json:
        _echo(json.dumps({"api_version": _runtime_api(), "plugins": [_entry_dict(e) for e in entries]},
                         indent=2, default=str))
        return
    if not entries:
        _echo("no plugins installed (entry point group schnitzel.plugins)")
        return
    width = max(len(e.name) for e in entries)
    for e in entries:
        if e.spec is None or e.error:
            _echo(f"{e.name:<{width}}  REFUSED  {e.error}")
            continue
        s = e.spec
        ins = ",".join(p.name for p in s.inputs) or "-"
        outs = ",".join(p.name for p in s.outputs) or "-"
        _echo(f"{e.name:<{width}}  {s.category.value:<9}  {s.version:<8}  in: {ins}  out: {outs}"
              f"{'  [' + e.dist + ']' if e.dist else ''}"
              f"{'  (' + str(len(e.warnings)) + ' spec problems: schnitzel plugins show ' + e.name + ')' if e.warnings else ''}")


def _runtime_api() -> str:
    from schnitzel_core.plugin import PLUGIN_API_VERSION
    return PLUGIN_API_VERSION


def show_cmd(name: str = typer.Argument(..., help="Plugin name (see `schnitzel plugins`)."),
             format: OutputFormat = FORMAT_OPTION) -> None:
    """Show one plugin's ports and parameter schema."""
    reg = _safe_registry()
    e = reg.get(name)
    if e is None:
        import difflib
        close = difflib.get_close_matches(name, reg.names(), n=3)
        more = f"; did you mean {', '.join(close)}?" if close else ""
        _echo(f"schnitzel: no plugin named {name!r} is installed{more} (`schnitzel plugins` lists them)")
        raise typer.Exit(1)
    if format == OutputFormat.json:
        _echo(json.dumps(_entry_dict(e, full=True), indent=2, default=str))
        return
    if e.spec is None:
        _echo(f"{name}: REFUSED: {e.error}")
        raise typer.Exit(1)
    s = e.spec
    _echo(f"{s.name} {s.version} ({s.category.value}), plugin API {s.api_version}"
          f"{', from ' + e.dist if e.dist else ''}")
    if e.error:
        _echo(f"REFUSED: {e.error}")
    for w in e.warnings:
        _echo(f"spec problem: {w}")
    if s.description:
        _echo(f"  {s.description}")
    flags = [f for f in ("external", "delay", "durable_queue", "stateful") if getattr(s, f)]
    if flags:
        _echo(f"  flags: {', '.join(flags)}")
    _echo("ports:")
    for p in s.ports or ():
        _echo(f"  {p.name:<14} {p.direction.value:<3}  kinds={'|'.join(p.kinds)}  profile={p.profile.value}  "
              f"qos={p.qos}  type={p.msg_type}{'  - ' + p.description if p.description else ''}")
    if not s.ports:
        _echo("  (none)")
    _echo("params:")
    for p in s.params:
        bits = [p.type, "required" if p.required else f"default={json.dumps(p.default, default=str)}"]
        if p.minimum is not None or p.maximum is not None:
            bits.append(f"range=[{'' if p.minimum is None else p.minimum}, {'' if p.maximum is None else p.maximum}]")
        if p.enum is not None:
            bits.append(f"one of {list(p.enum)}")
        if p.live:
            bits.append("live")
        if p.secret_env:
            bits.append("names an env var")
        _echo(f"  {p.name:<14} {'  '.join(bits)}{'  - ' + p.description if p.description else ''}")
    if not s.params:
        _echo("  (none)")
    _echo("params as JSON Schema: schnitzel plugins show " + name + " --format json")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_cmd)
    plugins = typer.Typer(help="List installed plugins, or show one.", add_completion=False,
                          pretty_exceptions_enable=False)
    plugins.callback(invoke_without_command=True)(plugins_cmd)
    plugins.command("show")(show_cmd)
    app.add_typer(plugins, name="plugins")

"""``schnitzel replace`` and ``schnitzel apply``: change a running graph with no restart.

    schnitzel replace GRAPH NODE_ID [--plugin NAME] [--params FILE|k=v ...] [--timeout S]
    schnitzel apply GRAPH NEW_GRAPH [--dry-run] [--timeout S]

GRAPH is the running graph's name, or its graph file (then its name is read from
it and ``replace`` checks the change locally first). Both commands call the
graph's lifecycle manager (schnitzel_msgs ReplaceNode / ApplyGraph on
``/<graph>/_manager/replace_node`` and ``/<graph>/_manager/apply_graph``) and
print every step it reports. ``apply`` validates NEW_GRAPH before anything is
sent: an invalid graph changes nothing and exits 1 with the validator's errors.

Exit codes: 0 done; 1 refused, failed or rolled back (the message says which);
2 bad arguments; 3 no manager answers for that graph.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import typer

REPLACE_SERVICE = "/{graph}/_manager/replace_node"
APPLY_SERVICE = "/{graph}/_manager/apply_graph"
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _err(cmd: str, message: str) -> None:
    print(f"schnitzel {cmd}: {message}", file=sys.stderr)


# ---------------------------------------------------------------- arguments
def resolve_graph(arg: str) -> Tuple[str, Optional[Any]]:
    """(graph name, loaded Graph or None) from a graph name or a graph file."""
    p = Path(arg)
    if p.is_file():
        from schnitzel_core.graph_loader import GraphLoadError, load_graph

        try:
            g = load_graph(p)
        except GraphLoadError as exc:
            first = exc.issues[0] if exc.issues else exc
            raise CliError(f"cannot read graph file {arg}: {first}", 2) from None
        return g.name, g
    if not _NAME_RE.match(arg):
        raise CliError(f"{arg!r} is neither a graph file nor a graph name (a name is letters, digits and _)", 2)
    return arg, None


def parse_param_args(values: List[str]) -> Optional[Dict[str, Any]]:
    """``--params`` values: files (YAML or JSON mapping) and ``key=value`` pairs, later wins."""
    import yaml

    if not values:
        return None
    out: Dict[str, Any] = {}
    for v in values:
        if "=" in v and not Path(v).is_file():
            key, _, raw = v.partition("=")
            key = key.strip()
            if not key:
                raise CliError(f"--params {v!r}: the key before '=' is empty", 2)
            try:
                out[key] = yaml.safe_load(raw) if raw.strip() else ""
            except yaml.YAMLError:
                out[key] = raw      # not YAML: keep the text as it is
            continue
        p = Path(v)
        if not p.is_file():
            raise CliError(f"--params {v!r} is neither a file nor key=value", 2)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read {v}: {exc}", 2) from None
        except yaml.YAMLError as exc:
            raise CliError(f"{v} is not YAML or JSON: {str(exc).splitlines()[0]}", 2) from None
        if data is None:
            continue
        if not isinstance(data, dict):
            raise CliError(f"{v} must hold a mapping of parameter names to values, not a {type(data).__name__}", 2)
        out.update(data)
    try:
        json.dumps(out)
    except (TypeError, ValueError) as exc:
        raise CliError(f"parameters are not JSON-serialisable: {exc}", 2) from None
    return out


def validate_new_graph(path: str) -> Any:
    """The validator's report for NEW_GRAPH (schnitzel_validator.validate_path)."""
    from schnitzel_validator import validate_path

    return validate_path(path)


# ---------------------------------------------------------------- ROS call
def call_service(srv_type: Any, name: str, request: Any, wait_s: float, call_timeout_s: float) -> Any:
    """One service call from a short-lived node; CliError(code 3) when nobody serves ``name``."""
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, signal_handler_options=_no_signals())
    node = None
    try:
        node = rclpy.create_node(f"schnitzel_cli_{os.getpid()}", context=ctx)
        client = node.create_client(srv_type, name)
        from rclpy.executors import SingleThreadedExecutor

        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        deadline = time.monotonic() + wait_s
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                raise CliError(f"no lifecycle manager answers on {name} (waited {wait_s:g} s); is the graph "
                               "running (schnitzel run)? ROS_DOMAIN_ID must match the running graph's", 3)
            ex.spin_once(timeout_sec=0.05)
        future = client.call_async(request)
        ex.spin_until_future_complete(future, timeout_sec=call_timeout_s)
        if not future.done():
            raise CliError(f"{name} did not answer within {call_timeout_s:g} s; the manager may still be "
                           "working: check the graph's status before retrying", 1)
        if future.exception() is not None:
            raise CliError(f"{name} failed: {future.exception()}", 1)
        return future.result()
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.shutdown(context=ctx)


def _no_signals() -> Any:
    from rclpy.signals import SignalHandlerOptions

    return SignalHandlerOptions.NO


# ---------------------------------------------------------------- commands
def do_replace(graph_arg: str, node_id: str, plugin: str, params: List[str], timeout: float,
               wait: float) -> int:
    name, graph = resolve_graph(graph_arg)
    given = parse_param_args(params)
    if timeout <= 0:
        raise CliError("--timeout must be > 0", 2)
    if graph is not None:
        # the file is at hand: check the change before touching the running graph
        from .replace import merge_params, validate_replacement

        node = graph.node(node_id)
        if node is None:
            raise CliError(f"graph {name!r} has no node {node_id!r} (nodes: "
                           f"{', '.join(sorted(n.id for n in graph.nodes))})", 2)
        new_plugin = plugin or node.plugin
        merged = merge_params(node.params, given, plugin_changed=new_plugin != node.plugin)
        _, errors = validate_replacement(graph, node_id, new_plugin, merged)
        if errors:
            raise CliError("the replacement would make the graph invalid; nothing was changed:\n  "
                           + "\n  ".join(errors), 1)
    from schnitzel_msgs.srv import ReplaceNode

    req = ReplaceNode.Request(node_id=node_id, plugin=plugin or "",
                              parameters_json=json.dumps(given) if given is not None else "",
                              timeout_s=float(timeout))
    service = REPLACE_SERVICE.format(graph=name)
    resp = call_service(ReplaceNode, service, req, wait, max(60.0, timeout * 12))
    for line in resp.steps:
        print(f"  {line}")
    if resp.success:
        print(resp.message or f"{node_id} replaced")
        return 0
    _err("replace", resp.message or "the manager refused without a reason")
    return 1


def do_apply(graph_arg: str, new_graph: str, dry_run: bool, timeout: float, wait: float) -> int:
    name, running = resolve_graph(graph_arg)
    p = Path(new_graph)
    if not p.is_file():
        raise CliError(f"new graph file {new_graph} does not exist", 2)
    report = validate_new_graph(new_graph)
    if not report.valid:
        print(report.format_text(), file=sys.stderr)
        raise CliError(f"{new_graph} is not valid; nothing was changed", 1)
    new_name = report.graph.name if report.graph is not None else name
    if new_name != name:
        raise CliError(f"{new_graph} describes graph {new_name!r}, not the running graph {name!r}; "
                       "nothing was changed", 1)
    text = p.read_text(encoding="utf-8")
    if dry_run and running is not None:
        # both files are here: show the difference without asking the manager
        from schnitzel_core.graph_diff import GraphDiffError, describe_plan, diff_graphs, plan_application
        from schnitzel_core.registry import load_registry

        reg = load_registry()
        try:
            diff = diff_graphs(running, report.graph, reg)
            plan = plan_application(diff, reg)
        except GraphDiffError as exc:
            raise CliError(str(exc), 1) from None
        print("\n".join(diff.lines()) or "no changes")
        for line in describe_plan(plan):
            print(f"  {line}")
        return 0
    from schnitzel_msgs.srv import ApplyGraph

    req = ApplyGraph.Request(graph_yaml=text, graph_path=str(p), dry_run=bool(dry_run))
    resp = call_service(ApplyGraph, APPLY_SERVICE.format(graph=name), req, wait, max(120.0, timeout * 30))
    for line in resp.changes:
        print(f"  {line}")
    if resp.success:
        print(resp.message or ("no changes" if not resp.changes else "applied"))
        return 0
    _err("apply", resp.message or "the manager refused without a reason")
    return 1


def register(app: typer.Typer) -> None:
    @app.command("replace")
    def replace_cmd(
        graph: str = typer.Argument(..., help="running graph: its name or its graph file"),
        node_id: str = typer.Argument(..., help="id of the node to replace"),
        plugin: str = typer.Option("", "--plugin", help="new plugin (default: keep the current one)"),
        params: List[str] = typer.Option([], "--params", help="parameter file (YAML/JSON) or key=value; repeatable"),
        timeout: float = typer.Option(10.0, "--timeout", help="seconds each step may take before rolling back"),
        wait: float = typer.Option(5.0, "--wait", help="seconds to wait for the lifecycle manager"),
    ) -> None:
        """Replace a node of a running graph (new plugin or parameters) with no restart."""
        try:
            code = do_replace(graph, node_id, plugin, params, timeout, wait)
        except CliError as exc:
            _err("replace", str(exc))
            raise typer.Exit(exc.code)
        raise typer.Exit(code)

    @app.command("apply")
    def apply_cmd(
        graph: str = typer.Argument(..., help="running graph: its name or its current graph file"),
        new_graph: str = typer.Argument(..., help="the new graph file"),
        dry_run: bool = typer.Option(False, "--dry-run", help="show the difference, change nothing"),
        timeout: float = typer.Option(10.0, "--timeout", help="seconds each step may take"),
        wait: float = typer.Option(5.0, "--wait", help="seconds to wait for the lifecycle manager"),
    ) -> None:
        """Apply a new version of a running graph: only the difference changes, no restart."""
        try:
            code = do_apply(graph, new_graph, dry_run, timeout, wait)
        except CliError as exc:
            _err("apply", str(exc))
            raise typer.Exit(exc.code)
        raise typer.Exit(code)

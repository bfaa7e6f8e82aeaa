"""Plan -> ROS 2 launch file (launch / launch_ros public API, Jazzy and Kilted).

The generated file is a thin layer: it reads ``<graph>.plan.json`` next to it
and turns it into launch actions with :func:`actions_from_plan`, whose source is
copied verbatim into the file, so it runs with ``ros2 launch`` on any ROS 2
install even where schnitzel_bringup is not importable by the launch process.
``launch/graph.launch.py`` (validate + compile + launch in one step) calls the
very same function, so both paths start the same containers and manager.

Each container becomes a ``launch_ros.actions.ComposableNodeContainer`` running
``schnitzel_container`` with its nodes as ``ComposableNode`` descriptions
(loaded through the container's ``composition_interfaces`` load_node service;
``parameters`` carry the node's params, lists and mappings as JSON text the way
schnitzel containers declare them; ``extra_arguments`` carry the same ``ports_json``
/ ``graph`` / ``container`` values as schnitzel's own LoadNode ``options``).
The lifecycle manager is a ``launch_ros.actions.Node`` that configures and
activates the loaded nodes in dependency order (sinks first); a graph with
``controllers:`` also gets the controllers' host (``schnitzel_controller``, the
plan's ``control``) as a ``Node`` beside it (docs/autonomic.md). Restart policy
maps to the container action's ``respawn`` / ``respawn_delay`` /
``respawn_max_retries``; the manager re-loads a respawned container's nodes.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Dict, List, Union

from .plan import Plan

#: The launch / launch_ros names a generated file may use (all public API).
PUBLIC_API = {
    "launch": {"LaunchDescription"},
    "launch.actions": {"ExecuteProcess", "SetEnvironmentVariable"},
    "launch_ros.actions": {"ComposableNodeContainer", "Node"},
    "launch_ros.descriptions": {"ComposableNode"},
    "launch_ros.parameter_descriptions": {"ParameterValue"},
}


def actions_from_plan(plan: Dict[str, Any], plan_file: str, loaded_by_launch: bool = True) -> List[Any]:
    """Launch actions for a plan (a dict as read from ``<graph>.plan.json``)."""
    import json

    from launch.actions import ExecuteProcess, SetEnvironmentVariable
    from launch_ros.actions import ComposableNodeContainer, Node
    from launch_ros.descriptions import ComposableNode
    from launch_ros.parameter_descriptions import ParameterValue

    def ros_param(value):
        # As schnitzel containers declare parameters: scalars as such, lists and mappings as
        # JSON text. Text is pinned to str so launch_ros does not re-read it as YAML ("1" stays "1").
        if isinstance(value, bool) or isinstance(value, (int, float)):
            return value
        if isinstance(value, str):
            return ParameterValue(value, value_type=str)
        return ParameterValue(json.dumps(value, separators=(",", ":"), sort_keys=True), value_type=str)

    nodes = {n["id"]: n for n in plan["nodes"]}
    # A host's share (docs/multi-host.md): its DDS settings first, then only its containers, and
    # the manager only on the manager host.
    here = plan.get("host", "")
    actions = [SetEnvironmentVariable(k, v) for k, v in sorted((plan.get("dds_env") or {}).items())]
    srv = plan.get("discovery_server") or {}
    if srv:
        # The graph's Fast DDS discovery server runs on this host. `-i 0`: the first (only) entry
        # of ROS_DISCOVERY_SERVER; required by Fast DDS 2 (Jazzy), accepted by Fast DDS 3 (Kilted).
        actions.append(ExecuteProcess(
            cmd=["fastdds", "discovery", "-i", "0", "-l", srv["address"], "-p", str(srv["port"])],
            name="fastdds_discovery_server",
            output="screen",
        ))
    for c in plan["containers"]:
        if here and c["host"] != here:
            continue
        described = []
        for node_id in c["nodes"]:
            n = nodes[node_id]
            params = {k: ros_param(v) for k, v in sorted(n["params"].items()) if v is not None}
            described.append(ComposableNode(
                package=n["package"],
                plugin=n["plugin"],
                name=n["id"],
                namespace=n["namespace"],
                parameters=[params] if params else [],
                remappings=[(a, b) for a, b in n["remappings"]],
                extra_arguments=[{
                    # The container's LoadNode options (ports_json, graph, container, dds_readers);
                    # parameters_json repeats the parameters as one JSON object for tools.
                    "parameters_json": ParameterValue(json.dumps(n["params"], sort_keys=True), value_type=str),
                    "ports_json": ParameterValue(json.dumps(n["ports"], sort_keys=True), value_type=str),
                    "graph": ParameterValue(plan["graph"], value_type=str),
                    "container": ParameterValue(c["id"], value_type=str),
                    # readers each output waits to match when it activates (absent: none)
                    **({"dds_readers": ParameterValue(json.dumps(n["dds_readers"], sort_keys=True), value_type=str)}
                       if n.get("dds_readers") else {}),
                }],
            ))
        restart = c["restart"]
        actions.append(ComposableNodeContainer(
            name=c["node_name"],
            namespace=c["namespace"],
            package=c["package"],
            executable=c["executable"],
            arguments=list(c["arguments"]),
            composable_node_descriptions=described,
            output="screen",
            respawn=restart["policy"] == "on-failure",
            respawn_delay=float(restart["backoff_s"]),
            respawn_max_retries=int(restart["limit"]),
        ))
    if here and not any(h.get("role") == "manager" and h["name"] == here for h in plan.get("hosts", [])):
        return actions
    m = plan["manager"]
    args = ["--plan", plan_file]
    if loaded_by_launch:
        args.append("--loaded-by-launch")
    actions.append(Node(
        package=m["package"],
        executable=m["executable"],
        name=m["name"],
        namespace=m["namespace"],
        arguments=args,
        output="screen",
    ))
    ctl = plan.get("control") or {}
    if ctl:
        # The autonomic controllers' host, beside the manager (it reads the manager's status):
        # without a run directory its audit goes to its log and /<graph>/_control/audit.
        actions.append(Node(
            package=ctl["package"],
            executable=ctl["executable"],
            name=ctl["name"],
            namespace=ctl["namespace"],
            arguments=["--plan", plan_file],
            output="screen",
        ))
    return actions


_TEMPLATE = '''\
# Generated by `schnitzel compile` from {graph_file}
# Graph {graph!r}: {n_containers} container(s), {n_nodes} node(s).
# Do not edit: change the graph and compile again. Run with:
#   ros2 launch {launch_name}
# The plan it launches is {plan_name}, next to this file.
import json
import os

from launch import LaunchDescription

PLAN_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), {plan_name!r})


{actions_src}

def generate_launch_description():
    with open(PLAN_FILE, encoding="utf-8") as f:
        plan = json.load(f)
    return LaunchDescription(actions_from_plan(plan, PLAN_FILE))
'''


def launch_source(plan: Plan, plan_name: str, launch_name: str) -> str:
    """The text of the launch file for ``plan`` (reads ``plan_name`` beside itself)."""
    src = inspect.getsource(actions_from_plan)
    src = src.replace("plan: Dict[str, Any], plan_file: str, loaded_by_launch: bool = True) -> List[Any]:",
                      "plan, plan_file, loaded_by_launch=True):")
    return _TEMPLATE.format(graph_file=plan.graph_file or "<graph>", graph=plan.graph,
                            n_containers=len(plan.containers), n_nodes=len(plan.nodes),
                            launch_name=launch_name, plan_name=plan_name, actions_src=src)


def _write_pair(plan: Plan, out: Path, stem: str) -> Dict[str, Path]:
    plan_path = out / f"{stem}.plan.json"
    launch_path = out / f"{stem}.launch.py"
    plan.write(plan_path)
    text = launch_source(plan, plan_path.name, str(launch_path.resolve()))
    tmp = launch_path.with_suffix(".py.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(launch_path)
    return {"plan": plan_path, "launch": launch_path}


def write_outputs(plan: Plan, out_dir: Union[str, Path]) -> Dict[str, Any]:
    """Write ``<name>.plan.json`` and ``<name>.launch.py`` (the whole graph on one machine) into
    ``out_dir``; for a graph with
    ``hosts:`` also each host's share: ``<name>.<host>.plan.json``, ``<name>.<host>.launch.py``
    and ``<name>.<host>.env`` (its DDS settings), listed under ``hosts``."""
    from .hosts import env_file_text, host_share, on_one_machine

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs: Dict[str, Any] = _write_pair(on_one_machine(plan), out, plan.graph)
    outputs["hosts"] = {}
    for h in plan.hosts:
        share = host_share(plan, h["name"])
        files = _write_pair(share, out, f"{plan.graph}.{h['name']}")
        env_path = out / f"{plan.graph}.{h['name']}.env"
        env_path.write_text(env_file_text(share), encoding="utf-8")
        files["env"] = env_path
        outputs["hosts"][h["name"]] = files
    return outputs

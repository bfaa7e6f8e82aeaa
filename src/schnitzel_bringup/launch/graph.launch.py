"""Validate, compile and launch a schnitzel graph in one step:

    ros2 launch schnitzel_bringup graph.launch.py graph:=/path/to/graph.yaml [plan_dir:=DIR]

An invalid graph prints the validator's errors and starts nothing. A valid one is
compiled into ``<plan_dir>/<name>.plan.json`` (a fresh temporary directory by
default) and launched with the same actions as ``schnitzel compile``'s launch file.
"""
import sys
import tempfile

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration


class GraphInvalid(RuntimeError):
    """Raised from the OpaqueFunction so `ros2 launch` stops before starting anything."""


def _launch_graph(context, *args, **kwargs):
    from schnitzel_bringup.compiler import validate_and_compile
    from schnitzel_bringup.launch_gen import actions_from_plan

    path = LaunchConfiguration("graph").perform(context)
    if not path:
        raise GraphInvalid("graph:=FILE is required, e.g. graph:=examples/lobby.yaml")
    report, plan = validate_and_compile(path)
    if plan is None:
        print(report.format_text(), file=sys.stderr)
        n = len(getattr(report, "errors", []) or [])
        raise GraphInvalid(f"graph {path} is invalid ({n} error(s)); nothing was started")
    out_dir = LaunchConfiguration("plan_dir").perform(context) or tempfile.mkdtemp(prefix=f"schnitzel-{plan.graph}-")
    plan_path = plan.write(f"{out_dir}/{plan.graph}.plan.json")
    return actions_from_plan(plan.to_dict(), str(plan_path))


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("graph", description="schnitzel graph file (YAML) to validate and launch"),
        DeclareLaunchArgument("plan_dir", default_value="",
                              description="where to write <name>.plan.json (default: a temporary directory)"),
        OpaqueFunction(function=_launch_graph),
    ])

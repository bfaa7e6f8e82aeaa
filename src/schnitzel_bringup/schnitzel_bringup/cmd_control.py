"""``schnitzel control pin|release|suspend|resume|mode``: the operator's override of a running
graph's autonomic controllers (docs/autonomic.md). An override always wins and is logged in the audit."""
from __future__ import annotations

import sys

import typer

from .cmd_replace import CliError, call_service, resolve_graph

GRAPH_HELP = "running graph: its name or its graph file"


def do_control(graph_arg: str, controller: str, action: str, knob: str = "", value: float = 0.0,
               wait: float = 5.0, text: str = "") -> int:
    try:
        from schnitzel_msgs.srv import ControlOverride

        from .controller_node import override_service

        name, _ = resolve_graph(graph_arg)
        req = ControlOverride.Request(controller=controller, action=action, knob=knob, value=float(value),
                                      text=text)
        try:
            resp = call_service(ControlOverride, override_service(f"/{name}"), req, wait, 10.0)
        except CliError as exc:
            if exc.code == 3:
                raise CliError(f"no controller host answers for graph {name!r} (waited {wait:g} s); is it "
                               "running with `controllers:` (schnitzel run)? ROS_DOMAIN_ID must match the "
                               "running graph's", 3) from None
            raise
    except CliError as exc:
        print(f"schnitzel control {action}: {exc}", file=sys.stderr)
        return exc.code
    if not resp.ok:
        print(f"schnitzel control {action}: {resp.message}", file=sys.stderr)
        return 1
    print(resp.message)
    return 0


def register(app: typer.Typer) -> None:
    control = typer.Typer(help="Override a running graph's autonomic controllers (pin, release, suspend, resume).",
                          no_args_is_help=True)

    @control.command("pin")
    def pin_cmd(graph: str = typer.Argument(..., help=GRAPH_HELP),
                controller: str = typer.Argument(..., help="controller name (controllers: in the graph)"),
                knob: str = typer.Argument(..., help="knob as node.param, e.g. cam.rate_hz"),
                value: str = typer.Argument(..., help="value to hold the knob at (an enum knob: one of its values)"),
                wait: float = typer.Option(5.0, "--wait", help="seconds to wait for the controller host")) -> None:
        """Hold KNOB at VALUE: the controller never moves it until released."""
        raise typer.Exit(do_control(graph, controller, "pin", knob, 0.0, wait, text=value))

    @control.command("release")
    def release_cmd(graph: str = typer.Argument(..., help=GRAPH_HELP),
                    controller: str = typer.Argument(..., help="controller name"),
                    knob: str = typer.Argument(..., help="knob as node.param"),
                    wait: float = typer.Option(5.0, "--wait", help="seconds to wait for the controller host")) -> None:
        """Give a pinned KNOB back to the controller (it resumes after its cooldown)."""
        raise typer.Exit(do_control(graph, controller, "release", knob, 0.0, wait))

    @control.command("suspend")
    def suspend_cmd(graph: str = typer.Argument(..., help=GRAPH_HELP),
                    controller: str = typer.Argument(..., help="controller name"),
                    wait: float = typer.Option(5.0, "--wait", help="seconds to wait for the controller host")) -> None:
        """Stop a controller's decisions; its knobs keep their current values."""
        raise typer.Exit(do_control(graph, controller, "suspend", "", 0.0, wait))

    @control.command("resume")
    def resume_cmd(graph: str = typer.Argument(..., help=GRAPH_HELP),
                   controller: str = typer.Argument(..., help="controller name"),
                   wait: float = typer.Option(5.0, "--wait", help="seconds to wait for the controller host")) -> None:
        """Let a suspended controller decide again (after its cooldown)."""
        raise typer.Exit(do_control(graph, controller, "resume", "", 0.0, wait))

    @control.command("mode")
    def mode_cmd(graph: str = typer.Argument(..., help=GRAPH_HELP),
                 controller: str = typer.Argument(..., help="controller name"),
                 name: str = typer.Argument("", help="mode to force (modes: of the controller)"),
                 release: bool = typer.Option(False, "--release", help="leave the forced mode"),
                 wait: float = typer.Option(5.0, "--wait", help="seconds to wait for the controller host")) -> None:
        """Force mode NAME (all its knobs at once, held until --release), or --release it."""
        if bool(name) == release:
            print("schnitzel control mode: give a mode NAME to force, or --release (not both)", file=sys.stderr)
            raise typer.Exit(2)
        raise typer.Exit(do_control(graph, controller, "mode_release" if release else "mode", "", 0.0, wait,
                                    text=name))

    app.add_typer(control, name="control")

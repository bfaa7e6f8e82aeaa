"""The generated launch file: valid Python, only launch/launch_ros public API, actions match the plan.

launch and launch_ros are not installable from PyPI, so the file is executed with
small stand-ins injected into sys.modules that keep the real constructors'
keyword signatures (copied from launch_ros/launch on the Jazzy branch) and record
what they were given. Where the real launch_ros is importable, the same file is
also loaded with it (test_real_launch_ros).
"""
import ast
import importlib.util
import json
import runpy
import sys
import types
from pathlib import Path

import pytest
from schnitzel_core.graph_loader import load_graph
from schnitzel_core.registry import Registry

from schnitzel_bringup.compiler import compile_graph
from schnitzel_bringup.launch_gen import PUBLIC_API, write_outputs

from _plugins import ALL
from test_compiler import FOUR, ONE

# Public names of the real packages (their __init__ exports, Jazzy/Kilted).
REAL_EXPORTS = {
    "launch": {"LaunchDescription", "LaunchContext", "LaunchService", "Action", "Substitution",
               "actions", "substitutions", "events", "conditions"},
    "launch.actions": {"DeclareLaunchArgument", "OpaqueFunction", "LogInfo", "Shutdown", "ExecuteProcess",
                       "GroupAction", "IncludeLaunchDescription", "TimerAction", "RegisterEventHandler",
                       "SetEnvironmentVariable", "SetLaunchConfiguration", "EmitEvent"},
    "launch.substitutions": {"LaunchConfiguration", "TextSubstitution", "EnvironmentVariable",
                             "PathJoinSubstitution", "PythonExpression"},
    "launch_ros.actions": {"ComposableNodeContainer", "LifecycleNode", "LifecycleTransition",
                           "LoadComposableNodes", "Node", "PushROSNamespace", "PushRosNamespace",
                           "RosTimer", "ROSTimer", "SetParameter", "SetParametersFromFile", "SetRemap",
                           "SetROSLogDir", "SetUseSimTime"},
    "launch_ros.descriptions": {"ComposableNode", "Parameter", "ParameterFile", "ParameterValue"},
    "launch_ros.parameter_descriptions": {"Parameter", "ParameterFile", "ParameterValue"},
}

# Keyword arguments ExecuteProcess/ExecuteLocal accept (Node and the container pass **kwargs there).
EXECUTE_KW = {"output", "respawn", "respawn_delay", "respawn_max_retries", "additional_env", "cwd",
              "env", "shell", "sigterm_timeout", "sigkill_timeout", "emulate_tty", "prefix",
              "on_exit", "log_cmd", "condition", "cached_output", "name"}


class Recorder:
    calls = []

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        Recorder.calls.append(self)


def _fake_modules():
    mods = {}

    def mod(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        mods[name] = m
        return m

    class LaunchDescription(Recorder):
        def __init__(self, initial_entities=None, *, deprecated_reason=None):
            super().__init__(initial_entities=initial_entities)
            self.entities = list(initial_entities or [])

    class DeclareLaunchArgument(Recorder):
        def __init__(self, name, *, default_value=None, description=None, choices=None, **kw):
            super().__init__(name=name, default_value=default_value, description=description)

    class OpaqueFunction(Recorder):
        def __init__(self, *, function, args=None, kwargs=None, **kw):
            super().__init__(function=function)
            self.function = function

    class LaunchConfiguration(Recorder):
        def __init__(self, variable_name, *, default=None):
            super().__init__(variable_name=variable_name)
            self.name = variable_name

        def perform(self, context):
            return context.launch_configurations.get(self.name, "")

    class ParameterValue(Recorder):
        def __init__(self, value, *, value_type=None):
            super().__init__(value=value, value_type=value_type)
            self.value = value
            self.value_type = value_type

    class ComposableNode(Recorder):
        def __init__(self, *, package, plugin, name=None, namespace=None, parameters=None,
                     remappings=None, extra_arguments=None, condition=None):
            super().__init__(package=package, plugin=plugin, name=name, namespace=namespace,
                             parameters=parameters, remappings=remappings, extra_arguments=extra_arguments)

    class Node(Recorder):
        def __init__(self, *, executable, package=None, name=None, namespace=None, exec_name=None,
                     parameters=None, remappings=None, ros_arguments=None, arguments=None, **kwargs):
            unknown = set(kwargs) - EXECUTE_KW
            assert not unknown, f"not an ExecuteProcess argument: {unknown}"
            super().__init__(executable=executable, package=package, name=name, namespace=namespace,
                             parameters=parameters, remappings=remappings, arguments=arguments, **kwargs)

    class ComposableNodeContainer(Node):
        def __init__(self, *, name, namespace, composable_node_descriptions=None, **kwargs):
            super().__init__(name=name, namespace=namespace, **kwargs)
            self.kwargs["composable_node_descriptions"] = composable_node_descriptions

    launch = mod("launch", LaunchDescription=LaunchDescription)
    class SetEnvironmentVariable(Recorder):
        def __init__(self, name, value, **kw):
            super().__init__(name=name, value=value)

    class ExecuteProcess(Recorder):
        def __init__(self, *, cmd, **kwargs):
            unknown = set(kwargs) - EXECUTE_KW
            assert not unknown, f"not an ExecuteProcess argument: {unknown}"
            super().__init__(cmd=cmd, **kwargs)

    launch.actions = mod("launch.actions", DeclareLaunchArgument=DeclareLaunchArgument,
                         OpaqueFunction=OpaqueFunction, SetEnvironmentVariable=SetEnvironmentVariable,
                         ExecuteProcess=ExecuteProcess)
    launch.substitutions = mod("launch.substitutions", LaunchConfiguration=LaunchConfiguration)
    lr = mod("launch_ros")
    lr.actions = mod("launch_ros.actions", Node=Node, ComposableNodeContainer=ComposableNodeContainer)
    lr.descriptions = mod("launch_ros.descriptions", ComposableNode=ComposableNode, ParameterValue=ParameterValue)
    lr.parameter_descriptions = mod("launch_ros.parameter_descriptions", ParameterValue=ParameterValue)
    return mods


@pytest.fixture
def fake_launch(monkeypatch):
    for name, m in _fake_modules().items():
        monkeypatch.setitem(sys.modules, name, m)
    Recorder.calls = []
    yield


def _compile(text, tmp_path):
    plan = compile_graph(load_graph(text, file="g.yaml"), Registry.from_classes(ALL))
    return plan, write_outputs(plan, tmp_path)


def _imports(tree):
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            out += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names]
    return out


@pytest.mark.parametrize("text", [ONE, FOUR], ids=["one-container", "four-containers"])
def test_generated_file_is_python_using_only_public_api(text, tmp_path):
    _, out = _compile(text, tmp_path)
    src = out["launch"].read_text()
    tree = ast.parse(src)
    compile(src, str(out["launch"]), "exec")
    imports = _imports(tree)
    for module, name in imports:
        if module.split(".")[0] in ("launch", "launch_ros"):
            assert name in REAL_EXPORTS[module], f"{module}.{name} is not public launch API"
            assert name in PUBLIC_API[module]
        else:
            assert module in ("json", "os"), f"launch file imports {module}: must stay standalone"
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


@pytest.mark.parametrize("text", [ONE, FOUR], ids=["one-container", "four-containers"])
def test_actions_match_the_plan(text, tmp_path, fake_launch):
    plan, out = _compile(text, tmp_path)
    plan_json = json.loads(out["plan"].read_text())
    ns = runpy.run_path(str(out["launch"]))
    ld = ns["generate_launch_description"]()
    entities = ld.entities
    containers = [e for e in entities if type(e).__name__ == "ComposableNodeContainer"]
    managers = [e for e in entities if type(e).__name__ == "Node"]
    assert len(containers) == len(plan_json["containers"]) and len(managers) == 1
    nodes = {n["id"]: n for n in plan_json["nodes"]}
    for action, c in zip(containers, plan_json["containers"]):
        kw = action.kwargs
        assert (kw["package"], kw["executable"]) == ("schnitzel_nodes", "schnitzel_container")
        assert (kw["name"], kw["namespace"]) == (c["node_name"], c["namespace"])
        assert kw["arguments"] == ["--graph", plan.graph, "--container", c["id"]]
        assert kw["respawn"] == (c["restart"]["policy"] == "on-failure")
        assert kw["respawn_delay"] == c["restart"]["backoff_s"]
        assert kw["respawn_max_retries"] == c["restart"]["limit"]
        described = kw["composable_node_descriptions"]
        assert [d.kwargs["name"] for d in described] == c["nodes"]  # start order kept
        for d in described:
            n = nodes[d.kwargs["name"]]
            assert d.kwargs["plugin"] == n["plugin"]
            assert d.kwargs["namespace"] == f"/{plan.graph}"
            assert d.kwargs["remappings"] == [tuple(r) for r in n["remappings"]]
            extra = {k: v.value for k, v in d.kwargs["extra_arguments"][0].items()}
            assert json.loads(extra["parameters_json"]) == n["params"]
            assert json.loads(extra["ports_json"]) == n["ports"]
            assert extra["graph"] == plan.graph and extra["container"] == c["id"]
            assert json.loads(extra.get("dds_readers", "{}")) == n["dds_readers"]
            # every param travels: text pinned to str (launch_ros would re-read it as YAML),
            # lists and mappings as JSON text (how schnitzel containers declare them)
            ros = d.kwargs["parameters"][0] if d.kwargs["parameters"] else {}
            assert set(ros) == set(n["params"])
            for k, v in ros.items():
                want = n["params"][k]
                if isinstance(want, (list, dict)):
                    assert v.value_type is str and json.loads(v.value) == want
                elif isinstance(want, str):
                    assert v.value_type is str and v.value == want
                else:
                    assert v == want
    m = managers[0].kwargs
    assert (m["package"], m["executable"], m["namespace"]) == ("schnitzel_bringup", "schnitzel_manager",
                                                               f"/{plan.graph}")
    assert m["arguments"][:2] == ["--plan", str(out["plan"].resolve())]


CONTROLLED = ONE + """controllers:
  - name: rate
    knobs: [{node: src, param: rate_hz, min: 1, max: 50}]
    objectives: [{node: snk, metric: latency_p95_ms, max: 100}]
"""


def test_a_graph_with_controllers_launches_their_host_beside_the_manager(tmp_path, fake_launch):
    plan, out = _compile(CONTROLLED, tmp_path)
    plan_json = json.loads(out["plan"].read_text())
    assert plan_json["control"] == {"package": "schnitzel_bringup", "executable": "schnitzel_controller",
                                    "name": "_control", "namespace": f"/{plan.graph}"}
    ld = runpy.run_path(str(out["launch"]))["generate_launch_description"]()
    nodes = [e.kwargs for e in ld.entities if type(e).__name__ == "Node"]
    assert [n["executable"] for n in nodes] == ["schnitzel_manager", "schnitzel_controller"]
    ctl = nodes[1]
    assert (ctl["package"], ctl["name"], ctl["namespace"]) == ("schnitzel_bringup", "_control", f"/{plan.graph}")
    assert ctl["arguments"] == ["--plan", str(out["plan"].resolve())]    # the host reads the same plan
    # the executable the Node names is installed by schnitzel_bringup (lib/schnitzel_bringup, as the
    # manager's), and runs the controller host
    setup = (Path(__file__).resolve().parents[1] / "setup.py").read_text()
    assert '"schnitzel_controller = schnitzel_bringup.controller_node:main"' in setup
    # without controllers: no controller host, as before
    _, plain = _compile(ONE, tmp_path / "plain")
    ld = runpy.run_path(str(plain["launch"]))["generate_launch_description"]()
    assert [e.kwargs["executable"] for e in ld.entities if type(e).__name__ == "Node"] == ["schnitzel_manager"]


def test_the_controller_host_runs_only_on_the_manager_host(fake_launch):
    from schnitzel_bringup.launch_gen import actions_from_plan

    plan = compile_graph(load_graph(CONTROLLED, file="g.yaml"), Registry.from_classes(ALL)).to_dict()
    plan["hosts"] = [{"name": "brain", "role": "manager"}, {"name": "arm", "role": "worker"}]
    for c in plan["containers"]:
        c["host"] = "arm"
    names = lambda host: [a.kwargs["executable"] for a in actions_from_plan({**plan, "host": host}, "p.json")  # noqa: E731
                          if type(a).__name__ == "Node"]
    assert names("brain") == ["schnitzel_manager", "schnitzel_controller"]
    assert names("arm") == []


def test_nested_params_travel_as_json_text(tmp_path, fake_launch):
    plan, out = _compile(ONE, tmp_path)
    ld = runpy.run_path(str(out["launch"]))["generate_launch_description"]()
    cont = next(e for e in ld.entities if type(e).__name__ == "ComposableNodeContainer")
    mapn = next(d for d in cont.kwargs["composable_node_descriptions"] if d.kwargs["name"] == "map")
    ros = mapn.kwargs["parameters"][0]
    assert ros["factor"] == 7
    assert ros["table"].value == '{"k":[1,2]}' and ros["tags"].value == '["a","b"]'
    assert json.loads(mapn.kwargs["extra_arguments"][0]["parameters_json"].value)["table"] == {"k": [1, 2]}


GRAPH_LAUNCH = Path(__file__).resolve().parents[1] / "launch" / "graph.launch.py"


class _Ctx:
    def __init__(self, **cfg):
        self.launch_configurations = cfg


def test_graph_launch_valid_graph_launches_the_compiled_plan(tmp_path, fake_launch, monkeypatch):
    plan = compile_graph(load_graph(FOUR, file="g.yaml"), Registry.from_classes(ALL))

    class Report:
        valid, errors = True, []

    import schnitzel_bringup.compiler as comp
    monkeypatch.setattr(comp, "validate_and_compile", lambda path: (Report(), plan))
    ns = runpy.run_path(str(GRAPH_LAUNCH))
    ld = ns["generate_launch_description"]()
    declared = [e.kwargs["name"] for e in ld.entities if type(e).__name__ == "DeclareLaunchArgument"]
    assert declared == ["graph", "plan_dir"]
    opaque = next(e for e in ld.entities if type(e).__name__ == "OpaqueFunction")
    actions = opaque.function(_Ctx(graph="g.yaml", plan_dir=str(tmp_path)))
    assert [type(a).__name__ for a in actions] == ["ComposableNodeContainer"] * 4 + ["Node"]
    assert json.loads((tmp_path / "lobby.plan.json").read_text()) == plan.to_dict()


def test_graph_launch_invalid_graph_starts_nothing(tmp_path, fake_launch, capsys):
    pytest.importorskip("schnitzel_validator", reason="validator not installed")
    if not hasattr(importlib.import_module("schnitzel_validator"), "validate_path"):
        pytest.skip("schnitzel_validator.validate_path not available yet")
    bad = tmp_path / "bad.yaml"
    bad.write_text("schnitzel: 1\nname: bad\nnodes:\n  - {id: a, plugin: no_such_plugin_xyz}\n")
    ns = runpy.run_path(str(GRAPH_LAUNCH))
    opaque = next(e for e in ns["generate_launch_description"]().entities
                  if type(e).__name__ == "OpaqueFunction")
    Recorder.calls = []
    with pytest.raises(ns["GraphInvalid"], match="invalid.*nothing was started"):
        opaque.function(_Ctx(graph=str(bad), plan_dir=str(tmp_path)))
    assert "no_such_plugin_xyz" in capsys.readouterr().err
    assert not [c for c in Recorder.calls if type(c).__name__ in ("Node", "ComposableNodeContainer")]
    assert not (tmp_path / "bad.plan.json").exists()


def real_launch_missing():
    """Why the real launch / launch_ros / composition_interfaces cannot be used here ("" if they can).
    (An import, not find_spec: the build tree puts schnitzel_bringup's launch/ folder on the path,
    which find_spec("launch") reports as a namespace package.)"""
    try:
        import composition_interfaces.srv  # noqa: F401
        import launch_ros.actions  # noqa: F401
        from launch import LaunchService  # noqa: F401
    except ImportError as exc:
        return (f"needs the real launch, launch_ros and composition_interfaces (ROS 2 packages, not on PyPI): "
                f"{exc}")
    return ""


def test_real_launch_ros(tmp_path):
    """With the real launch_ros: the LoadNode requests it sends our container are what the plan says,
    and the container turns them into the same load (params, options, remappings) as its own LoadNode.
    test/runtime/test_real_launch.py runs the file for real (processes, DDS)."""
    missing = real_launch_missing()
    if missing:
        pytest.skip(f"{missing}; the stand-in tests above cover the file")
    from composition_interfaces.srv import LoadNode
    from launch import LaunchContext
    from launch_ros.actions import ComposableNodeContainer, Node
    from launch_ros.actions.load_composable_nodes import get_composable_node_load_request
    from rclpy.parameter import parameter_value_to_python
    from schnitzel_nodes.container import Container

    plan, out = _compile(FOUR, tmp_path)
    plan_json = json.loads(out["plan"].read_text())
    ld = runpy.run_path(str(out["launch"]))["generate_launch_description"]()
    assert [type(e) for e in ld.entities] == [ComposableNodeContainer] * 4 + [Node]
    nodes = {n["id"]: n for n in plan_json["nodes"]}
    context = LaunchContext()
    registry = Registry.from_classes(ALL)
    for action, c in zip(ld.entities, plan_json["containers"]):
        described = action._ComposableNodeContainer__composable_node_descriptions  # no public getter
        assert [d.node_name[0].perform(context) for d in described] == c["nodes"]
        for d in described:
            req = get_composable_node_load_request(d, context)   # what LoadComposableNodes sends
            n = nodes[req.node_name]
            assert (req.plugin_name, req.node_namespace) == (n["plugin"], f"/{plan.graph}")
            assert list(req.remap_rules) == [f"{a}:={b}" for a, b in n["remappings"]]
            extra = {p.name: parameter_value_to_python(p.value) for p in req.extra_arguments}
            assert json.loads(extra["ports_json"]) == n["ports"]
            assert json.loads(extra["parameters_json"]) == n["params"]
            assert (extra["graph"], extra["container"]) == (plan.graph, c["id"])

            # The container's composition_interfaces service, with and without parameters_json
            # (without: the ROS parameters alone, as `ros2 component load -p` would send them).
            for keep_json in (True, False):
                if not keep_json:
                    req.extra_arguments = [p for p in req.extra_arguments if p.name != "parameters_json"]
                loaded = []
                fake = types.SimpleNamespace(registry=registry)
                fake._json_params = lambda plugin, params, f=fake: Container._json_params(f, plugin, params)
                fake.load = lambda *a, **kw: loaded.append(a) or types.SimpleNamespace(
                    get_fully_qualified_name=lambda: n["namespace"] + "/" + n["id"], unique_id=1)
                resp = Container._comp_load(fake, req, LoadNode.Response())
                assert resp.success, resp.error_message
                plugin, name, ns, params, remaps, options = loaded[0]
                assert (plugin, name, ns) == (n["plugin"], n["id"], f"/{plan.graph}")
                assert params == {k: v for k, v in n["params"].items() if keep_json or v is not None}
                assert remaps == dict(n["remappings"])
                assert options == {"ports_json": extra["ports_json"], "graph": plan.graph, "container": c["id"]}

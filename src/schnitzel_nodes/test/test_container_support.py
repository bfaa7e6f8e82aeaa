"""Test plugins and ROS helpers shared by test_container*.py, test_adapter*.py, test_inproc*.py.

No tests here. The plugins are loaded into container subprocesses as
"test_container_support:<Class>" (the test directory is put on PYTHONPATH).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, List, Optional

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, In, Out, Param, PluginSpec
from schnitzel_nodes.base import ComputeLogic, SinkLogic, SourceLogic, TransformLogic

HERE = os.path.dirname(os.path.abspath(__file__))
MOD = "test_container_support"


class Ticker(SourceLogic):
    """Emits {"n": seq} every period_s."""

    spec = PluginSpec(
        name="t_ticker", category=Category.SOURCE, version="1.0.0",
        ports=(Out("out", ["telemetry"], qos="events"),),
        params=(Param("period_s", "float", 0.02, minimum=0.001, maximum=10.0),
                Param("payload_size", "int", 0, minimum=0, maximum=50_000_000),
                Param("stream_id", "str", "")))

    def configure(self) -> None:
        self.tick_period_s = self.params["period_s"]
        self.blob = b"x" * self.params["payload_size"]

    def tick(self) -> None:
        if self.blob:
            self.emit("out", self.next_packet("telemetry", self.blob))
        else:
            self.seq += 1
            self.emit("out", Packet.from_json(self.stream_id, self.seq, "telemetry", {"n": self.seq},
                                              epoch=self.epoch))


class Scale(TransformLogic):
    """Multiplies payload n by factor (live) and tags it with label (not live)."""

    spec = PluginSpec(
        name="t_scale", category=Category.TRANSFORM, version="1.2.0",
        ports=(In("in", ["telemetry"]), Out("out", ["telemetry"])),
        params=(Param("factor", "int", 2, minimum=1, maximum=100, live=True),
                Param("label", "str", "a"),
                Param("tags", "list", [], items="str")))

    def process(self, port: str, packet: Packet) -> Any:
        value = packet.json()
        self.ctx.count("scaled")
        return packet.derive(kind="telemetry", payload=json.dumps(
            {"n": value["n"] * self.params["factor"], "label": self.params["label"]}).encode(),
            content_type="application/json", key_parts=("scaled",))


class Passthrough(TransformLogic):
    """Forwards the very same packet object (for the identity test)."""

    spec = PluginSpec(name="t_pass", category=Category.TRANSFORM, version="1.0.0",
                      ports=(In("in"), Out("out")))

    def process(self, port: str, packet: Packet) -> Any:
        return packet


class Boom(TransformLogic):
    """Raises on every packet."""

    spec = PluginSpec(name="t_boom", category=Category.TRANSFORM, version="1.0.0",
                      ports=(In("in"), Out("out")))

    def process(self, port: str, packet: Packet) -> Any:
        raise RuntimeError(f"boom on {packet.packet_id}")


class SlowCompute(ComputeLogic):
    """Sleeps delay_s per packet (a slow model): its input is latest-only."""

    spec = PluginSpec(name="t_slow", category=Category.COMPUTE, version="1.0.0",
                      ports=(In("in"), Out("out")),
                      params=(Param("delay_s", "float", 0.05, minimum=0.0, maximum=5.0),))

    def process(self, port: str, packet: Packet) -> Any:
        time.sleep(self.params["delay_s"])
        return packet


class Collect(SinkLogic):
    """Keeps what it receives (in-process tests read ``received``)."""

    spec = PluginSpec(name="t_collect", category=Category.SINK, version="1.0.0",
                      ports=(In("in"),))
    instances: List["Collect"] = []

    def configure(self) -> None:
        self.received: List[Packet] = []
        self.ages_ms: List[float] = []   # source stamp -> arrival here
        self.threads = set()
        Collect.instances.append(self)

    def write(self, packet: Packet) -> None:
        self.threads.add(threading.current_thread().name)
        self.ages_ms.append((time.time_ns() - packet.stamp_ns) / 1e6)
        self.received.append(packet)


class FailConfigure(TransformLogic):
    """configure always raises (a missing model file)."""

    spec = PluginSpec(name="t_failcfg", category=Category.TRANSFORM, version="1.0.0",
                      ports=(In("in"), Out("out")))

    def configure(self) -> None:
        raise FileNotFoundError("model.onnx not found")


class Marker(SinkLogic):
    """Appends each lifecycle hook it sees to the file ``path`` (shutdown tests)."""

    spec = PluginSpec(name="t_marker", category=Category.SINK, version="1.0.0", ports=(In("in"),),
                      params=(Param("path", "str"),))

    def _mark(self, what: str) -> None:
        with open(self.params["path"], "a") as f:
            f.write(what + "\n")

    def configure(self) -> None:
        self._mark("configure")

    def activate(self) -> None:
        self._mark("activate")

    def deactivate(self) -> None:
        self._mark("deactivate")

    def cleanup(self) -> None:
        self._mark("cleanup")


def ref(cls: type) -> str:
    return f"{MOD}:{cls.__name__}"


def unique_graph(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def ports_json(outs: Optional[dict] = None, ins: Optional[dict] = None) -> str:
    return json.dumps({"out": outs or {}, "in": ins or {}})


def start_container(graph: str, cid: str = "c1", *extra: str) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-m", "schnitzel_nodes.container", "--graph", graph, "--container", cid, *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    import signal
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


class RosClient:
    """A test-side rclpy node in its own context, spun by a background thread."""

    def __init__(self, name: str = "tester") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"{name}_{uuid.uuid4().hex[:6]}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - shutting down
                if self._stop.is_set():
                    return

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} not available after {timeout} s")
            fut = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not fut.done():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no reply from {name} within {timeout} s")
                time.sleep(0.005)
            return fut.result()
        finally:
            self.node.destroy_client(client)

    def subscribe(self, msg_type: Any, topic: str, qos: Any = 10) -> List[Any]:
        got: List[Any] = []
        self.node.create_subscription(msg_type, topic, got.append, qos)
        return got

    # --- schnitzel container helpers ---
    def load(self, graph: str, cid: str, plugin: str, name: str, params: Optional[dict] = None,
             options: Optional[dict] = None, remappings: Optional[dict] = None) -> Any:
        from schnitzel_msgs.msg import KeyValue
        from schnitzel_msgs.srv import LoadNode
        req = LoadNode.Request(plugin=plugin, node_name=name, node_namespace=f"/{graph}",
                               parameters_json=json.dumps(params or {}))
        req.options = [KeyValue(key=k, value=v) for k, v in (options or {}).items()]
        req.remappings = [KeyValue(key=k, value=v) for k, v in (remappings or {}).items()]
        return self.call(LoadNode, f"/{graph}/_containers/{cid}/load_node", req)

    def transition(self, full_name: str, label: str) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState
        ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP,
               "shutdown": Transition.TRANSITION_ACTIVE_SHUTDOWN}
        req = ChangeState.Request()
        req.transition.id = ids[label]
        return bool(self.call(ChangeState, f"{full_name}/change_state", req).success)

    def state(self, full_name: str) -> str:
        from lifecycle_msgs.srv import GetState
        return self.call(GetState, f"{full_name}/get_state", GetState.Request()).current_state.label

    def set_param(self, full_name: str, name: str, value: Any) -> Any:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter
        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self.call(SetParameters, f"{full_name}/set_parameters", req).results[0]

    def get_param(self, full_name: str, name: str) -> Any:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python
        res = self.call(GetParameters, f"{full_name}/get_parameters", GetParameters.Request(names=[name]))
        return parameter_value_to_python(res.values[0])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


class InprocBox:
    """A Container in this process, spun by a background thread."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from schnitzel_nodes.container import Container

        self.graph = unique_graph("ti")
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.container = Container(self.graph, "ip", self.executor, context=self.context)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.02)

    def load(self, cls: type, name: str, params: Any = None, outs: Any = None, ins: Any = None) -> Any:
        return self.container.load(f"{cls.__module__}:{cls.__name__}", name, "", params or {}, None,
                                   {"ports_json": ports_json(outs, ins)})

    def topic(self, node: str, port: str = "out") -> str:
        return f"/{self.graph}/{node}/{port}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.container.destroy()
        self.executor.shutdown()
        self.context.try_shutdown()

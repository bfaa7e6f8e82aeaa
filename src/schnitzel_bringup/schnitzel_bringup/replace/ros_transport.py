"""The hot-replacement protocol's transport over ROS 2 services (rclpy).

:class:`RosTransport` implements :class:`~.protocol.ReplaceTransport` with the containers'
schnitzel_msgs services and the nodes' lifecycle and parameter services; the protocol
itself (``protocol.py``) never imports rclpy.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

from .protocol import ReplaceTransport, StepFailed

_TRANSITIONS = {"configure": 1, "cleanup": 2, "activate": 3, "deactivate": 4}


def _ros_value(value: Any) -> Any:
    """A parameter value as the adapter declares it: scalars as such, list/dict as JSON text
    (schnitzel_nodes.ros.params)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


class RosTransport(ReplaceTransport):
    """The protocol over ROS services, from a node the caller spins (e.g. the manager's).

    Containers: ``/<graph>/_containers/<id>/{load_node,unload_node,list_nodes}``
    (schnitzel_msgs); nodes: ``<full name>/change_state`` (lifecycle_msgs) and
    ``<full name>/set_parameters_atomically`` (rcl_interfaces).

    The calls wait on futures, so the node must be spun by another thread (a
    MultiThreadedExecutor or a background spin) while the protocol runs.
    """

    #: How long a failed transition waits for the node's NodeStatus to say why.
    REASON_WAIT_S = 1.5

    def __init__(self, node: Any, graph: str,
                 container_service: Optional[Callable[[str, str], str]] = None,
                 watch_status: bool = True, callback_group: Any = None) -> None:
        self.node = node
        self.graph = graph
        # the group of the service clients: a reentrant one lets replies arrive while a
        # service callback of the same node waits on them (HotSwapServer)
        self.callback_group = callback_group
        self._svc = container_service or (lambda cid, what: f"/{graph}/_containers/{cid}/{what}")
        self._clients: Dict[Tuple[str, str], Any] = {}
        # node id -> (last_error, monotonic time received): the reason behind a refused transition
        self._errors: Dict[str, Tuple[str, float]] = {}
        self._status_sub = None
        if watch_status:
            from schnitzel_msgs.msg import NodeStatus

            self._status_sub = node.create_subscription(NodeStatus, f"/{graph}/_status/nodes", self._on_status, 50,
                                                        callback_group=self._status_group())

    def _status_group(self) -> Any:
        from rclpy.callback_groups import ReentrantCallbackGroup

        return ReentrantCallbackGroup()

    def _on_status(self, msg: Any) -> None:
        self._errors[msg.node_id] = (msg.last_error, time.monotonic())

    def _client(self, srv_type: Any, name: str) -> Any:
        key = (srv_type.__name__, name)
        c = self._clients.get(key)
        if c is None:
            c = self._clients[key] = self.node.create_client(srv_type, name,
                                                              callback_group=self.callback_group)
        return c

    def _call(self, srv_type: Any, name: str, request: Any, timeout_s: float) -> Any:
        client = self._client(srv_type, name)
        deadline = time.monotonic() + timeout_s
        if not client.wait_for_service(timeout_sec=max(0.0, deadline - time.monotonic())):
            raise StepFailed(f"service {name} is not available (waited {timeout_s:g} s)")
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(max(0.0, deadline - time.monotonic())):
            future.cancel()
            raise StepFailed(f"{name} did not answer within {timeout_s:g} s")
        if future.exception() is not None:
            raise StepFailed(f"{name} failed: {future.exception()}")
        return future.result()

    def load_node(self, container, plugin, node_name, namespace, parameters_json, options, remappings, timeout_s):
        from schnitzel_msgs.msg import KeyValue
        from schnitzel_msgs.srv import LoadNode

        req = LoadNode.Request(plugin=plugin, node_name=node_name, node_namespace=namespace,
                               parameters_json=parameters_json)
        req.options = [KeyValue(key=k, value=str(v)) for k, v in sorted(options.items())]
        req.remappings = [KeyValue(key=k, value=v) for k, v in sorted(remappings.items())]
        resp = self._call(LoadNode, self._svc(container, "load_node"), req, timeout_s)
        if not resp.success:
            raise StepFailed(resp.error_message or "load_node refused without a reason")
        return resp.full_node_name, int(resp.unique_id)

    def unload_node(self, container, unique_id, node_name, timeout_s):
        from schnitzel_msgs.srv import UnloadNode

        resp = self._call(UnloadNode, self._svc(container, "unload_node"),
                          UnloadNode.Request(node_name=node_name, unique_id=int(unique_id)), timeout_s)
        if not resp.success:
            raise StepFailed(resp.error_message or "unload_node refused without a reason")

    def list_nodes(self, container, timeout_s):
        from schnitzel_msgs.srv import ListNodes

        resp = self._call(ListNodes, self._svc(container, "list_nodes"), ListNodes.Request(), timeout_s)
        return list(resp.full_node_names)

    def change_state(self, full_node_name, transition, timeout_s):
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        req = ChangeState.Request(transition=Transition(id=_TRANSITIONS[transition]))
        resp = self._call(ChangeState, f"{full_node_name}/change_state", req, timeout_s)
        if not resp.success:
            raise StepFailed(f"{transition} refused by the node{self._last_error(full_node_name)}")

    def _last_error(self, full_node_name: str) -> str:
        """The node's own reason, from the next NodeStatus it publishes (best effort; the
        container publishes one per node and second)."""
        if self._status_sub is None:
            return ""
        node_id = full_node_name.rsplit("/", 1)[-1]
        since = time.monotonic()
        deadline = since + self.REASON_WAIT_S
        while time.monotonic() < deadline:
            err, at = self._errors.get(node_id, ("", 0.0))
            if at >= since and err:
                return f": {err}"
            time.sleep(0.05)
        err, _ = self._errors.get(node_id, ("", 0.0))
        return f": {err}" if err else ""

    def set_parameters(self, full_node_name, params, timeout_s):
        from rcl_interfaces.srv import SetParametersAtomically
        from rclpy.parameter import Parameter

        req = SetParametersAtomically.Request(
            parameters=[Parameter(k, value=_ros_value(v)).to_parameter_msg() for k, v in sorted(params.items())])
        resp = self._call(SetParametersAtomically, f"{full_node_name}/set_parameters_atomically", req, timeout_s)
        if not resp.result.successful:
            raise StepFailed(resp.result.reason or "refused without a reason")

    def wait_inputs_matched(self, full_node_name, ports_json, timeout_s):
        try:
            ports = json.loads(ports_json) if ports_json else {}
        except json.JSONDecodeError:
            return "ports_json unreadable; not waited"
        topics = sorted({e["topic"] for edges in (ports.get("in") or {}).values() for e in edges
                         if e.get("transport", "dds") != "inproc" and e.get("topic")})
        if not topics:
            return "no DDS inputs"
        ns, _, name = full_node_name.rpartition("/")
        ns = ns or "/"
        deadline = time.monotonic() + timeout_s
        missing = topics
        while time.monotonic() < deadline:
            missing = [t for t in topics if not any(
                i.node_name == name and i.node_namespace == ns
                for i in self.node.get_subscriptions_info_by_topic(t))]
            if not missing:
                return f"{len(topics)} DDS input(s) matched"
            time.sleep(0.02)
        raise StepFailed(f"no subscription on {', '.join(missing)} after {timeout_s:g} s")

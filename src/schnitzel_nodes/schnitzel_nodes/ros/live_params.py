"""A NodeAdapter's ROS parameters (docs/runtime.md, "Parameters"): declared from the plugin's
schema at load, read and checked at configure, and live changes checked and applied by the
logic before the parameter request is answered.

A mixin of NodeAdapter: it uses the node's ``spec``, ``logic``, ``node_id``, ``_declaring``,
``_run_lock`` and ``_sync_timer``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping

from rcl_interfaces.msg import IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.parameter import Parameter

from schnitzel_core.plugin import NodeLogic

from . import params as P

MAX_ERRORS_PARAM = P.RESERVED_PREFIX + "max_consecutive_errors"


class ParamsMixin:
    """Declare, read and live-change the node's parameters."""

    def _declare_params(self, values: Mapping[str, Any], max_errors: int) -> None:
        for p in self.spec.params:
            if p.name in values:
                self.declare_parameter(p.name, P.to_ros(p, values[p.name]), P.descriptor(p))
        d = ParameterDescriptor(
            name=MAX_ERRORS_PARAM, type=ParameterType.PARAMETER_INTEGER,
            description="consecutive callback failures after which the node goes to the error state",
            integer_range=[IntegerRange(from_value=1, to_value=1_000_000, step=0)])
        self.declare_parameter(MAX_ERRORS_PARAM, int(max_errors), d)

    def current_params(self) -> Dict[str, Any]:
        """The node's params as the logic sees them (ROS values decoded and checked)."""
        raw: Dict[str, Any] = {}
        for p in self.spec.params:
            if self.has_parameter(p.name):
                value = self.get_parameter(p.name).value
                if value is not None:
                    raw[p.name] = P.from_ros(p, value)
        return P.check_params(self.spec, raw)

    @property
    def max_consecutive_errors(self) -> int:
        return int(self.get_parameter(MAX_ERRORS_PARAM).value)

    def _on_set_params(self, parameters: List[Parameter]) -> SetParametersResult:
        """Answer a parameter request only once its outcome is known (docs/runtime.md, "Parameters").

        A configured node (inactive or active) takes only ``live`` parameters, and takes them
        at once: the plugin's ``check_params`` on the merged values, then ``on_params``, both
        serialised with its other callbacks, before the answer. Whatever either raises refuses
        the whole request with the reason, so the node, the ROS parameter store (rclpy stores
        nothing on a refusal) and whoever asked (``schnitzel replace``) see no change. An
        unconfigured node takes any parameter; ``configure`` reads it.
        """
        if self._declaring:
            return SetParametersResult(successful=True)
        logic = self.logic
        changed: Dict[str, Any] = {}
        for param in parameters:
            if param.name == MAX_ERRORS_PARAM:
                if not isinstance(param.value, int) or isinstance(param.value, bool) or param.value < 1:
                    return SetParametersResult(successful=False,
                                               reason=f"{MAX_ERRORS_PARAM} must be an integer >= 1")
                continue
            if param.name.startswith(P.RESERVED_PREFIX) or param.name in P.FOREIGN:
                continue
            spec_p = self.spec.param(param.name)
            if spec_p is None:
                return SetParametersResult(successful=False,
                                           reason=f"plugin {self.spec.name!r} has no parameter {param.name!r}")
            try:
                value = P.check_value(spec_p, P.from_ros(spec_p, param.value))
            except P.ParamError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            if logic is not None and not spec_p.live:
                return SetParametersResult(
                    successful=False,
                    reason=(f"parameter {param.name!r} is not live: it cannot change while node "
                            f"{self.node_id!r} is configured (replace the node, or clean it up first)"))
            changed[param.name] = value
        if logic is None or not changed:
            return SetParametersResult(successful=True)
        try:
            self._apply_live(logic, changed)
        except Exception as exc:  # noqa: BLE001 - the plugin refused: nothing changes
            why = str(exc) or type(exc).__name__
            self.get_logger().warning(f"node {self.node_id!r}: parameter change refused: {why}")
            return SetParametersResult(successful=False, reason=f"node {self.node_id!r} refused the change: {why}")
        return SetParametersResult(successful=True)

    def _apply_live(self, logic: NodeLogic, changed: Dict[str, Any]) -> None:
        """check_params(merged) then on_params(changed), under the run lock; raises on refusal."""
        with self._run_lock:
            merged = dict(logic.params)
            merged.update(changed)
            logic.check_params(merged)
            before = dict(logic.params)
            try:
                logic.on_params(changed)
            except Exception:
                # an on_params that raised half way: put the values back (its own state is its job)
                logic.params.clear()
                logic.params.update(before)
                raise
        self._sync_timer()   # e.g. rate_hz: the new period applies from the next tick

"""Hot replacement: swap a node of a running graph with no restart and no packet missed.

One module per job (docs/hot-replacement.md has the protocol and its guarantees):

- :mod:`.protocol` -- the protocol itself (``ReplaceProtocol``, its ``StepRunner``, the
  ``ReplaceTransport`` interface, data and helpers); pure Python, runs against fakes;
- :mod:`.ros_transport` -- ``RosTransport``, the transport over ROS 2 services;
- :mod:`.apply` -- ``apply_actions``: carry out a graph difference (``schnitzel apply``);
- :mod:`.services` -- ``HotSwap`` (ReplaceNode / ApplyGraph logic) and ``HotSwapServer``
  (the lifecycle manager's ``~/replace_node`` and ``~/apply_graph`` services).

Everything is importable from ``schnitzel_bringup.replace`` as well.
"""
from .apply import ApplyResult, apply_actions
from .protocol import (DEFAULT_DRAIN_S, DEFAULT_OVERLAP_S, DEFAULT_TIMEOUT_S, OPT_HANDOVER, OPT_NODE_ID,
                       OPT_REPLACES, NodeLoad, NodeRef, ReplaceError, ReplaceProtocol, ReplaceResult,
                       ReplaceTransport, Step, StepFailed, StepRunner, base_name, changed_params,
                       load_from_plan_node, merge_params, temp_name, validate_replacement)
from .ros_transport import RosTransport
from .services import HotSwap, HotSwapServer

__all__ = [
    "ApplyResult", "DEFAULT_DRAIN_S", "DEFAULT_OVERLAP_S", "DEFAULT_TIMEOUT_S", "HotSwap", "HotSwapServer",
    "NodeLoad", "NodeRef", "OPT_HANDOVER", "OPT_NODE_ID", "OPT_REPLACES", "ReplaceError", "ReplaceProtocol",
    "ReplaceResult", "ReplaceTransport", "RosTransport", "Step", "StepFailed", "StepRunner", "apply_actions",
    "base_name", "changed_params", "load_from_plan_node", "merge_params", "temp_name", "validate_replacement",
]

"""The lifecycle manager's two state machines as tables: pure Python, no rclpy.

``GRAPH_TRANSITIONS``: the graph's state as the manager reports it (GraphStatus ``state``,
the status file, the live page). The manager moves only along these edges; any other move is a
bug and raises :class:`IllegalTransition` (nav2's lifecycle manager keeps the same discipline)::

    STARTING -> WAITING_CONTAINERS -> LOADING -> CONFIGURING -> ACTIVATING -> ACTIVE
    ACTIVE <-> RECOVERING        a container came back empty / a node failed: reload just those
    any non-final -> STOPPING    SIGINT / SIGTERM: ordered tear-down
    STOPPING -> FINISHED         the tear-down is done
    any -> ERROR                 bring-up failed, a node's ``overflow: error``, a manager bug
    ERROR -> STOPPING -> ERROR   a failed run is still torn down in order, and stays failed

Staying in a state (a new message) is always allowed. ERROR is sticky: an error can be raised
from the executor thread (a node's ``overflow: error``) while the bring-up or a recovery is still
under way on the main thread; that thread's next step (CONFIGURING, ACTIVE, ...) then leaves the
graph in ERROR instead of clearing it, and only the tear-down moves on (to STOPPING).

``NODE_TRANSITIONS``: the standard ROS 2 lifecycle transitions the manager asks each node for
(``lifecycle_msgs/Transition`` ids), with the primary state each starts from and ends in. The
node itself refuses a transition from any other state; the manager reads the table to know which
call to make and what state to record.
"""
from __future__ import annotations

import enum
from typing import Dict, FrozenSet, NamedTuple


class MState(str, enum.Enum):
    STARTING = "starting"
    WAITING_CONTAINERS = "waiting_containers"
    LOADING = "loading"
    CONFIGURING = "configuring"
    ACTIVATING = "activating"
    ACTIVE = "active"
    RECOVERING = "recovering"
    STOPPING = "stopping"
    FINISHED = "finished"
    ERROR = "error"


_S = MState
GRAPH_TRANSITIONS: Dict[MState, FrozenSet[MState]] = {
    _S.STARTING: frozenset({_S.WAITING_CONTAINERS, _S.STOPPING, _S.ERROR}),
    _S.WAITING_CONTAINERS: frozenset({_S.LOADING, _S.STOPPING, _S.ERROR}),
    _S.LOADING: frozenset({_S.CONFIGURING, _S.STOPPING, _S.ERROR}),
    _S.CONFIGURING: frozenset({_S.ACTIVATING, _S.STOPPING, _S.ERROR}),
    _S.ACTIVATING: frozenset({_S.ACTIVE, _S.STOPPING, _S.ERROR}),
    _S.ACTIVE: frozenset({_S.RECOVERING, _S.STOPPING, _S.ERROR}),
    _S.RECOVERING: frozenset({_S.ACTIVE, _S.STOPPING, _S.ERROR}),
    _S.STOPPING: frozenset({_S.FINISHED, _S.ERROR}),
    # A run that finished may still learn of a fatal error late (a node's last heartbeat
    # reporting an overflow): the run then ends failed, never the other way round.
    _S.FINISHED: frozenset({_S.ERROR}),
    _S.ERROR: frozenset({_S.STOPPING}),
}


#: The moves of the bring-up and of a recovery (main thread), which a sticky ERROR ignores.
_BRING_UP = frozenset({_S.WAITING_CONTAINERS, _S.LOADING, _S.CONFIGURING, _S.ACTIVATING, _S.ACTIVE,
                       _S.RECOVERING})


class IllegalTransition(RuntimeError):
    """The manager tried a move its state machine does not have (a bug in the manager)."""


def graph_transition(old: MState, new: MState) -> MState:
    """The state the graph takes when the manager moves it from ``old`` to ``new``: ``new``, or
    ``old`` when ``old`` is a sticky ERROR; :class:`IllegalTransition` for any other move
    outside ``GRAPH_TRANSITIONS``."""
    if old == MState.ERROR and new in _BRING_UP:
        return old
    if new != old and new not in GRAPH_TRANSITIONS[old]:
        allowed = ", ".join(sorted(s.value for s in GRAPH_TRANSITIONS[old])) or "nothing"
        raise IllegalTransition(f"graph state {old.value} -> {new.value} is not a transition of the "
                                f"lifecycle manager (from {old.value}: {allowed})")
    return new


class NodeTransition(NamedTuple):
    id: int         # lifecycle_msgs/Transition id
    start: str      # the primary state it starts from
    goal: str       # the primary state it ends in


NODE_TRANSITIONS: Dict[str, NodeTransition] = {
    "configure": NodeTransition(1, "unconfigured", "inactive"),
    "activate": NodeTransition(3, "inactive", "active"),
    "deactivate": NodeTransition(4, "active", "inactive"),
    "cleanup": NodeTransition(2, "inactive", "unconfigured"),
    # TRANSITION_UNCONFIGURED_SHUTDOWN: the tear-down cleans a node up before shutting it down
    "shutdown": NodeTransition(5, "unconfigured", "finalized"),
}

"""The lifecycle manager's state machines as tables (schnitzel_bringup.lifecycle_table)."""
import pytest
from lifecycle_msgs.msg import State, Transition

from schnitzel_bringup.lifecycle_table import (GRAPH_TRANSITIONS, NODE_TRANSITIONS, IllegalTransition, MState,
                                               graph_transition)

S = MState


def walk(*states):
    cur = states[0]
    for s in states[1:]:
        cur = graph_transition(cur, s)
        assert cur == s
    return cur


def test_the_documented_paths_are_transitions():
    walk(S.STARTING, S.WAITING_CONTAINERS, S.LOADING, S.CONFIGURING, S.ACTIVATING, S.ACTIVE,
         S.RECOVERING, S.ACTIVE, S.RECOVERING, S.ACTIVE, S.STOPPING, S.FINISHED)
    walk(S.STARTING, S.WAITING_CONTAINERS, S.ERROR, S.STOPPING, S.ERROR)
    for s in S:
        if s not in (S.STOPPING, S.FINISHED):
            assert S.STOPPING in GRAPH_TRANSITIONS[s], s      # a stop request is honoured anywhere
        assert graph_transition(s, s) == s                     # a new message, same state


@pytest.mark.parametrize("old,new", [(S.FINISHED, S.ACTIVE), (S.STOPPING, S.ACTIVE), (S.ACTIVE, S.LOADING),
                                     (S.ERROR, S.FINISHED), (S.STARTING, S.ACTIVE), (S.FINISHED, S.STOPPING),
                                     (S.STOPPING, S.RECOVERING)])
def test_a_move_outside_the_table_raises(old, new):
    with pytest.raises(IllegalTransition, match=f"{old.value} -> {new.value}"):
        graph_transition(old, new)


def test_error_is_sticky_against_the_bring_up_but_not_the_tear_down():
    for s in (S.WAITING_CONTAINERS, S.LOADING, S.CONFIGURING, S.ACTIVATING, S.ACTIVE, S.RECOVERING):
        assert graph_transition(S.ERROR, s) == S.ERROR
    assert graph_transition(S.ERROR, S.STOPPING) == S.STOPPING
    assert graph_transition(S.FINISHED, S.ERROR) == S.ERROR    # a fatal error learnt late


def test_node_transitions_are_the_ros_lifecycle_ones_and_chain_from_unconfigured_to_finalized():
    assert NODE_TRANSITIONS["configure"].id == Transition.TRANSITION_CONFIGURE
    assert NODE_TRANSITIONS["activate"].id == Transition.TRANSITION_ACTIVATE
    assert NODE_TRANSITIONS["deactivate"].id == Transition.TRANSITION_DEACTIVATE
    assert NODE_TRANSITIONS["cleanup"].id == Transition.TRANSITION_CLEANUP
    assert NODE_TRANSITIONS["shutdown"].id == Transition.TRANSITION_UNCONFIGURED_SHUTDOWN
    labels = {State.PRIMARY_STATE_UNCONFIGURED: "unconfigured", State.PRIMARY_STATE_INACTIVE: "inactive",
              State.PRIMARY_STATE_ACTIVE: "active", State.PRIMARY_STATE_FINALIZED: "finalized"}
    state = "unconfigured"
    for verb in ("configure", "activate", "deactivate", "cleanup", "shutdown"):
        spec = NODE_TRANSITIONS[verb]
        assert spec.start == state and spec.goal in labels.values()
        state = spec.goal
    assert state == "finalized"

"""Fixtures for the runtime system tests; the helpers live in rt_helpers.py (a module name
of its own, so it never collides with test/conftest.py)."""
import pytest

from rt_helpers import Tagged


@pytest.fixture
def tagged(ros_env):
    t = Tagged(ros_env)
    yield t
    t.reap()

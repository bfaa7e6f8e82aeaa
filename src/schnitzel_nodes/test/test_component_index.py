"""`ros2 component types` lists the schnitzel plugins: the build registers them in the ament index
(resource type ``rclcpp_components``, what ros2cli's ``ros2 component types`` reads), one line
``<package>::<plugin>;<marker>`` per registered plugin, and every name listed there is one the
container can load (``ros2 component load <container> schnitzel_nodes schnitzel_nodes::<plugin>``)."""
from ament_index_python.resources import get_resource, get_resources
from schnitzel_core.registry import load_registry

from schnitzel_nodes.ros.plugins import resolve_plugin

PACKAGE = "schnitzel_nodes"


def _types():
    """What ros2component.api.get_package_component_types returns: the part before ';'."""
    text, _prefix = get_resource("rclcpp_components", PACKAGE)
    return [line.split(";")[0] for line in text.splitlines()]


def test_the_ament_index_lists_every_registered_plugin():
    assert PACKAGE in get_resources("rclcpp_components")
    registered = {f"{PACKAGE}::{e.name}" for e in load_registry().entries() if e.dist == "schnitzel-nodes"}
    assert registered                                   # the built-in plugins are registered
    listed = _types()
    assert len(listed) == len(set(listed))
    assert set(listed) == registered


def test_every_listed_name_is_loadable_by_the_container():
    for type_name in _types():
        cls = resolve_plugin(type_name)                 # what the container's load_node does with it
        assert cls.spec.name == type_name.split("::", 1)[1]

"""schnitzel's ROS side of a node: the lifecycle adapter, QoS mapping, the in-process
transport and parameters. See docs/runtime.md.

Importing this package imports rclpy; node logic never does.
"""
from .adapter import LoadError, NodeAdapter
from .inproc import InprocBus
from .plugins import PluginError, resolve_plugin
from .qos import to_profile

__all__ = ["InprocBus", "LoadError", "NodeAdapter", "PluginError", "resolve_plugin", "to_profile"]

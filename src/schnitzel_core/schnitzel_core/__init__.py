"""schnitzel_core: pure-Python contracts of schnitzel (no rclpy import).

Packet model and codecs, graph model and loader, plugin registry and API
versions, durable store, retry and circuit-breaker primitives, metric names.
"""
__version__ = "0.1.0"

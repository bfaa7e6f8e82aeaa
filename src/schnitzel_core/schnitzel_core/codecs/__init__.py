"""Codecs between schnitzel's packet model and the formats around it.

- :mod:`schnitzel_core.codecs.image`: numpy arrays ⇄ sensor_msgs/Image fields ⇄ raw-image packets.
- :mod:`schnitzel_core.codecs.ros`: :class:`~schnitzel_core.packet.Packet` ⇄ schnitzel_msgs/StreamPacket.
- :mod:`schnitzel_core.codecs.legacy`: packets ⇄ the legacy event JSON (event protocol v0.2).

Nothing here imports rclpy. Generated message classes (sensor_msgs, schnitzel_msgs) are
imported lazily inside the functions that build messages; they do not need rclpy.
The submodules are not imported here so that ``import schnitzel_core.codecs.legacy``
does not pay for numpy.
"""
from __future__ import annotations


class CodecError(ValueError):
    """Input a codec cannot convert; the message names what is wrong and what was expected."""


__all__ = ["CodecError"]

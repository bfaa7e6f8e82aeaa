"""Zenoh edges of a NodeAdapter (ros/zenoh_link.py; docs/multi-host.md).

A mixin of NodeAdapter: it uses the node's ``spec``, ``_outs``, ``_ins``, ``_ports_decl``,
``ack_topic``, ``_on_ack_msg`` and ``_on_msg``.
"""
from __future__ import annotations

from typing import Any

from schnitzel_msgs.msg import DeliveryAck

from .delivery import ACK_QOS
from .qos import to_profile


class ZenohMixin:
    """Creates and tears down the Zenoh subscriptions of a node's zenoh edges; sends on them."""

    def _create_zenoh_io(self) -> None:
        """Zenoh edges: the queue's outputs also listen for ``<key>/ack``; an input takes the
        key's CDR bytes as if from DDS and sends the sinks' DDS acknowledgements for its sending
        queue back over Zenoh."""
        keys = [k for o in self._outs.values() for k in o.zenoh_keys]
        zins = [e for e in self._ins if e.transport == "zenoh"]
        if not keys and not zins:
            return
        from rclpy.serialization import deserialize_message, serialize_message

        from . import zenoh_link
        self._zlink = zenoh_link.Link.get(zenoh_link.settings_of(self._ports_decl))
        self._zsubs = []
        if self.spec.durable_queue:
            for k in keys:
                self._zsubs.append(self._zlink.subscribe(
                    zenoh_link.ack_key(k), lambda data: self._on_ack_msg(deserialize_message(data, DeliveryAck))))
        for edge in zins:
            conv = edge.wire.from_msg
            cls = edge.wire.msg_cls
            self._zsubs.append(self._zlink.subscribe(
                edge.key, lambda data, port=edge.port, conv=conv, cls=cls:
                self._on_msg(port, deserialize_message(data, cls), conv)))
            akey, src, link = zenoh_link.ack_key(edge.key), edge.src, self._zlink
            self._zack_subs = getattr(self, "_zack_subs", [])
            self._zack_subs.append(super().create_subscription(
                DeliveryAck, self.ack_topic,
                lambda msg, akey=akey, src=src, link=link: link.put(akey, serialize_message(msg))
                if msg.queue_id == src else None, to_profile(ACK_QOS)))
        self._zserialize = serialize_message

    def _destroy_zenoh_io(self) -> None:
        link = getattr(self, "_zlink", None)
        if link is None:
            return
        for sid in getattr(self, "_zsubs", []):
            link.unsubscribe(sid)
        for sub in getattr(self, "_zack_subs", []):
            self.destroy_subscription(sub)
        self._zsubs, self._zack_subs, self._zlink = [], [], None

    def _send_zenoh(self, out: Any, packet: Any) -> None:
        if out.zenoh_keys and getattr(self, "_zlink", None) is not None:
            data = self._zserialize(out.wire.to_msg(packet))
            for k in out.zenoh_keys:
                self._zlink.put(k, data)   # link down: goes nowhere, the queue's lease re-sends it

"""Topic templates for the broker sinks (MQTT, Kafka): ``fleet/{stream_id}/{kind}``.

A template is text with ``{field}`` placeholders; a field is one of the packet's identity
fields (``stream_id``, ``kind``, ``frame_id``, ``schema``, ``epoch``, ``seq``) or
``meta.NAME`` (the packet's meta entry NAME). The template is checked once, when the graph is
validated and when the sink is configured; each packet's topic is rendered at delivery and a
packet that cannot fill it (a missing meta entry, a value with a character the protocol
forbids) is rejected with the reason, so it goes to the dead-letter table instead of blocking
the queue.
"""
from __future__ import annotations

import json
import re
from typing import Callable, List, Optional, Tuple

from .packet import Packet

FIELDS = ("stream_id", "kind", "frame_id", "schema", "epoch", "seq")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_META_NAME = re.compile(r"^meta\.([A-Za-z0-9_.:-]+)$")


class TopicError(ValueError):
    """A template or a rendered topic the protocol would refuse (the message says why)."""


Part = Tuple[str, Optional[str]]   # (literal text, field or None)


class TopicTemplate:
    """A parsed template; ``render(packet)`` gives the topic or raises TopicError."""

    def __init__(self, template: str, *, protocol: str, forbidden: str = "",
                 check: Optional[Callable[[str], Optional[str]]] = None) -> None:
        self.template = template
        self.protocol = protocol
        self.forbidden = forbidden
        self._check = check
        self.parts: List[Part] = []
        if not isinstance(template, str) or not template:
            raise TopicError(f"{protocol} topic template is empty")
        pos = 0
        for m in _PLACEHOLDER.finditer(template):
            self._literal(template[pos:m.start()])
            name = m.group(1)
            if name not in FIELDS and not _META_NAME.match(name):
                raise TopicError(f"{protocol} topic template {template!r}: unknown field {{{name}}} "
                                 f"(fields: {', '.join(FIELDS)}, or meta.NAME)")
            self.parts.append(("", name))
            pos = m.end()
        self._literal(template[pos:])
        if "{" in "".join(p for p, _ in self.parts) or "}" in "".join(p for p, _ in self.parts):
            raise TopicError(f"{protocol} topic template {template!r}: unbalanced brace")
        if all(f is None for _, f in self.parts):
            self._fixed: Optional[str] = self._valid(template)
        else:
            self._fixed = None

    def _literal(self, text: str) -> None:
        bad = sorted({c for c in text if c in self.forbidden or c == "\x00"})
        if bad:
            raise TopicError(f"{self.protocol} topic template {self.template!r} contains "
                             f"{', '.join(repr(c) for c in bad)}, which a published topic may not contain")
        if text:
            self.parts.append((text, None))

    def _valid(self, topic: str) -> str:
        bad = sorted({c for c in topic if c in self.forbidden or c == "\x00"})
        if bad:
            raise TopicError(f"topic {topic!r} contains {', '.join(repr(c) for c in bad)}, which a "
                             f"published {self.protocol} topic may not contain")
        if self._check is not None:
            why = self._check(topic)
            if why:
                raise TopicError(f"topic {topic!r}: {why}")
        return topic

    @property
    def fields(self) -> List[str]:
        return [f for _, f in self.parts if f is not None]

    def render(self, p: Packet) -> str:
        if self._fixed is not None:
            return self._fixed
        out = []
        for text, field in self.parts:
            if field is None:
                out.append(text)
            elif field.startswith("meta."):
                name = field[5:]
                if name not in p.meta:
                    raise TopicError(f"packet {p.packet_id} has no meta {name!r} for the topic template "
                                     f"{self.template!r}")
                out.append(str(p.meta[name]))
            else:
                out.append(str(getattr(p, field)))
        return self._valid("".join(out))


# --------------------------------------------------------------- protocol rules
def _mqtt_check(topic: str) -> Optional[str]:
    if topic.startswith("$"):
        return "topics starting with '$' are reserved for the broker ($SYS, ...)"
    if len(topic.encode("utf-8")) > 65535:
        return "longer than MQTT's 65,535 bytes"
    return None


_KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _kafka_check(topic: str) -> Optional[str]:
    if topic in (".", ".."):
        return "'.' and '..' are not valid Kafka topic names"
    if not _KAFKA_TOPIC.match(topic):
        return "a Kafka topic is 1-249 characters of ASCII letters, digits, '.', '_' and '-'"
    return None


def mqtt_template(template: str) -> TopicTemplate:
    """MQTT: no wildcards (+ #) in a published topic, not '$...'."""
    return TopicTemplate(template, protocol="MQTT", forbidden="+#", check=_mqtt_check)


def kafka_template(template: str) -> TopicTemplate:
    """Kafka: 1-249 of [A-Za-z0-9._-]."""
    t = TopicTemplate(template, protocol="Kafka", check=_kafka_check)
    for text, _ in t.parts:
        bad = sorted({c for c in text if not re.match(r"[A-Za-z0-9._-]", c)})
        if bad:
            raise TopicError(f"Kafka topic template {template!r} contains {', '.join(repr(c) for c in bad)}: a "
                             "Kafka topic is ASCII letters, digits, '.', '_' and '-'")
    return t


def message(template: TopicTemplate, p: Packet) -> Tuple[str, bytes]:
    """A broker sink's message for ``p``: its topic and the packet as JSON (http_sink's body).
    Raises ValueError (a TopicError for the topic) with the reason a retry cannot fix."""
    topic = template.render(p)
    try:
        return topic, json.dumps(p.to_dict(), separators=(",", ":")).encode()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cannot encode packet as JSON: {exc}") from None

"""Every check's stable code, severity and one-line title.

Codes never change meaning and are never reused (docs/validation.md lists them;
a test keeps that page and this table equal). Ranges: SCH0xx the file, SCH1xx
its shape, SCH2xx names and placement, SCH3xx plugins and parameters, SCH4xx
edges, SCH5xx QoS and transports, SCH6xx the graph as a whole, SCH7xx placement on hosts, SCH8xx
the control plane.
"""
from __future__ import annotations

from typing import Dict, Tuple

ERROR = "error"
WARNING = "warning"

CODES: Dict[str, Tuple[str, str]] = {
    # the file
    "SCH000": (ERROR, "internal error in the validator (please report it)"),
    "SCH001": (ERROR, "file cannot be read"),
    "SCH002": (ERROR, "not YAML (syntax error or not UTF-8 text)"),
    "SCH003": (ERROR, "more than one YAML document in the file"),
    "SCH004": (ERROR, "unsupported YAML construct (tag, merge key, nesting too deep)"),
    # shape
    "SCH101": (ERROR, "the document is not a mapping (or the file is empty)"),
    "SCH102": (ERROR, "missing required key"),
    "SCH103": (ERROR, "unknown key"),
    "SCH104": (ERROR, "wrong type"),
    "SCH105": (ERROR, "unsupported spec version"),
    "SCH106": (ERROR, "value not allowed (transport, restart policy, negative number)"),
    "SCH107": (ERROR, "environment variable not set and no default given"),
    "SCH108": (ERROR, "malformed ${...} interpolation"),
    "SCH109": (ERROR, "duplicate key in a mapping"),
    "SCH110": (ERROR, "edge endpoint not written node.port"),
    "SCH111": (ERROR, "invalid plugin version constraint"),
    # names and placement
    "SCH201": (ERROR, "graph name is not a valid ROS namespace"),
    "SCH202": (ERROR, "node id is not a valid ROS node name"),
    "SCH203": (ERROR, "duplicate node id"),
    "SCH204": (ERROR, "container id is not valid"),
    "SCH205": (ERROR, "duplicate container id"),
    "SCH206": (ERROR, "node placed in an unknown container"),
    "SCH207": (WARNING, "container declared but no node runs in it"),
    # plugins and parameters
    "SCH301": (ERROR, "unknown plugin"),
    "SCH302": (ERROR, "plugin installed but cannot be loaded"),
    "SCH303": (ERROR, "plugin written for an incompatible plugin API version"),
    "SCH304": (ERROR, "installed plugin version does not meet the node's version constraint"),
    "SCH310": (ERROR, "required parameter missing"),
    "SCH311": (ERROR, "unknown parameter"),
    "SCH312": (ERROR, "parameter has the wrong type"),
    "SCH313": (ERROR, "parameter out of range"),
    "SCH314": (ERROR, "parameter not one of its allowed values"),
    "SCH315": (ERROR, "secret written into the file instead of naming an environment variable"),
    "SCH316": (ERROR, "parameters the plugin cannot use together (its own static check)"),
    # edges
    "SCH401": (ERROR, "edge names an unknown node"),
    "SCH402": (ERROR, "edge names an unknown port"),
    "SCH403": (ERROR, "edge connects a port in the wrong direction"),
    "SCH404": (ERROR, "source node given an input"),
    "SCH405": (ERROR, "sink node given an output"),
    "SCH406": (ERROR, "packet kinds of the two ports cannot match"),
    "SCH407": (ERROR, "payload profile mismatch"),
    "SCH408": (ERROR, "duplicate edge"),
    "SCH409": (ERROR, "the two ports carry different ROS message types"),
    "SCH410": (ERROR, "node inputs: names a port that is not an input"),
    "SCH411": (ERROR, "node inputs: bad backpressure policy"),
    # QoS and transports
    "SCH501": (ERROR, "unknown QoS preset"),
    "SCH502": (ERROR, "invalid QoS setting"),
    "SCH503": (ERROR, "reliable reader on a best-effort writer"),
    "SCH504": (ERROR, "transient-local reader on a volatile writer"),
    "SCH505": (ERROR, "reader deadline shorter than the writer's"),
    "SCH506": (ERROR, "inproc transport across containers"),
    "SCH507": (ERROR, "shared-memory transport across hosts"),
    "SCH508": (ERROR, "outbox set on an edge that does not feed a durable queue"),
    "SCH520": (ERROR, "payloads by reference across hosts"),
    # the graph as a whole
    "SCH601": (ERROR, "cycle without a delay node"),
    "SCH602": (ERROR, "cycle through a delay node that has no initial value"),
    "SCH603": (ERROR, "external sink not fed through a durable queue"),
    "SCH610": (WARNING, "node unreachable from any source"),
    "SCH611": (WARNING, "dangling output: a node's outputs go nowhere"),
    # placement on hosts (docs/multi-host.md)
    "SCH701": (ERROR, "container placed on a host the graph does not declare"),
    "SCH702": (ERROR, "not exactly one host with role manager"),
    "SCH703": (ERROR, "a host the lifecycle manager cannot reach (no address)"),
    "SCH704": (ERROR, "edge between sites (or over zenoh) not sent from a durable queue"),
    "SCH705": (ERROR, "DDS transport between sites"),
    "SCH706": (ERROR, "host name invalid or declared twice"),
    "SCH707": (ERROR, "discovery server or zenoh router setting incomplete"),
    # the control plane (controllers:, docs/autonomic.md)
    "SCH801": (ERROR, "malformed controller declaration"),
    "SCH802": (ERROR, "controller knob on a node that does not exist"),
    "SCH803": (ERROR, "controller knob on a parameter the node does not have"),
    "SCH804": (ERROR, "controller knob on a parameter that is not live, or a min/max knob on a non-numeric one"),
    "SCH805": (ERROR, "controller knob bounds or values outside the parameter's schema"),
    "SCH806": (ERROR, "controller policy not installed or its settings unknown"),
    "SCH807": (ERROR, "controller objective on a node that does not exist"),
    "SCH808": (ERROR, "one knob steered by two controllers"),
    "SCH809": (ERROR, "a controller mode sets a value its knob cannot take"),
}


def severity(code: str) -> str:
    return CODES[code][0] if code in CODES else ERROR

"""Plugins used only by the validator's tests, so the corpus does not depend on the built-ins.

Names mirror the built-in ones a user would see, but the specs are fixed here:
changing one changes the expected codes of the corpus.
"""
from schnitzel_core.plugin import (Category, In, NodeLogic, Out, Param, PluginSpec, Profile)
from schnitzel_core.registry import Registry


class Camera(NodeLogic):
    spec = PluginSpec(
        name="camera", category=Category.SOURCE, version="1.2.0",
        ports=(Out("frames", ["video.frame"], qos="frames"),),
        params=(Param("uri", "str", description="video URI"),
                Param("fps", "float", 15.0, minimum=0.1, maximum=120),
                Param("width", "int", 640, minimum=16, maximum=8192),
                Param("encoding", "str", "rgb8", enum=("rgb8", "bgr8", "mono8")),
                Param("loop", "bool", False),
                Param("tags", "list", [], items="str"),
                Param("extra", "dict", {}),
                Param("token_env", "str", "", secret_env=True)),
    )


class ShmCamera(NodeLogic):
    spec = PluginSpec(
        name="shm_camera", category=Category.SOURCE, version="1.0.0",
        ports=(Out("frames", ["video.frame"], profile=Profile.INPROC, qos="frames"),),
    )


class RosImageSource(NodeLogic):
    spec = PluginSpec(name="ros_image_source", category=Category.SOURCE, version="1.0.0",
                      ports=(Out("image", ["video.frame"], msg_type="sensor_msgs/msg/Image", qos="sensor"),))


class Ticker(NodeLogic):
    spec = PluginSpec(name="ticker", category=Category.SOURCE, version="1.0.0",
                      ports=(Out("out", ["telemetry"], qos="sensor"),))


class Detector(NodeLogic):
    spec = PluginSpec(
        name="detector", category=Category.COMPUTE, version="2.1.0",
        ports=(In("image", ["video.*"], qos="frames"), Out("detections", ["detections"], qos="events")),
        params=(Param("model", "str"), Param("threshold", "float", 0.5, minimum=0.0, maximum=1.0, live=True)),
    )


class Tracker(NodeLogic):
    spec = PluginSpec(
        name="tracker", category=Category.STATE, version="1.0.0",
        ports=(In("detections", ["detections"]), In("feedback", ["*"]), Out("tracks", ["detections"])),
    )


class EventBuilder(NodeLogic):
    spec = PluginSpec(
        name="event_builder", category=Category.POLICY, version="1.0.0",
        ports=(In("in", ["detections", "telemetry"]), Out("events", ["event"], profile=Profile.EVENT)),
    )


class Delay(NodeLogic):
    spec = PluginSpec(
        name="delay", category=Category.STATE, version="1.0.0", delay=True,
        ports=(In("in", ["*"]), Out("out", ["*"])),
        params=(Param("initial", "any", None, description="value emitted before the first input"),),
    )


class Router(NodeLogic):
    spec = PluginSpec(
        name="router", category=Category.CONTROL, version="1.0.0",
        ports=(In("in", ["*"]), Out("a", ["*"]), Out("b", ["*"])),
    )


class Queue(NodeLogic):
    spec = PluginSpec(
        name="durable_queue", category=Category.STATE, version="1.0.0", durable_queue=True,
        ports=(In("in", ["event", "detections", "telemetry"], profile=Profile.EVENT),
               Out("out", ["*"], profile=Profile.EVENT)),
        params=(Param("path", "str", "queue.db"),),
    )


class HttpSink(NodeLogic):
    spec = PluginSpec(
        name="http_sink", category=Category.SINK, version="1.0.0", external=True,
        ports=(In("in", ["event", "detections"]),),
        params=(Param("url", "str"), Param("token_env", "str", "", secret_env=True)),
    )


def _broker_check(params):
    """A plugin's own static check (PluginSpec.static_check): a scheme and a wildcard-free topic."""
    problems = []
    if not str(params.get("url", "")).startswith("mqtt://"):
        problems.append(("url", "url must start with mqtt://", "e.g. `url: mqtt://127.0.0.1:1883`"))
    if "#" in str(params.get("topic", "")):
        problems.append(("topic", "topic must not contain '#'", "e.g. `topic: fleet/events`"))
    return problems


class BrokerSink(NodeLogic):
    spec = PluginSpec(
        name="broker_sink", category=Category.SINK, version="1.0.0", external=True,
        ports=(In("in", ["event", "detections"]),),
        params=(Param("url", "str"), Param("topic", "str", "fleet/events")),
        static_check=_broker_check,
    )


class LogSink(NodeLogic):
    spec = PluginSpec(name="log_sink", category=Category.SINK, version="1.0.0",
                      ports=(In("in", ["*"]),))


class StateSource(NodeLogic):
    spec = PluginSpec(name="state_source", category=Category.SOURCE, version="1.0.0",
                      ports=(Out("state", ["telemetry"], qos="state"),))


class FutureApi(NodeLogic):
    spec = PluginSpec(name="future", category=Category.TRANSFORM, version="1.0.0", api_version="2.0.0",
                      ports=(In("in"), Out("out")))


ALL = [Camera, ShmCamera, RosImageSource, Ticker, Detector, Tracker, EventBuilder, Delay, Router, Queue, HttpSink, BrokerSink, LogSink,
       StateSource, FutureApi]


def registry() -> Registry:
    return Registry.from_classes(ALL)

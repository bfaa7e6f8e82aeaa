"""Tiny plugins for compiler and launch tests (a registry built from classes, no entry points)."""
from schnitzel_core.plugin import Category, In, Out, Param, PluginSpec
from schnitzel_nodes.base import PolicyLogic, SinkLogic, SourceLogic, TransformLogic


class Src(SourceLogic):
    spec = PluginSpec(name="t_src", category=Category.SOURCE, version="1.2.0",
                      ports=(Out("out", ["telemetry"], qos="sensor"),),
                      params=(Param("count", "int", 10, minimum=0), Param("label", "str", "x"),
                              Param("rate_hz", "float", 5.0, minimum=0.1, maximum=1000, live=True)))


class Map(TransformLogic):
    spec = PluginSpec(name="t_map", category=Category.TRANSFORM, version="1.0.0",
                      ports=(In("in"), Out("out")),
                      params=(Param("factor", "int", 2), Param("tags", "list", ["a", "b"], items="str"),
                              Param("table", "dict", {"k": [1, 2]})))


class Rule(PolicyLogic):
    spec = PluginSpec(name="t_rule", category=Category.POLICY, version="1.0.0",
                      ports=(In("in"), Out("out", ["event"])),
                      params=(Param("threshold", "float", 0.5, minimum=0, maximum=1),))


class Queue(PolicyLogic):
    spec = PluginSpec(name="t_queue", category=Category.STATE, version="1.0.0", durable_queue=True,
                      ports=(In("in"), Out("out")),
                      params=(Param("sinks", "list", [], items="str"), Param("path", "str", "q.db")))


class Router(PolicyLogic):
    spec = PluginSpec(name="t_router", category=Category.CONTROL, version="1.0.0",
                      ports=(In("in"), Out("a"), Out("b")))


class Sink(SinkLogic):
    spec = PluginSpec(name="t_sink", category=Category.SINK, version="1.0.0", external=True,
                      ports=(In("in"),), params=(Param("path", "str"),))


ALL = [Src, Map, Rule, Queue, Router, Sink]

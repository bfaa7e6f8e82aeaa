import os

from setuptools import find_packages, setup

package_name = "schnitzel_nodes"
#: Written at build time from the plugin entry points (with_component_index, below).
COMPONENT_INDEX = os.path.join("build", "ament_index", "rclcpp_components", package_name)


def with_component_index(entry_points):
    """Generate the ament index resource ``rclcpp_components/<package>`` from the plugin
    registrations (entry point group ``schnitzel.plugins``), so ``ros2 component types`` lists
    what a schnitzel container can load: one line per plugin, ``<package>::<name>;<marker>``
    (ros2cli reads the type name before ``;``; a Python plugin has no library, the marker
    names the container that loads it). Returns ``entry_points`` unchanged."""
    names = sorted(line.split("=", 1)[0].strip() for line in entry_points["schnitzel.plugins"])
    os.makedirs(os.path.dirname(COMPONENT_INDEX), exist_ok=True)
    with open(COMPONENT_INDEX, "w", encoding="utf-8") as f:
        f.write("".join(f"{package_name}::{n};schnitzel_container\n" for n in names))
    return entry_points


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/ament_index/resource_index/rclcpp_components", [COMPONENT_INDEX]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="schnitzel developers",
    maintainer_email="dev@schnitzel.dev",
    description="schnitzel's ROS side: lifecycle node adapters, built-in node plugins and the container process.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points=with_component_index({
        # Built-in plugins: "name = module:LogicClass" (the class has a ``spec``).
        # One block per owner keeps edits apart.
        "schnitzel.plugins": [
            # --- sources and sinks (IO) ---
            "video_source = schnitzel_nodes.plugins.sources.video:VideoSourceLogic",
            "serial_sensor = schnitzel_nodes.plugins.sources.serial_sensor:SerialSensorLogic",
            "audio_source = schnitzel_nodes.plugins.sources.audio:AudioSourceLogic",
            "synthetic_source = schnitzel_nodes.plugins.sources.synthetic:SyntheticSourceLogic",
            "ros_topic_source = schnitzel_nodes.plugins.ros_bridge:RosTopicSourceLogic",
            "ros_topic_sink = schnitzel_nodes.plugins.ros_bridge:RosTopicSinkLogic",
            "stdout_sink = schnitzel_nodes.plugins.sinks_io:StdoutSinkLogic",
            "foxglove_sink = schnitzel_nodes.plugins.foxglove:FoxgloveSinkLogic",
            # --- logic, compute, state, policy, control ---
            "sampler = schnitzel_nodes.plugins.transforms:SamplerLogic",
            "resize = schnitzel_nodes.plugins.transforms:ResizeLogic",
            "convert = schnitzel_nodes.plugins.transforms:ConvertLogic",
            "schema_validate = schnitzel_nodes.plugins.transforms:SchemaValidateLogic",
            "map = schnitzel_nodes.plugins.transforms:MapLogic",
            "onnx_model = schnitzel_nodes.plugins.compute:OnnxModelLogic",
            "motion_detector = schnitzel_nodes.plugins.compute:MotionDetectorLogic",
            "synthetic_model = schnitzel_nodes.plugins.compute:SyntheticModelLogic",
            "tracker = schnitzel_nodes.plugins.state:TrackerLogic",
            "fusion = schnitzel_nodes.plugins.state:FusionLogic",
            "window = schnitzel_nodes.plugins.state:WindowLogic",
            "delay = schnitzel_nodes.plugins.state:DelayLogic",
            "zones = schnitzel_nodes.plugins.policy:ZonesLogic",
            "dedup = schnitzel_nodes.plugins.policy:DedupLogic",
            "rules = schnitzel_nodes.plugins.policy:RulesLogic",
            "event_builder = schnitzel_nodes.plugins.policy:EventBuilderLogic",
            "router = schnitzel_nodes.plugins.control:RouterLogic",
            "switch = schnitzel_nodes.plugins.control:SwitchLogic",
            "duplicator = schnitzel_nodes.plugins.control:DuplicatorLogic",
            "annotate = schnitzel_nodes.plugins.annotate:AnnotateLogic",
            # --- closed-loop control (examples/pid_loop) ---
            "pid = schnitzel_nodes.plugins.loop:PidLogic",
            "sim_plant = schnitzel_nodes.plugins.loop:SimPlantLogic",
            "synthetic_stage = schnitzel_nodes.plugins.stage:SyntheticStageLogic",
            # --- delivery (durable queue, router, HTTP sink) ---
            "durable_queue = schnitzel_nodes.plugins.delivery:DurableQueueLogic",
            "sink_router = schnitzel_nodes.plugins.delivery:SinkRouterLogic",
            "http_sink = schnitzel_nodes.plugins.delivery:HttpSinkLogic",
            "jsonl_sink = schnitzel_nodes.plugins.delivery:JsonlSinkLogic",
            # --- broker sinks (MQTT, Kafka) ---
            "mqtt_sink = schnitzel_nodes.plugins.brokers:MqttSinkLogic",
            "kafka_sink = schnitzel_nodes.plugins.brokers:KafkaSinkLogic",
            # --- record and replay (MCAP) ---
            "recorder = schnitzel_nodes.plugins.record:RecorderLogic",
            "replay_source = schnitzel_nodes.plugins.record:ReplaySourceLogic",
        ],
        "console_scripts": [
            # --- runtime (container, lifecycle manager) ---
            "schnitzel_container = schnitzel_nodes.container:main",
        ],
    }),
)

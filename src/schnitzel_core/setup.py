from setuptools import find_packages, setup

package_name = "schnitzel_core"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="schnitzel developers",
    maintainer_email="dev@schnitzel.dev",
    description="Pure-Python contracts of schnitzel: packet model and codecs, graph model and loader, plugin registry, durable store, retry and circuit primitives (no rclpy).",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        # state_backend plugin boundary (blackboard): name = module:StateBackend subclass
        "schnitzel.state_backends": [
            "memory = schnitzel_core.blackboard:MemoryBackend",
            "sqlite = schnitzel_core.blackboard:SqliteBackend",
        ],
    },
)

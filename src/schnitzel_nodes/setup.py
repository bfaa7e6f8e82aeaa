from setuptools import find_packages, setup

package_name = "schnitzel_nodes"

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
    description="schnitzel's ROS side: lifecycle node adapters, built-in node plugins and the container process.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        # Built-in plugins: "name = module:LogicClass" (the class has a ``spec``).
        # One block per owner keeps edits apart.
        "schnitzel.plugins": [
            # --- sources and sinks (IO) ---
            # --- logic, compute, state, policy, control ---
            # --- delivery (durable queue, router, HTTP sink) ---
        ],
        "console_scripts": [
            # --- runtime (container, lifecycle manager) ---
        ],
    },
)

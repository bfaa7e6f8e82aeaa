from setuptools import find_packages, setup

package_name = "schnitzel_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", ["launch/graph.launch.py"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="schnitzel developers",
    maintainer_email="dev@schnitzel.dev",
    description="schnitzel bring-up: graph compiler, launch files, built-in runner, lifecycle manager and the schnitzel CLI.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "schnitzel = schnitzel_bringup.cli:main",
            "schnitzel_manager = schnitzel_bringup.manager:main",
            "schnitzel_controller = schnitzel_bringup.controller_node:main",
        ],
        # test plumbing of `schnitzel test` runtime cases (schnitzel_bringup/graphtest/plugins.py)
        "schnitzel.plugins": [
            "graphtest_source = schnitzel_bringup.graphtest.plugins:GraphtestSource",
            "graphtest_capture = schnitzel_bringup.graphtest.plugins:GraphtestCapture",
        ],
    },
)

"""Point the ROS 2 wheels' CMake exports at this venv's Python and numpy headers.

The PyPI wheels were built under /opt/python/cp3XX-cp3XX and their
``*__rosidl_generator_pyExport.cmake`` files still name that host's include
directories. Interface packages that depend on them (schnitzel_msgs) fail to
configure until those paths name real directories. Only files inside the venv
prefix are touched; the rewrite is idempotent.
"""
import pathlib
import re
import sys
import sysconfig

import numpy


def main() -> int:
    prefix = pathlib.Path(sys.prefix)
    py_include = sysconfig.get_paths()["include"]
    np_include = numpy.get_include()
    numpy_re = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include")
    python_re = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
    changed = 0
    for path in sorted((prefix / "share").glob("*/cmake/*__rosidl_generator_pyExport.cmake")):
        text = path.read_text()
        new = python_re.sub(py_include, numpy_re.sub(np_include, text))
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"  repaired {changed} CMake export file(s) (python: {py_include}, numpy: {np_include})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

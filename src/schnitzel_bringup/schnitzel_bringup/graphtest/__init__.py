"""Graph tests and chaos profiles (``schnitzel test``); the file format is docs/testing-graphs.md.

spec: the test file (YAML) -> cases and chaos profiles, every problem with file:line and a fix;
conditions: output checks and the diff on failure; inproc: the in-process fast path (plugin
logic wired together without DDS); runtime: the same case on the real runtime (`schnitzel run`);
chaos: faults on a running graph and the invariants checked afterwards; proxy: the
fault-injecting TCP proxy; junit: the JUnit XML report.
"""

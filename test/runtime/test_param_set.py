"""Setting a parameter on a running node through the standard parameter services (what
`ros2 param set` calls: rcl_interfaces/srv/SetParameters on /<ns>/<node>/set_parameters)
changes its behaviour; an out-of-range value is refused with the reason."""
import json
import os
import signal


from rt_helpers import output, read_lines, read_status, start_run
from schnitzel_core.testing import wait_for

GRAPH = """\
schnitzel: 1
name: ptest
nodes:
  - id: src
    plugin: synthetic_source
    params: {{mode: counter, rate_hz: 25}}
  - id: smp
    plugin: sampler
    params: {{mode: every_n, n: 1}}
  - id: q
    plugin: durable_queue
    params: {{path: {dir}/q.db}}
  - id: out
    plugin: jsonl_sink
    params: {{path: {dir}/out.jsonl}}
edges:
  - {{from: src.out, to: smp.in}}
  - {{from: smp.out, to: q.in}}
  - {{from: q.out, to: out.in}}
"""


class ParamClient:
    def __init__(self):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.ctx = Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("param_test_client", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)

    def call(self, srv_type, name, req, timeout=15.0):
        cli = self.node.create_client(srv_type, name)
        assert cli.wait_for_service(timeout_sec=timeout), f"{name} not offered"
        fut = cli.call_async(req)
        self.ex.spin_until_future_complete(fut, timeout_sec=timeout)
        assert fut.done(), f"{name}: no answer"
        return fut.result()

    def set_int(self, node, name, value):
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters
        req = SetParameters.Request(parameters=[Parameter(
            name=name, value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value))])
        return self.call(SetParameters, f"{node}/set_parameters", req).results[0]

    def get(self, node, name):
        from rcl_interfaces.srv import GetParameters
        return self.call(GetParameters, f"{node}/get_parameters", GetParameters.Request(names=[name])).values[0]

    def graph_status(self, topic, timeout=10.0):
        """One schnitzel_msgs/GraphStatus, subscribed like `ros2 topic echo` does (reliable, volatile)."""
        from schnitzel_msgs.msg import GraphStatus
        got = []
        sub = self.node.create_subscription(GraphStatus, topic, got.append, 10)
        import time
        deadline = time.monotonic() + timeout
        while not got and time.monotonic() < deadline:
            self.ex.spin_once(timeout_sec=0.1)
        self.node.destroy_subscription(sub)
        return got[0] if got else None

    def close(self):
        self.node.destroy_node()
        self.ex.shutdown()
        self.rclpy.shutdown(context=self.ctx)


def test_set_parameter_changes_behaviour_and_out_of_range_is_refused(tmp_path, tagged, monkeypatch):
    g = tmp_path / "ptest.yaml"
    g.write_text(GRAPH.format(dir=tmp_path))
    run_dir = tmp_path / "run"
    out = tmp_path / "out.jsonl"
    runner = start_run(g, run_dir, tagged.env)
    client = None
    try:
        assert wait_for(lambda: (read_status(run_dir) or {}).get("state") == "active", 90), output(runner)
        assert wait_for(lambda: len(read_lines(out)) >= 5, 30), output(runner)
        seqs = [json.loads(x)["seq"] for x in read_lines(out)]
        assert all(b - a == 1 for a, b in zip(seqs, seqs[1:])), seqs  # n=1 keeps every packet
        client = ParamClient()
        st = client.graph_status("/ptest/_status/graph")
        assert st is not None, "no GraphStatus on /ptest/_status/graph"
        assert (st.graph, st.status, st.nodes_active, st.nodes_total) == ("ptest", "ok", 4, 4)
        assert {n.node_id: n.state for n in st.nodes} == {i: "active" for i in ("src", "smp", "q", "out")}
        assert st.containers and st.containers[0].startswith("main:")
        res = client.set_int("/ptest/smp", "n", 4)
        assert res.successful, res.reason
        assert client.get("/ptest/smp", "n").integer_value == 4
        mark = len(read_lines(out))
        assert wait_for(lambda: len(read_lines(out)) >= mark + 6, 30), output(runner)
        after = [json.loads(x)["seq"] for x in read_lines(out)][mark + 1:]
        gaps = [b - a for a, b in zip(after, after[1:])]
        assert gaps and all(gap == 4 for gap in gaps), gaps  # keeps 1 of 4 now
        # out of range: the schema says n >= 1
        res = client.set_int("/ptest/smp", "n", 0)
        assert not res.successful
        assert "n" in res.reason and "1" in res.reason, res.reason
        assert client.get("/ptest/smp", "n").integer_value == 4  # unchanged
        runner.send_signal(signal.SIGINT)
        runner.wait(timeout=60)
        assert runner.returncode == 0, output(runner)
        assert wait_for(lambda: tagged.processes() == {}, 5), tagged.processes()
    finally:
        if client:
            client.close()
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    print("refusal reason:", res.reason)

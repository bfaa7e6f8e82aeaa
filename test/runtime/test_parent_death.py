"""A container or lifecycle manager whose parent goes away does not survive it (no launch needed).

`ros2 launch` stopped by SIGTERM (systemd, a supervisor) may exit without stopping its children;
the runner may be SIGKILLed. The entry points themselves ask the kernel for SIGTERM when their
parent exits (schnitzel_core.lifetime, PR_SET_PDEATHSIG), and handle it as an ordered shutdown.
Here a plain Python parent starts `schnitzel_container` / `schnitzel_manager` as a child in its
own process group (not a runner child: nothing else would clean up) and is then SIGTERMed or
SIGKILLed; the child must be gone shortly after.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from schnitzel_core.testing import wait_for

PARENT = textwrap.dedent("""\
    import subprocess, sys, time
    child = subprocess.Popen(sys.argv[1:], stdout=open(sys.argv[0] + ".child.log", "wb"), stderr=subprocess.STDOUT)
    print(child.pid, flush=True)
    time.sleep(3600)
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"     # a zombie has exited (nobody reaped it yet)


def _plan(tmp_path: Path, graph: str) -> Path:
    """A plan with one container that is never started: the manager waits for it."""
    from schnitzel_bringup.compiler import validate_and_compile
    g = tmp_path / "g.yaml"
    g.write_text(f"schnitzel: 1\nname: {graph}\nnodes:\n  - {{id: src, plugin: synthetic_source}}\n"
                 "  - {id: out, plugin: stdout_sink}\nedges:\n  - {from: src.out, to: out.in}\n")
    report, plan = validate_and_compile(str(g))
    assert plan is not None, report.format_text()
    return plan.write(tmp_path / "g.plan.json")


@pytest.mark.parametrize("who", ["container", "manager"])
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_child_whose_parent_dies_does_not_survive_it(tmp_path, tagged, who, how):
    graph = f"pd_{who}_{how.name.lower()}"
    if who == "container":
        child = [sys.executable, "-m", "schnitzel_nodes.container", "--graph", graph, "--container", "c"]
        ready = "ready (pid"
    else:
        child = [sys.executable, "-m", "schnitzel_bringup.manager", "--plan", str(_plan(tmp_path, graph)),
                 "--status-file", str(tmp_path / "status.json")]
        ready = "waiting_containers"
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), *child], env=tagged.env, stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    log = Path(str(script) + ".child.log")
    try:
        pid = int(parent.stdout.readline())
        if who == "container":
            assert wait_for(lambda: ready in log.read_text(errors="replace"), 60), log.read_text()
        else:
            assert wait_for(lambda: ready in (tmp_path / "status.json").read_text()
                            if (tmp_path / "status.json").exists() else False, 60), log.read_text()
        os.kill(parent.pid, how)             # only the parent: the child is left to itself
        parent.wait(timeout=10)
        assert wait_for(lambda: not _alive(pid), 20), f"{who} {pid} outlived its parent:\n{log.read_text()}"
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text
    if who == "container":
        assert "stopped all nodes" in text, text                  # an ordered shutdown, not a kill
    else:
        assert json.loads((tmp_path / "status.json").read_text())["state"] == "finished"

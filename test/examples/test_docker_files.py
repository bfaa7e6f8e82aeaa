"""docker/: the image and the compose file cannot be built here (no Docker, no network), so they
are checked by reading them: everything they copy, run or point at exists in the repository
and fits together (the image's default graph validates with the compose file's environment, the
video that graph plays by default is generated in the image, the edge service reaches the
backend service on the port it listens on)."""
from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Dict, List, Tuple
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
WORKDIR_DEFAULT = "/opt/schnitzel"


def dockerfile() -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (DOCKER / "Dockerfile").read_text()
    out: List[Tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        ins, _, args = buf.strip().partition(" ")
        out.append((ins.upper(), args.strip()))
        buf = ""
    return out


def in_repo(path: str, workdir: str) -> Path:
    """A path inside the image (absolute, or relative to WORKDIR) as a path in this repository."""
    p = path if path.startswith("/") else f"{workdir}/{path}"
    assert p.startswith(workdir + "/"), f"{path} is outside the image's workspace {workdir}"
    return ROOT / p[len(workdir) + 1:]


def graph_arg(argv: List[str]) -> str:
    args = [a for a in argv if a.startswith("graph:=")]
    assert len(args) == 1, f"expected one graph:=... argument in {argv}"
    return args[0].split(":=", 1)[1]


def test_dockerfile_builds_on_an_official_ros_image_and_launches_a_graph():
    ins = dockerfile()
    args = dict(re.match(r"(\w+)(?:=(.*))?", a).groups() for i, a in ins if i == "ARG")
    froms = [a for i, a in ins if i == "FROM"]
    assert len(froms) == 1
    image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1)) or "", froms[0].split()[0])
    assert re.fullmatch(r"ros:(jazzy|kilted)-ros-(base|core)(-\w+)?", image), (
        f"FROM {froms[0]} is not an official ROS 2 Jazzy/Kilted image (resolved: {image})")

    workdir = next(a for i, a in ins if i == "WORKDIR")
    assert workdir == WORKDIR_DEFAULT
    for i, a in ins:
        if i == "COPY":
            *srcs, _dst = shlex.split(a)
            for s in srcs:
                assert not s.startswith("--"), f"COPY {a}: flags are not expected here"
                assert (ROOT / s).exists(), f"COPY {s}: not in the repository (the build context is its root)"
    runs = " ".join(a for i, a in ins if i == "RUN")
    assert "scripts/setup.sh" in runs and (ROOT / "scripts" / "setup.sh").is_file()

    entry = json.loads(next(a for i, a in ins if i == "ENTRYPOINT"))
    assert entry == ["/entrypoint.sh"]
    ep = DOCKER / "entrypoint.sh"
    assert os.access(ep, os.X_OK), "docker/entrypoint.sh must be executable"
    assert "setup.bash" in ep.read_text() and "scripts/env.sh" in ep.read_text() and 'exec "$@"' in ep.read_text()

    cmd = json.loads(next(a for i, a in ins if i == "CMD"))
    assert cmd[:4] == ["ros2", "launch", "schnitzel_bringup", "graph.launch.py"]
    assert (ROOT / "src" / "schnitzel_bringup" / "launch" / "graph.launch.py").is_file()
    graph = in_repo(graph_arg(cmd), workdir)
    assert graph.is_file(), f"the image's default graph {graph} is not in the repository"


def test_the_default_graphs_video_is_generated_in_the_image():
    """edge_camera plays .cache/demo/edge_camera.mp4 unless SCHNITZEL_CAMERA is set: the image makes it."""
    text = (ROOT / "examples" / "edge_camera" / "graph.yaml").read_text()
    default = re.search(r"\$\{env:SCHNITZEL_CAMERA:-([^}]+)\}", text).group(1)
    runs = [a for i, a in dockerfile() if i == "RUN"]
    gen = [r for r in runs if "examples/edge_camera/make_video.py" in r]
    assert gen, "the Dockerfile does not generate the demo video the edge_camera graph plays by default"
    assert default in gen[0].split("make_video.py", 1)[1].split(), (default, gen[0])
    assert (ROOT / "examples" / "edge_camera" / "make_video.py").is_file()


def compose() -> Dict:
    doc = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def test_compose_services_fit_together():
    doc = compose()
    services = doc["services"]
    assert {"backend", "edge"} <= set(services)
    for name, svc in services.items():
        b = svc["build"]
        ctx = (DOCKER / b["context"]).resolve()
        assert ctx == ROOT, f"service {name}: build context {b['context']} is not the repository root"
        assert (ctx / b["dockerfile"]).is_file(), f"service {name}: {b['dockerfile']} does not exist"
        for v in svc.get("volumes", []):
            src = v.split(":", 1)[0]
            if not src.startswith((".", "/")):
                assert src in (doc.get("volumes") or {}), f"service {name}: volume {src} is not declared"

    backend = services["backend"]["command"]
    assert backend[:2] == ["schnitzel", "backend"]
    opt = dict(zip(backend[2::2], backend[3::2]))
    assert opt["--host"] == "0.0.0.0", "the backend must listen beyond its own container"

    edge = services["edge"]
    assert "backend" in edge.get("depends_on", [])
    env = {k: str(v) for k, v in (edge.get("environment") or {}).items()}
    url = urlsplit(env["SCHNITZEL_BACKEND_URL"])
    assert (url.hostname, url.port, url.path) == ("backend", int(opt["--port"]), "/events")
    assert edge["command"][:4] == ["ros2", "launch", "schnitzel_bringup", "graph.launch.py"]
    graph = in_repo(graph_arg(edge["command"]), WORKDIR_DEFAULT)
    assert graph.is_file(), f"compose runs {graph}, which is not in the repository"


def test_compose_graph_validates_with_the_compose_environment():
    from schnitzel_core.registry import load_registry
    from schnitzel_validator import validate_path

    edge = compose()["services"]["edge"]
    graph = in_repo(graph_arg(edge["command"]), WORKDIR_DEFAULT)
    env = {k: str(v) for k, v in (edge.get("environment") or {}).items()}
    report = validate_path(graph, load_registry(), env=env)
    assert report.valid, report.format_text()
    if "SCHNITZEL_DATA" in env:   # queue and JSONL on the edge-data volume, so they survive the container
        mounts = [v.split(":", 1)[1] for v in edge.get("volumes", [])]
        assert any(env["SCHNITZEL_DATA"].startswith(m) for m in mounts), (env["SCHNITZEL_DATA"], mounts)


@pytest.mark.parametrize("name", ["Dockerfile", "compose.yaml"])
def test_docker_files_say_how_to_use_them(name):
    head = (DOCKER / name).read_text().split("\n", 8)
    assert any("docker build" in l or "docker compose" in l for l in head), f"{name}: no usage line at the top"

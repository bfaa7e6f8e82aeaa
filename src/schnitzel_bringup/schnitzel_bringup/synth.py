"""Synthesized plugins (``schnitzel draft --synthesize``): model-written node logic, kept at arm's length.

A synthesized plugin is a module and its unit test written by the model. They are
staged in the user plugin folder's ``.pending/``; the module's spec is read and
its test run in subprocesses with a time limit (this process never imports
model-written code); only when the test passes and a person approves it is the
plugin registered:

    PLUGIN_DIR/schnitzel_synth_NAME.py                       the module
    PLUGIN_DIR/tests/test_schnitzel_synth_NAME.py            its test
    PLUGIN_DIR/schnitzel_synthesized-0.0.0.dist-info/        entry points (group schnitzel.plugins)
    PLUGIN_DIR/synthesized.json                              what was synthesized, when, for which request

PLUGIN_DIR (``$SCHNITZEL_PLUGIN_DIR``, else ``$XDG_DATA_HOME/schnitzel/plugins``, else
``~/.local/share/schnitzel/plugins``) must be on ``sys.path`` for the registry (and every
container) to find them: registering puts a ``schnitzel_synthesized.pth`` naming it into
site-packages unless it already is. ``schnitzel plugins prune`` lists and removes the
synthesized plugins no graph uses.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from schnitzel_core.plugin import (PLUGIN_API_VERSION, REQUIRED, Category, Direction, NodeLogic, Param,
                                   PluginSpec, Port, Profile)
from schnitzel_core.registry import PluginEntry, Registry, api_compatible, spec_problems

ENV_PLUGIN_DIR = "SCHNITZEL_PLUGIN_DIR"
MODULE_PREFIX = "schnitzel_synth_"
DIST_INFO = "schnitzel_synthesized-0.0.0.dist-info"
PTH_NAME = "schnitzel_synthesized.pth"
RECORDS = "synthesized.json"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,40}$")

SYNTH_BRIEF = """\
When no installed plugin can do a step, you may write one: add "plugins": [{"name": NAME,
"module": PYTHON, "test": PYTHON}] to the answer and use NAME as a plugin in the graph. NAME is
lowercase letters, digits and _. The module is saved as schnitzel_synth_NAME.py and defines one
class derived from schnitzel_core.plugin.NodeLogic with a class attribute
spec = PluginSpec(name=NAME, category=Category.TRANSFORM, version="0.1.0", ports=(In("in", ("*",)),
Out("out", ("*",))), params=(Param("factor", "number", 2.0, description="..."),), description="...")
(imports: from schnitzel_core.plugin import NodeLogic, PluginSpec, Category, In, Out, Param;
from schnitzel_core.packet import Packet). It handles packets in on_packet(self, port, packet) and
sends with self.emit(port, packet); parameters are in self.params; Packet.from_json(stream_id,
seq, kind, value) makes a JSON packet, packet.json() reads one. The test is a pytest file that
imports the class from schnitzel_synth_NAME and drives it with
schnitzel_core.testing.LogicHarness(Class, params): h.send("in", packet) returns what was emitted.
The test runs with a time limit; no network, no files outside the temporary directory.
"""


def plugin_dir(env: Optional[Mapping[str, str]] = None) -> Path:
    env = os.environ if env is None else env
    if env.get(ENV_PLUGIN_DIR):
        return Path(env[ENV_PLUGIN_DIR]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "schnitzel" / "plugins"


def answer_schema_part() -> Dict[str, Any]:
    return {"type": "array", "items": {"type": "object", "required": ["name", "module", "test"],
                                       "properties": {"name": {"type": "string"}, "module": {"type": "string"},
                                                      "test": {"type": "string"}}}}


@dataclasses.dataclass
class Staged:
    name: str
    module_path: Path
    test_path: Path
    spec: Optional[PluginSpec] = None

    @property
    def module(self) -> str:
        return MODULE_PREFIX + self.name


# ---------------------------------------------------------------- subprocess helpers
def _run(argv: Sequence[str], cwd: Path, timeout: float, env: Dict[str, str]) -> Tuple[Optional[int], str]:
    """(exit code or None on timeout, combined output); the whole process group dies on timeout."""
    proc = subprocess.Popen(list(argv), cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        out, _ = proc.communicate()
        return None, out


def _env_with(path: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(path) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _tail(text: str, limit: int = 1500) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


_SPEC_SCRIPT = r"""
import dataclasses, enum, importlib, json, sys
from schnitzel_core.plugin import NodeLogic, REQUIRED
mod = importlib.import_module(sys.argv[1])
name = sys.argv[2]
found = [c for c in vars(mod).values() if isinstance(c, type) and issubclass(c, NodeLogic)
         and getattr(getattr(c, "spec", None), "name", None) == name]
if len(found) != 1:
    sys.exit(f"the module defines {len(found)} NodeLogic classes with spec.name == {name!r}; it must define one")
s = found[0].spec
def val(v):
    if v is REQUIRED: return {"__required__": True}
    if isinstance(v, enum.Enum): return v.value
    if isinstance(v, tuple): return [val(x) for x in v]
    return v
out = {"cls": found[0].__name__, "name": s.name, "category": val(s.category), "version": s.version,
       "api_version": s.api_version, "description": s.description, "external": s.external, "stateful": s.stateful,
       "ports": [{f.name: val(getattr(p, f.name)) for f in dataclasses.fields(p)} for p in s.ports],
       "params": [{f.name: val(getattr(p, f.name)) for f in dataclasses.fields(p)} for p in s.params]}
print("SPEC-JSON " + json.dumps(out, default=str))
"""


def _spec_from_json(d: Mapping[str, Any]) -> PluginSpec:
    ports = tuple(Port(p["name"], Direction(p["direction"]), tuple(p.get("kinds") or ("*",)),
                       Profile(p.get("profile", "any")), p.get("msg_type") or "schnitzel_msgs/msg/StreamPacket",
                       p.get("qos", "events"), p.get("description", "")) for p in d["ports"])
    params = []
    for p in d["params"]:
        default = REQUIRED if isinstance(p.get("default"), dict) and p["default"].get("__required__") else p.get("default")
        params.append(Param(p["name"], p["type"], default, p.get("description", ""), p.get("minimum"),
                            p.get("maximum"), tuple(p["enum"]) if p.get("enum") is not None else None,
                            bool(p.get("live")), p.get("items"), bool(p.get("secret_env"))))
    return PluginSpec(name=d["name"], category=Category(d["category"]), version=d["version"],
                      api_version=d["api_version"], ports=ports, params=tuple(params),
                      description=d.get("description", ""), external=bool(d.get("external")),
                      stateful=bool(d.get("stateful")))


def stub_class(spec: PluginSpec) -> type:
    """A NodeLogic class carrying ``spec`` only: the validator checks graphs against it; nothing runs."""
    return type(f"Synthesized_{spec.name}", (NodeLogic,), {"spec": spec})


# ---------------------------------------------------------------- staging and checks
class PluginDirError(Exception):
    """The plugin folder cannot be written (the message says which and how to choose another)."""


@dataclasses.dataclass
class SynthProblem:
    code: str
    message: str
    hint: str = ""


class Synthesizer:
    """Stages, inspects and tests the plugins of one draft; registers the approved ones."""

    def __init__(self, root: Path, timeout_s: float = 60.0) -> None:
        self.root = root
        self.timeout_s = timeout_s
        self.pending = root / ".pending" / uuid.uuid4().hex[:12]

    def discard(self) -> None:
        shutil.rmtree(self.pending, ignore_errors=True)
        try:
            self.pending.parent.rmdir()       # .pending itself, when nothing else is pending
        except OSError:
            pass

    def check(self, plugins: Any, installed: Registry) -> Tuple[List[Staged], List[SynthProblem]]:
        """Stage the answer's plugins; read each spec and run each test in a subprocess."""
        self.discard()
        if plugins is None:
            return [], []
        if not isinstance(plugins, list):
            return [], [SynthProblem("DRAFT401", '"plugins" must be a list of {name, module, test}')]
        try:
            self.pending.mkdir(parents=True, exist_ok=True)
            (self.pending / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")   # no outer config applies
        except OSError as exc:
            raise PluginDirError(f"cannot write to the plugin folder {self.root}: {exc}; set {ENV_PLUGIN_DIR} "
                                 "to a writable folder") from None
        staged: List[Staged] = []
        problems: List[SynthProblem] = []
        for i, p in enumerate(plugins, 1):
            if not isinstance(p, dict) or not all(isinstance(p.get(k), str) and p.get(k) for k in ("name", "module", "test")):
                problems.append(SynthProblem("DRAFT401", f"plugin {i}: needs name, module and test (strings)"))
                continue
            name = p["name"]
            if not NAME_RE.match(name):
                problems.append(SynthProblem("DRAFT404", f"plugin name {name!r} is not lowercase letters, digits and _"))
                continue
            if name in installed:
                problems.append(SynthProblem("DRAFT404", f"plugin {name!r} is installed already",
                                             "use the installed plugin, or give the new one another name"))
                continue
            if any(s.name == name for s in staged):
                problems.append(SynthProblem("DRAFT404", f"plugin {name!r} is written twice"))
                continue
            s = Staged(name, self.pending / f"{MODULE_PREFIX}{name}.py",
                       self.pending / f"test_{MODULE_PREFIX}{name}.py")
            s.module_path.write_text(p["module"], encoding="utf-8")
            s.test_path.write_text(p["test"], encoding="utf-8")
            problems.extend(self._inspect(s))
            staged.append(s)
        return staged, problems

    def _inspect(self, s: Staged) -> List[SynthProblem]:
        env = _env_with(self.pending)
        code, out = _run([sys.executable, "-c", _SPEC_SCRIPT, s.module, s.name], self.pending,
                         min(self.timeout_s, 30.0), env)
        if code is None:
            return [SynthProblem("DRAFT403", f"plugin {s.name}: importing the module did not finish within "
                                 f"{min(self.timeout_s, 30.0):g} s", "no work at import time")]
        line = next((ln for ln in out.splitlines() if ln.startswith("SPEC-JSON ")), None)
        if code != 0 or line is None:
            return [SynthProblem("DRAFT401", f"plugin {s.name}: the module cannot be loaded: {_tail(out, 800)}")]
        try:
            s.spec = _spec_from_json(json.loads(line[len("SPEC-JSON "):]))
        except (ValueError, KeyError, TypeError) as exc:
            return [SynthProblem("DRAFT401", f"plugin {s.name}: its spec is not usable: {exc}")]
        problems = [SynthProblem("DRAFT401", f"plugin {s.name}: {w}") for w in spec_problems(s.spec)]
        try:
            compatible = api_compatible(s.spec.api_version)
        except ValueError as exc:
            compatible, why = False, str(exc)
        else:
            why = f"this runtime implements plugin API {PLUGIN_API_VERSION}"
        if not compatible:
            problems.append(SynthProblem("DRAFT401", f"plugin {s.name}: api_version {s.spec.api_version!r} cannot "
                                         f"run here ({why})", "leave api_version out: it defaults to the runtime's"))
        code, out = _run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          s.test_path.name], self.pending, self.timeout_s, env)
        if code is None:
            problems.append(SynthProblem("DRAFT403", f"plugin {s.name}: its test did not finish within "
                                         f"{self.timeout_s:g} s: {_tail(out, 600)}"))
        elif code == 5:
            problems.append(SynthProblem("DRAFT402", f"plugin {s.name}: its test file has no tests"))
        elif code != 0:
            problems.append(SynthProblem("DRAFT402", f"plugin {s.name}: its test failed:\n{_tail(out)}"))
        return problems

    @staticmethod
    def registry_with(installed: Registry, staged: Iterable[Staged]) -> Registry:
        entries = list(installed.entries())
        for s in staged:
            if s.spec is not None:
                entries.append(PluginEntry(name=s.name, spec=s.spec, cls=stub_class(s.spec), dist="(synthesized)",
                                           value=f"{s.module}:?"))
        return Registry(entries)

    # ------------------------------------------------------------ registration
    def register(self, s: Staged, request: str) -> Dict[str, Any]:
        """Move an approved, tested plugin into the plugin folder and add its entry point."""
        assert s.spec is not None
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "tests").mkdir(exist_ok=True)
        module_dst = self.root / s.module_path.name
        test_dst = self.root / "tests" / s.test_path.name
        shutil.copyfile(s.module_path, module_dst)
        shutil.copyfile(s.test_path, test_dst)
        cls = _class_name(self.pending, s)
        records = load_records(self.root)
        records[s.name] = {"module": s.module, "class": cls, "file": module_dst.name,
                           "test": f"tests/{test_dst.name}", "request": request,
                           "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                           "sha256": hashlib.sha256(module_dst.read_bytes()).hexdigest()}
        write_records(self.root, records)
        return records[s.name]


def _class_name(pending: Path, s: Staged) -> str:
    code, out = _run([sys.executable, "-c", _SPEC_SCRIPT, s.module, s.name], pending, 30.0, _env_with(pending))
    line = next((ln for ln in out.splitlines() if ln.startswith("SPEC-JSON ")), None)
    if code != 0 or line is None:
        raise RuntimeError(f"plugin {s.name} could not be read again: {_tail(out, 300)}")
    return json.loads(line[len("SPEC-JSON "):])["cls"]


def load_records(root: Path) -> Dict[str, Dict[str, Any]]:
    try:
        data = json.loads((root / RECORDS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_records(root: Path, records: Mapping[str, Mapping[str, Any]]) -> None:
    """synthesized.json and the dist-info whose entry points make the registry find the plugins."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{RECORDS}.tmp"
    tmp.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, root / RECORDS)
    dist = root / DIST_INFO
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: schnitzel_synthesized\nVersion: 0.0.0\n"
                                   "Summary: plugins synthesized by schnitzel draft --synthesize\n", encoding="utf-8")
    lines = ["[schnitzel.plugins]"] + [f"{n} = {r['module']}:{r['class']}" for n, r in sorted(records.items())]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def ensure_on_path(root: Path) -> Optional[Path]:
    """Make ``root`` importable in every process of this environment (a .pth in site-packages);
    returns the .pth written, None when ``root`` is on sys.path already."""
    resolved = str(root.resolve())
    if any(os.path.abspath(p or ".") == resolved for p in sys.path):
        return None
    pth = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    try:
        pth.write_text(resolved + "\n", encoding="utf-8")
    except OSError as exc:
        raise PluginDirError(f"cannot write {pth} ({exc}): add {resolved} to PYTHONPATH for schnitzel to find "
                             "the synthesized plugins") from None
    sys.path.append(resolved)
    return pth


# ---------------------------------------------------------------- prune
_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "build", "install", "log"}


def graph_files(paths: Sequence[str]) -> List[Path]:
    out: List[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_file():
            out.append(path)
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(".")]
            out.extend(Path(dirpath) / f for f in filenames if f.endswith((".yaml", ".yml")))
    return sorted(out)


def plugins_used(files: Iterable[Path]) -> Dict[str, List[str]]:
    """plugin name -> graph files whose nodes use it (files that are not graphs are skipped)."""
    import yaml

    used: Dict[str, List[str]] = {}
    for f in files:
        try:
            doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if not isinstance(doc, dict) or "schnitzel" not in doc or not isinstance(doc.get("nodes"), list):
            continue
        for n in doc["nodes"]:
            if isinstance(n, dict) and isinstance(n.get("plugin"), str):
                used.setdefault(n["plugin"], []).append(str(f))
    return used


def remove(root: Path, name: str) -> None:
    records = load_records(root)
    rec = records.pop(name, None)
    if rec is None:
        return
    for rel in (rec.get("file"), rec.get("test")):
        if rel:
            try:
                (root / rel).unlink()
            except FileNotFoundError:
                pass
    write_records(root, records)

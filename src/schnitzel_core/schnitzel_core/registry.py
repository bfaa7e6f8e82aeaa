"""The plugin registry: every plugin installed under the entry point group ``schnitzel.plugins``.

A plugin is a package of its own: it registers ``name = module:Class`` in that
group and the registry finds it, with no change to the core. Each entry is
imported once to read its :class:`~schnitzel_core.plugin.PluginSpec`; a broken
or incompatible entry is kept with an ``error`` (so ``schnitzel plugins`` can
say what is wrong) and :meth:`Registry.load_class` refuses it.

API compatibility is the semver caret rule (docs/plugin-api.md): a plugin
written for API ``X.Y.Z`` runs on a runtime implementing ``X.y.z`` with the same
major ``X`` and ``y >= Y``; for major 0 the minor must be equal.
"""
from __future__ import annotations

import dataclasses
import re
from importlib import metadata
from typing import Dict, Iterable, List, Optional, Tuple

from . import param_check
from .plugin import ENTRY_POINT_GROUP, PLUGIN_API_VERSION, NodeLogic, PluginSpec


class PluginError(Exception):
    """A plugin that cannot be used; the message says which and why."""


_VERSION = re.compile(r"^\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+][0-9A-Za-z.+-]*)?\s*$")


def parse_version(text: str) -> Tuple[int, int, int]:
    """``"1.2.3"`` -> (1, 2, 3); ``"1.2"`` -> (1, 2, 0). Pre-release/build suffixes are ignored."""
    m = _VERSION.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a version (expected MAJOR.MINOR.PATCH, e.g. 1.0.0)")
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)


def api_compatible(plugin_api: str, runtime_api: str = PLUGIN_API_VERSION) -> bool:
    """Semver caret: same major and the plugin's minor <= the runtime's (major 0: same minor)."""
    p = parse_version(plugin_api)
    r = parse_version(runtime_api)
    if p[0] != r[0]:
        return False
    if p[0] == 0:
        return p[1] == r[1]
    return p[1] <= r[1]


_CONSTRAINT = re.compile(r"^\s*(\^|~|>=|<=|>|<|==|=)?\s*(v?\d+(?:\.\d+){0,2})\s*$")


def check_constraint(text: str) -> None:
    """Raise ValueError unless ``text`` is a version constraint :func:`satisfies` understands."""
    parts = [p for p in str(text).split(",")]
    if not parts or any(not _CONSTRAINT.match(p) for p in parts):
        raise ValueError(
            f"{text!r} is not a version constraint (use e.g. \"^1.2\", \"~1.2.3\", \"1.2.3\", \">=1.1,<2\")")


def satisfies(version: str, constraint: str) -> bool:
    """Does ``version`` meet ``constraint``? Forms: ``^1.2`` (caret), ``~1.2`` (same minor),
    ``1.2.3`` / ``=1.2.3`` (exact, missing parts are wildcards), ``>=1.1,<2`` (comma = and)."""
    check_constraint(constraint)
    v = parse_version(version)
    for part in str(constraint).split(","):
        m = _CONSTRAINT.match(part)
        assert m is not None
        op, ver = m.group(1) or "", m.group(2)
        given = len(ver.lstrip("v").split("."))
        c = parse_version(ver)
        if op == "^":
            if c[0] > 0:
                upper = (c[0] + 1, 0, 0)
            elif given >= 2 and c[1] > 0:
                upper = (0, c[1] + 1, 0)
            else:
                upper = (0, 0, c[2] + 1) if given == 3 else (1, 0, 0) if given == 1 else (0, 1, 0)
            ok = c <= v < upper
        elif op == "~":
            upper = (c[0] + 1, 0, 0) if given == 1 else (c[0], c[1] + 1, 0)
            ok = c <= v < upper
        elif op in ("", "=", "=="):
            ok = v[:given] == c[:given]
        elif op == ">=":
            ok = v >= c
        elif op == ">":
            ok = v > c
        elif op == "<=":
            ok = v <= c
        else:
            ok = v < c
        if not ok:
            return False
    return True


_PARAM_TYPES = ("int", "float", "number", "str", "bool", "list", "dict", "any")


def spec_problems(spec: PluginSpec) -> List[str]:
    """Inconsistencies in a plugin's own declaration (shown by `schnitzel plugins`; they do not refuse it).

    These are the plugin author's mistakes: a graph cannot fix them, so they are reported
    once per plugin instead of as confusing errors in every graph that uses it.
    """
    from .plugin import Category, Direction, REQUIRED
    from .qos import PRESETS

    out: List[str] = []
    try:
        parse_version(spec.version)
    except ValueError as exc:
        out.append(f"version: {exc}")
    seen: set = set()
    for port in spec.ports:
        if port.name in seen:
            out.append(f"port {port.name!r} is declared twice")
        seen.add(port.name)
        if not port.kinds:
            out.append(f"port {port.name!r} declares no kinds (use ('*',) for any)")
        if port.qos not in PRESETS:
            out.append(f"port {port.name!r} names an unknown QoS preset {port.qos!r} ({', '.join(PRESETS)})")
        if spec.category == Category.SOURCE and port.direction == Direction.IN:
            out.append(f"a source declares input port {port.name!r}")
        if spec.category == Category.SINK and port.direction == Direction.OUT:
            out.append(f"a sink declares output port {port.name!r}")
    seen = set()
    for p in spec.params:
        if p.name in seen:
            out.append(f"param {p.name!r} is declared twice")
        seen.add(p.name)
        if p.type not in _PARAM_TYPES:
            out.append(f"param {p.name!r} has unknown type {p.type!r} ({', '.join(_PARAM_TYPES)})")
            continue
        if p.default is REQUIRED or p.default is None:
            continue
        # the default must pass the check every given value passes (a tuple default of a
        # list param is fine: a frozen spec may hold tuples)
        default = list(p.default) if p.type == "list" and isinstance(p.default, tuple) else p.default
        problems = param_check.param_problems(p, default)
        if problems:
            pr = problems[0]
            out.append(f"param {p.name!r}: " + {
                param_check.TYPE: f"default {p.default!r} is not of type {p.type}",
                param_check.ENUM: f"default {p.default!r} is not one of {list(p.enum or ())}",
                param_check.MINIMUM: f"default {p.default!r} is outside [{p.minimum}, {p.maximum}]",
                param_check.MAXIMUM: f"default {p.default!r} is outside [{p.minimum}, {p.maximum}]",
                param_check.FINITE: f"default {p.default!r} is not a finite number",
                param_check.SECRET_ENV: "default does not name an environment variable (secret_env)",
            }.get(pr.kind, f"default item {pr.index} {pr.value!r} is not of type {p.items}"))
    return out


@dataclasses.dataclass
class PluginEntry:
    name: str
    spec: Optional[PluginSpec] = None
    cls: Optional[type] = None
    dist: str = ""                        # distribution (package) that registered it
    error: Optional[str] = None           # why it cannot be used; None when usable
    value: str = ""                       # "module:Class" as registered
    api_incompatible: bool = False        # refused because of its plugin API version
    warnings: List[str] = dataclasses.field(default_factory=list)  # spec_problems(); not a refusal

    @property
    def ok(self) -> bool:
        return self.error is None


def _check_class(name: str, cls: object, where: str) -> Tuple[Optional[PluginSpec], Optional[str], bool]:
    """(spec, error, api_incompatible) for a class registered as plugin ``name``."""
    if not isinstance(cls, type) or not issubclass(cls, NodeLogic):
        return None, f"plugin {name!r} ({where}) is not a NodeLogic subclass", False
    spec = getattr(cls, "spec", None)
    if not isinstance(spec, PluginSpec):
        return None, f"plugin {name!r} ({where}) has no `spec = PluginSpec(...)` class attribute", False
    if spec.name != name:
        return spec, (f"plugin {where} is registered as {name!r} but its spec names it {spec.name!r};"
                      " make the entry point name and PluginSpec.name equal"), False
    try:
        compatible = api_compatible(spec.api_version)
    except ValueError as exc:
        return spec, f"plugin {name!r} ({where}) declares an invalid api_version: {exc}", True
    if not compatible:
        return spec, (f"plugin {name!r} ({where}) targets plugin API {spec.api_version}, but this runtime "
                      f"implements plugin API {PLUGIN_API_VERSION} (compatible: same major version and a "
                      "minor version no newer than the runtime's); install a version of the plugin built for "
                      f"API {PLUGIN_API_VERSION.split('.')[0]}.x"), True
    return spec, None, False


class Registry:
    """Installed plugins by name."""

    def __init__(self, entries: Iterable[PluginEntry] = ()) -> None:
        self._entries: Dict[str, PluginEntry] = {}
        for e in entries:
            self._entries[e.name] = e

    def names(self) -> List[str]:
        return sorted(self._entries)

    def entries(self) -> List[PluginEntry]:
        return [self._entries[n] for n in self.names()]

    def get(self, name: str) -> Optional[PluginEntry]:
        return self._entries.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def load_class(self, name: str) -> type:
        """The plugin's NodeLogic class; raises :class:`PluginError` saying why it cannot be used."""
        entry = self._entries.get(name)
        if entry is None:
            import difflib
            close = difflib.get_close_matches(name, self.names(), n=3)
            more = f"; did you mean {', '.join(close)}?" if close else ""
            raise PluginError(f"no plugin named {name!r} is installed{more}"
                              " (`schnitzel plugins` lists installed plugins)")
        if entry.error is not None or entry.cls is None:
            raise PluginError(entry.error or f"plugin {name!r} could not be loaded")
        return entry.cls

    @classmethod
    def from_classes(cls, classes: Iterable[type], dist: str = "<test>") -> "Registry":
        """A registry of the given classes, named by their ``spec.name`` (tests, embedding)."""
        entries = []
        for c in classes:
            spec = getattr(c, "spec", None)
            name = spec.name if isinstance(spec, PluginSpec) else getattr(c, "__name__", str(c))
            where = f"{getattr(c, '__module__', '?')}:{getattr(c, '__qualname__', '?')}"
            spec, error, api_bad = _check_class(name, c, where)
            entries.append(PluginEntry(name=name, spec=spec, cls=c, dist=dist, error=error,
                                       value=where, api_incompatible=api_bad,
                                       warnings=spec_problems(spec) if spec is not None else []))
        return cls(entries)


def _dist_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ""
    try:
        return dist.metadata["Name"] or dist.name
    except Exception:  # noqa: BLE001 - a broken METADATA must not hide the plugin
        return getattr(dist, "name", "") or ""


def load_registry(group: str = ENTRY_POINT_GROUP) -> Registry:
    """Every plugin registered under ``group``; broken ones kept with an ``error``."""
    entries: Dict[str, PluginEntry] = {}
    seen: Dict[str, str] = {}
    for ep in metadata.entry_points(group=group):
        if ep.name in seen:
            if seen[ep.name] == ep.value:
                continue  # the same distribution found twice on sys.path
            entries[ep.name].error = (
                f"plugin name {ep.name!r} is registered twice: {seen[ep.name]} "
                f"({entries[ep.name].dist}) and {ep.value} ({_dist_name(ep)}); uninstall one of them")
            continue
        seen[ep.name] = ep.value
        dist = _dist_name(ep)
        entry = PluginEntry(name=ep.name, dist=dist, value=ep.value)
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the others
            entry.error = (f"plugin {ep.name!r} ({ep.value}, from {dist or 'unknown package'}) failed to "
                           f"import: {type(exc).__name__}: {exc}")
            entries[ep.name] = entry
            continue
        spec, error, api_bad = _check_class(ep.name, obj, ep.value)
        entry.spec, entry.error, entry.api_incompatible = spec, error, api_bad
        entry.warnings = spec_problems(spec) if spec is not None else []
        entry.cls = obj if isinstance(obj, type) else None
        entries[ep.name] = entry
    return Registry(entries.values())

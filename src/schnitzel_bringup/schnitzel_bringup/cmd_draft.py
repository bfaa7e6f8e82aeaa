"""``schnitzel draft``: describe the graph you want; a language model drafts it, the validator checks it.

    schnitzel draft "REQUEST" -o GRAPH.yaml [--base-url URL] [--model NAME] [--rounds N]
    schnitzel draft --from RUNNING.yaml "REQUEST" [-o NEW.yaml] [--yes]

Writes GRAPH.yaml and its drafted tests GRAPH.test.yaml only when the graph
validates and the tests refer to its nodes and ports; otherwise nothing is
written and the last problems are printed. With ``--from`` the new version's
difference to the running graph is shown and applied through ``schnitzel
apply`` only after the user confirms (``--yes`` for scripts). The logic lives
in :mod:`schnitzel_bringup.draft`; docs/drafting.md.

Exit codes: 0 drafted (and applied when confirmed); 1 no valid graph, the model
server failed, or the apply failed; 2 bad arguments; 3 (apply) no manager answers.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Any, List, Optional

import typer

from .draft import DraftError, DraftResult, Round
from .synth import PluginDirError, Synthesizer


class _Exit(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _err(message: str) -> None:
    print(f"schnitzel draft: {message}", file=sys.stderr)


def _sibling(graph_path: Path, suffix: str) -> Path:
    stem = graph_path.name
    for ext in (".yaml", ".yml"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    return graph_path.with_name(stem + suffix)


def tests_path_for(graph_path: Path) -> Path:
    """``dock.yaml`` -> ``dock.test.yaml`` (next to the graph)."""
    return _sibling(graph_path, ".test.yaml")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _confirm(question: str) -> bool:
    print(f"{question} [y/N] ", end="", flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        answer = ""
    if not answer:
        print()
    return answer.strip().lower() in ("y", "yes")


def do_draft(request: str, output: Optional[str], from_graph: Optional[str], base_url: Optional[str],
             model: Optional[str], rounds: int, timeout: float, no_schema: bool, log_file: Optional[str],
             force: bool, yes: bool, wait: float, apply_timeout: float, synthesize: bool = False,
             synth_timeout: float = 60.0) -> int:
    from schnitzel_core.registry import load_registry

    from .draft import draft_graph
    from .llm_client import ChatClient, LLMConfig

    cfg = LLMConfig.resolve(base_url, model, timeout, use_schema=not no_schema)
    if not request or not request.strip():
        raise _Exit("the request is empty: say what the graph should do, e.g. "
                    "schnitzel draft \"read the lobby camera and count people\" -o lobby.yaml", 2)
    if rounds < 0:
        raise _Exit("--rounds must be >= 0", 2)
    if synth_timeout <= 0:
        raise _Exit("--synth-timeout must be > 0", 2)
    current = current_text = None
    if from_graph is not None:
        src = Path(from_graph)
        if not src.is_file():
            raise _Exit(f"--from {from_graph}: no such file; --from takes the running graph's file (the one "
                        "given to `schnitzel run` or last applied)", 2)
        from schnitzel_core.graph_loader import GraphLoadError, load_graph

        try:
            current_text = src.read_text(encoding="utf-8")
            current = load_graph(src)
        except GraphLoadError as exc:
            first = exc.issues[0] if exc.issues else exc
            raise _Exit(f"--from {from_graph}: cannot read the running graph: {first}", 2) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise _Exit(f"--from {from_graph}: cannot read it: {exc}", 2) from None
        out = Path(output) if output else _sibling(src, ".draft.yaml")
    else:
        if not output:
            raise _Exit("-o/--output is required: the file to write the drafted graph to (e.g. -o dock.yaml)", 2)
        out = Path(output)
    if out.suffix not in (".yaml", ".yml"):
        raise _Exit(f"-o {out}: the graph file must end in .yaml or .yml", 2)
    tests_out = tests_path_for(out)
    if from_graph is not None and out.resolve() == Path(from_graph).resolve():
        raise _Exit(f"-o {out} is the running graph's file; write the new version to another file", 2)
    for p in (out, tests_out):
        if p.exists() and not force:
            raise _Exit(f"{p} exists; pass --force to overwrite it", 2)
    if not out.parent.is_dir():
        raise _Exit(f"-o {out}: directory {out.parent} does not exist", 2)

    log_fh: Optional[IO[str]] = None
    if log_file:
        try:
            log_fh = open(log_file, "a", encoding="utf-8")
        except OSError as exc:
            raise _Exit(f"--log {log_file}: cannot open it: {exc}", 2) from None

    def on_round(r: Round) -> None:
        print(f"schnitzel draft: {r.line()}", file=sys.stderr)
        if log_fh is not None:
            log_fh.write(json.dumps(r.to_dict()) + "\n")
            log_fh.flush()

    registry = load_registry()
    synth = None
    if synthesize:
        from .synth import plugin_dir

        synth = Synthesizer(plugin_dir(), synth_timeout)
    print(f"schnitzel draft: asking {cfg.model} at {cfg.endpoint} (up to {rounds} repair round(s))", file=sys.stderr)
    try:
        try:
            result: DraftResult = draft_graph(request, ChatClient(cfg), registry, rounds, current_text, current,
                                              file=str(out), log=on_round, synth=synth)
        finally:
            if log_fh is not None:
                log_fh.close()
        return _finish(result, request, rounds, out, tests_out, from_graph, current, yes, wait, apply_timeout,
                       synth, registry)
    finally:
        if synth is not None:
            synth.discard()          # whatever was not registered goes


def _register_plugins(result: DraftResult, request: str, yes: bool, synth: Synthesizer) -> None:
    """Ask for each synthesized plugin the graph uses; register the approved ones (all or nothing)."""
    from .synth import ensure_on_path

    used = {n.plugin for n in result.graph.nodes}
    wanted = [s for s in result.staged if s.name in used]
    for s in wanted:
        spec = s.spec
        ports = ", ".join(f"{p.direction.value} {p.name}[{'|'.join(p.kinds)}]" for p in spec.ports)
        print(f"The graph needs a synthesized plugin {s.name} ({spec.category.value}; {ports}); its test passed.")
        print(f"  module: {s.module_path}")
        print(f"  test:   {s.test_path}")
        if not yes and not _confirm(f"Register plugin {s.name} (it will run as part of your graphs)?"):
            raise _Exit(f"plugin {s.name} was not approved; nothing was written or registered", 1)
    try:
        for s in wanted:
            synth.register(s, request)
            print(f"registered plugin {s.name} in {synth.root}")
        pth = ensure_on_path(synth.root) if wanted else None
    except OSError as exc:
        raise _Exit(f"cannot register in the plugin folder {synth.root}: {exc}; set SCHNITZEL_PLUGIN_DIR "
                    "to a writable folder", 2) from None
    except RuntimeError as exc:          # the module could not be read again
        raise _Exit(str(exc), 1) from None
    except PluginDirError as exc:
        _err(str(exc))         # registered, but this environment does not find the folder by itself
        pth = None
    if pth is not None:
        print(f"  {synth.root} is now on the Python path of this environment ({pth})")


def _finish(result: DraftResult, request: str, rounds: int, out: Path, tests_out: Path, from_graph: Optional[str],
            current: Any, yes: bool, wait: float, apply_timeout: float, synth: Optional[Synthesizer],
            registry: Any) -> int:
    from .draft import describe_graph, tests_yaml

    if not result.ok:
        lines = [p.line_text() for p in result.problems]
        raise _Exit(f"no valid graph after {len(result.rounds)} answer(s) ({rounds} repair round(s)); nothing was "
                    "written. Last problems:\n  " + "\n  ".join(lines)
                    + "\n(try a clearer request, more --rounds, or a larger model)", 1)

    assert result.graph_text is not None and result.graph is not None
    if synth is not None:
        _register_plugins(result, request, yes, synth)
    _write(out, result.graph_text)
    _write(tests_out, tests_yaml(result.tests or {}, out.name))
    print(f"wrote {out} (valid) and its tests {tests_out}")
    for w in result.warnings:
        print(f"  warning: {w}")
    print("What the graph does:")
    for line in describe_graph(result.graph, result.registry or registry):
        print(f"  {line}")
    if result.summary:
        print("In the model's words:")
        print("  " + result.summary.replace("\n", "\n  "))

    if from_graph is None:
        print(f"next: review both files, then `schnitzel run {out}`")
        return 0
    from schnitzel_core.graph_diff import describe_plan

    print(f"Changes to the running graph {current.name}:")
    for line in result.diff.lines():
        print(f"  {line}")
    print("Applying would:")
    for line in describe_plan(result.plan):
        print(f"  {line}")
    if not yes and not _confirm(f"Apply {out} to the running graph {current.name}?"):
        print(f"not applied; apply it later with `schnitzel apply {from_graph} {out}`")
        return 0
    from .cmd_replace import CliError, do_apply

    try:
        code = do_apply(str(from_graph), str(out), False, apply_timeout, wait)
    except CliError as exc:
        _err(f"apply: {exc}")
        return exc.code
    if code == 0:
        print(f"applied: the running graph is now {out}")
    return code


def register(app: typer.Typer) -> None:
    _add_prune(app)

    @app.command("draft")
    def draft_cmd(
        request: str = typer.Argument(..., help="what the graph should do, in plain words"),
        output: Optional[str] = typer.Option(None, "-o", "--output",
                                             help="graph file to write (tests go to NAME.test.yaml next to it)"),
        from_graph: Optional[str] = typer.Option(None, "--from",
                                                 help="change a running graph: its current graph file"),
        base_url: Optional[str] = typer.Option(None, "--base-url",
                                               help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 "
                                                    "(default: $SCHNITZEL_LLM_BASE_URL)"),
        model: Optional[str] = typer.Option(None, "--model", help="model name (default: $SCHNITZEL_LLM_MODEL)"),
        rounds: int = typer.Option(3, "--rounds", help="repair rounds after the first answer"),
        timeout: float = typer.Option(120.0, "--timeout", help="seconds to wait for each answer"),
        no_schema: bool = typer.Option(False, "--no-schema", help="do not ask for JSON-schema-constrained output"),
        log_file: Optional[str] = typer.Option(None, "--log", help="append one JSON line per round to this file"),
        force: bool = typer.Option(False, "--force", help="overwrite existing output files"),
        yes: bool = typer.Option(False, "--yes", "-y",
                                 help="answer yes to every question (apply with --from, register synthesized plugins)"),
        wait: float = typer.Option(5.0, "--wait", help="with --from: seconds to wait for the lifecycle manager"),
        apply_timeout: float = typer.Option(10.0, "--apply-timeout", help="with --from: seconds each apply step may take"),
        synthesize: bool = typer.Option(False, "--synthesize",
                                        help="let the model write a plugin (module + unit test) where none fits"),
        synth_timeout: float = typer.Option(60.0, "--synth-timeout", help="seconds a synthesized plugin's test may run"),
    ) -> None:
        """Draft a graph (and its tests) from a plain-language request; the validator checks every answer."""
        try:
            code = do_draft(request, output, from_graph, base_url, model, rounds, timeout, no_schema, log_file,
                            force, yes, wait, apply_timeout, synthesize, synth_timeout)
        except (_Exit, DraftError) as exc:
            _err(str(exc))
            raise typer.Exit(exc.code)
        except PluginDirError as exc:
            _err(str(exc))
            raise typer.Exit(2)
        raise typer.Exit(code)


def do_prune(paths: List[str], yes: bool) -> int:
    from .synth import graph_files, load_records, plugin_dir, plugins_used, remove

    root = plugin_dir()
    records = load_records(root)
    if not records:
        print(f"no synthesized plugins in {root}")
        return 0
    for p in paths:
        if not Path(p).exists():
            raise _Exit(f"{p}: no such file or directory (give the graph files or folders to look in)", 2)
    files = graph_files(paths)
    used = plugins_used(files)
    print(f"synthesized plugins in {root} (graphs looked at: {len(files)} file(s) under {', '.join(paths)}):")
    unused = []
    for name, rec in sorted(records.items()):
        by = used.get(name, [])
        state = f"used by {', '.join(by)}" if by else "unused"
        print(f"  {name} (created {rec.get('created', '?')}): {state}")
        if not by:
            unused.append(name)
    if not unused:
        print("nothing to prune")
        return 0
    if not yes and not _confirm(f"Remove {len(unused)} unused plugin(s): {', '.join(unused)}?"):
        print("nothing removed")
        return 0
    for name in unused:
        remove(root, name)
        print(f"removed {name}")
    return 0


def _add_prune(app: typer.Typer) -> None:
    """`schnitzel plugins prune`: added to the `plugins` group the validator's CLI module registers."""
    group = next((g.typer_instance for g in app.registered_groups if g.name == "plugins"), None)
    if group is None:
        return

    @group.command("prune")
    def prune_cmd(
        paths: List[str] = typer.Argument(None, help="graph files or folders whose graphs count as users (default: .)"),
        yes: bool = typer.Option(False, "--yes", "-y", help="remove without asking"),
    ) -> None:
        """List synthesized plugins (schnitzel draft --synthesize) and remove those no graph uses."""
        try:
            code = do_prune(list(paths or ["."]), yes)
        except _Exit as exc:
            _err(str(exc))
            raise typer.Exit(exc.code)
        raise typer.Exit(code)

"""Layering of the package (issue 20), checked on the source with ``ast`` (nothing is imported):

* the neutral core - models, packing, inference, evaluation, the robustness methods, the
  training-method interface (``avsr/method.py``) and ``avsr/utils`` - imports nothing from
  ``avsr.trainer``, neither directly nor through another ``avsr`` module (re-exports included);
* ``avsr/robust/*`` depends on the training-method interface (:mod:`avsr.method`), never on the trainer;
* command-line entry points live in ``avsr/bin`` (and the dispatcher ``avsr/cli.py``): no other
  module under ``avsr/`` defines ``main`` or runs as ``__main__``;
* every ``avsr/bin`` module is reachable from ``avsr --help``.

Imports under ``if TYPE_CHECKING:`` are annotations only and do not count.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set

ROOT = Path(__file__).resolve().parents[1]
AVSR = ROOT / "avsr"

CORE = ["avsr/models", "avsr/inference.py", "avsr/pack.py", "avsr/eval", "avsr/robust",
        "avsr/method.py", "avsr/utils"]


def _files(rel: str) -> List[Path]:
    p = ROOT / rel
    return sorted(p.rglob("*.py")) if p.is_dir() else ([p] if p.exists() else [])


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk_runtime(tree: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk`` that skips the bodies of ``if TYPE_CHECKING:``."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def imports_of(path: Path, module: str = "") -> Set[str]:
    """Absolute names of the modules ``path`` (module name ``module``, default from the path)
    imports at run time (any depth, lazy ones too), including ``importlib.import_module("...")``
    with a literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = module or _module_name(path)
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: Set[str] = set()
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)   # ``from avsr import trainer``
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) \
                == "import_module" and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            out.add(node.args[0].value)
    return out


def _avsr_graph() -> Dict[str, Set[str]]:
    """Module -> the ``avsr`` modules it imports, with the packages they are in (an import of
    ``avsr.a.b`` runs ``avsr/a/__init__.py`` too)."""
    known = {_module_name(p): p for p in AVSR.rglob("*.py")}
    graph: Dict[str, Set[str]] = {}
    for mod, path in known.items():
        deps: Set[str] = set()
        for name in imports_of(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                cand = ".".join(parts[:i])
                if cand in known and cand != "avsr":
                    deps.add(cand)
        graph[mod] = deps
    return graph


def _trainer_paths(start: str, graph: Dict[str, Set[str]]) -> List[str]:
    """One import chain from ``start`` to ``avsr.trainer`` (empty when there is none)."""
    seen = {start}
    stack = [(start, [start])]
    while stack:
        mod, chain = stack.pop()
        for dep in sorted(graph.get(mod, ())):
            if dep == "avsr.trainer" or dep.startswith("avsr.trainer."):
                return chain + [dep]
            if dep not in seen:
                seen.add(dep)
                stack.append((dep, chain + [dep]))
    return []


def test_core_imports_nothing_from_the_trainer():
    graph = _avsr_graph()
    bad = []
    for rel in CORE:
        files = _files(rel)
        assert files, f"{rel}: no Python files (moved? update CORE)"
        for path in files:
            chain = _trainer_paths(_module_name(path), graph)
            if chain:
                bad.append(" -> ".join(chain))
    assert not bad, "the neutral core depends on avsr.trainer:\n" + "\n".join(bad)


def test_robust_methods_use_the_method_interface_only():
    for path in _files("avsr/robust"):
        direct = {m for m in imports_of(path) if m == "avsr.trainer" or m.startswith("avsr.trainer.")}
        assert not direct, f"{path.relative_to(ROOT)} imports {sorted(direct)}"
        src = path.read_text(encoding="utf-8")
        if "(TrainingMethod)" in src:   # a method class: the interface comes from avsr.method
            assert "avsr.method" in imports_of(path), f"{path.relative_to(ROOT)}: TrainingMethod not from avsr.method"


def test_trainer_package_keeps_no_checkpoint_or_method_copies():
    # the one implementation of checkpoint I/O is avsr.utils.checkpoint, of the interface avsr.method
    assert not (AVSR / "trainer" / "checkpoint.py").exists()
    assert not (AVSR / "trainer" / "method.py").exists()


def test_no_main_outside_bin():
    bad = []
    for path in sorted(AVSR.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("avsr/bin/") or rel == "avsr/cli.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "main":
                bad.append(f"{rel}:{node.lineno}: def main")
            if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
                bad.append(f"{rel}:{node.lineno}: if __name__ == '__main__'")
    assert not bad, "entry points belong in avsr/bin (library modules have no main):\n" + "\n".join(bad)


def test_every_bin_module_is_an_avsr_command():
    from avsr import cli
    bin_mods = {f"avsr.bin.{p.stem}" for p in (AVSR / "bin").glob("*.py") if p.stem != "__init__"}
    reached = {m for _, _, mods in cli.COMMANDS.values() for m in mods}
    assert bin_mods - reached == set(), f"avsr/bin modules without an avsr command: {sorted(bin_mods - reached)}"
    assert reached - bin_mods == set(), f"commands naming missing modules: {sorted(reached - bin_mods)}"
    for m in bin_mods:   # each has main(argv)
        tree = ast.parse((AVSR / "bin" / (m.rpartition(".")[2] + ".py")).read_text(encoding="utf-8"))
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), f"{m}: no main()"
    p = subprocess.run([sys.executable, "-m", "avsr.cli", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    listed = {ln.split()[0] for ln in p.stdout.splitlines() if ln.startswith("  ") and ln.strip()}
    assert set(cli.COMMANDS) <= listed, f"not in avsr --help: {sorted(set(cli.COMMANDS) - listed)}"
    for cmd in ("train", "collect_stats", "prepare_rois", "tokens", "synthmisp", "report", "pack",
                "decode", "eval"):
        assert cmd in listed


def test_layering_scan_sees_imports(tmp_path):
    # the scanner itself: lazy, relative and importlib imports are seen; TYPE_CHECKING ones are not
    src = ("from typing import TYPE_CHECKING\nimport importlib\n"
           "if TYPE_CHECKING:\n    from avsr.trainer.trainer import Trainer\n"
           "def f():\n    from ..trainer import rng\n    importlib.import_module('avsr.trainer.method')\n")
    probe = tmp_path / "probe.py"
    probe.write_text(src, encoding="utf-8")
    got = imports_of(probe, "avsr.robust.probe")
    assert {"avsr.trainer", "avsr.trainer.rng", "avsr.trainer.method"} <= got
    assert "avsr.trainer.trainer" not in got and "avsr.trainer.trainer.Trainer" not in got

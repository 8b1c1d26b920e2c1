"""docs/DESIGN.md's "Where is" table names symbols that exist (file:symbol, or a shell function of a
recipe's run.sh)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _where_is_refs():
    text = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    section = text.split("## Where is", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"`([\w/.]+\.(?:py|sh)):([\w.]+)`", section)


def _py_has(path: Path, dotted: str) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    scope = tree.body
    for part in dotted.split("."):
        found = None
        for node in scope:
            names = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if part in names:
                found = node
                break
        if found is None:
            return False
        scope = getattr(found, "body", [])
    return True


def test_where_is_symbols_exist():
    refs = _where_is_refs()
    assert len(refs) >= 12, refs
    wanted = {"avsr/robust/mda_kd.py", "avsr/inference.py", "frontends/pairs.py", "recipes/misp2022/run.sh"}
    assert wanted <= {f for f, _ in refs}
    for f, sym in refs:
        path = ROOT / f
        assert path.is_file(), f
        if f.endswith(".sh"):
            assert re.search(rf"^{re.escape(sym)}\(\)", path.read_text(encoding="utf-8"), re.M), (f, sym)
        else:
            assert _py_has(path, sym), (f, sym)


def test_the_checker_fails_on_a_missing_symbol():
    assert not _py_has(ROOT / "avsr" / "inference.py", "Speech2Text.no_such_method")
    assert _py_has(ROOT / "avsr" / "inference.py", "Speech2Text.route")

"""Media constants live in one module, ``frontends/constants.py`` (issue 20).

An ``ast`` scan of the Python files of ``avsr/``, ``frontends/``, ``recipes/*/local/`` and
``scripts/`` fails on

* the numbers ``16000`` (sample rate) and ``640`` (samples per video frame), anywhere in code;
* ``96`` (stored ROI side) and ``88`` (model crop side), anywhere in code;
* ``25`` / ``25.0`` given to a frame-rate name (``fps``, ``FPS``, ``*_fps``, ``frame_rate``) in an
  assignment, a default argument or a keyword argument;

outside the constants module.  Docstrings and comments are text, not code, and are not scanned.
Places where such a number is not the media constant are allow-listed below with the reason.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSTANTS = "frontends/constants.py"
ALWAYS = {16000, 640, 96, 88}          # forbidden wherever they appear in code
FPS_VALUE = 25
FPS_NAME = re.compile(r"(^|_)(fps|frame_rate)$", re.IGNORECASE)

#: (file, value) -> why the number there is not the media constant.
ALLOWED: Dict[Tuple[str, float], str] = {
    ("avsr/synthmisp/render.py", 640): "camera frame width (MISP2022 far video is <= 640x360), not audio",
    ("avsr/synthmisp/generate.py", 640): "camera frame width (MISP2022 far video is <= 640x360), not audio",
    ("avsr/synthmisp/render.py", 88): "an RGB colour component (TONGUE = (176, 78, 88))",
    ("scripts/bench_roi.py", 640): "test clip frame width (640x360), not audio",
}


def _files() -> List[Path]:
    out = []
    for pattern in ("avsr/**/*.py", "frontends/**/*.py", "recipes/*/local/*.py", "scripts/*.py"):
        out += ROOT.glob(pattern)
    return sorted(p for p in set(out) if p.relative_to(ROOT).as_posix() != CONSTANTS)


def _num(node) -> object:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return node.value
    return None


def _target_names(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Attribute):
        yield node.attr
    elif isinstance(node, (ast.Tuple, ast.List)):
        for e in node.elts:
            yield from _target_names(e)


def literals(path: Path) -> Iterator[Tuple[int, float, str]]:
    """``(line, value, what)`` for every media-constant literal in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        v = _num(node)
        if v is not None and v in ALWAYS:
            yield node.lineno, v, "literal"
        # frame rates: names bound to 25
        pairs = []
        if isinstance(node, ast.Assign):
            if isinstance(node.value, (ast.Tuple, ast.List)) and len(node.targets) == 1 \
                    and isinstance(node.targets[0], (ast.Tuple, ast.List)):
                pairs += [(n, e) for t, e in zip(node.targets[0].elts, node.value.elts)
                          for n in _target_names(t)]
            else:
                pairs += [(n, node.value) for t in node.targets for n in _target_names(t)]
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            pairs += [(n, node.value) for n in _target_names(node.target)]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            pos = a.posonlyargs + a.args
            pairs += [(x.arg, d) for x, d in zip(pos[len(pos) - len(a.defaults):], a.defaults)]
            pairs += [(x.arg, d) for x, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
        elif isinstance(node, ast.Call):
            pairs += [(k.arg, k.value) for k in node.keywords if k.arg]
        for name, value in pairs:
            if FPS_NAME.search(name) and _num(value) == FPS_VALUE:
                yield value.lineno, FPS_VALUE, f"frame rate {name} = {value.value!r}"
        # 25.0 as a divisor of frame counts (``n / 25.0``) is a frame rate too
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and _num(node.right) == FPS_VALUE \
                and isinstance(node.right.value, float):
            yield node.lineno, FPS_VALUE, "division by 25.0 (frames -> seconds)"


def test_no_media_literals_outside_the_constants_module():
    bad = []
    for path in _files():
        rel = path.relative_to(ROOT).as_posix()
        for line, v, what in literals(path):
            if (rel, v) not in ALLOWED:
                bad.append(f"{rel}:{line}: {what} {v!r} (use frontends.constants)")
    assert not bad, "media constants outside frontends/constants.py:\n" + "\n".join(bad)


def test_allow_list_is_current():
    # an entry whose literal is gone must be removed (so the list only shrinks)
    found = {(p.relative_to(ROOT).as_posix(), v) for p in _files() for _, v, _ in literals(p)}
    stale = sorted(k for k in ALLOWED if k not in found and (ROOT / k[0]).exists())
    assert not stale, f"allow-list entries without a literal any more (remove them): {stale}"


def test_constants_values():
    from frontends import constants as C
    assert (C.SAMPLE_RATE, C.VIDEO_FPS, C.ROI_SIZE, C.CROP_SIZE) == (16000, 25, 96, 88)
    assert C.SAMPLES_PER_FRAME == C.SAMPLE_RATE // C.VIDEO_FPS == 640
    assert C.SAMPLE_RATE % C.VIDEO_FPS == 0 and C.SAMPLES_PER_FRAME % C.FBANK_HOP_LENGTH == 0
    src = (ROOT / CONSTANTS).read_text(encoding="utf-8")
    assert not [n for n in ast.walk(ast.parse(src)) if isinstance(n, (ast.Import, ast.ImportFrom))]


@pytest.mark.parametrize("src,hits", [
    ("x = 16000\n", 1), ("def f(sr=16_000): pass\n", 1), ("FPS = 25\n", 1), ("g(fps=25.0)\n", 1),
    ("video_fps: float = 25.0\n", 1), ("W, H, FPS = 640, 360, 25\n", 2), ("t = n / 25.0\n", 1),
    ("SEGMENT_MAX = 25\n", 0), ('"""16000 in a docstring"""\n', 0), ("size = 96\n", 1),
])
def test_scanner(tmp_path, src, hits):
    p = tmp_path / "probe.py"
    p.write_text(src, encoding="utf-8")
    assert len(list(literals(p))) == hits

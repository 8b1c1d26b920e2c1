"""The submission holds exactly the segment file's ids, in its order."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "avsr.cli", "submission", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


def test_submission_exact_ids(tmp_path):
    ids = tmp_path / "ids"
    ids.write_text("S002_R_000100-000200\nS001_R_000000-000120\nS003_R_000300-000400\n")
    hyp = tmp_path / "text"
    hyp.write_text("S001_R_000000-000120 你好\nS002_R_000100-000200 再见\n")   # S003 was not decodable
    out = tmp_path / "sub" / "eval.txt"
    p = _run("--hyp", hyp, "--ids", ids, "--out", out)
    assert p.returncode == 0, p.stderr
    assert out.read_text().splitlines() == ["S002_R_000100-000200 再见", "S001_R_000000-000120 你好",
                                            "S003_R_000300-000400"]
    assert "S003_R_000300-000400" in p.stderr
    hyp.write_text("S001_R_000000-000120 你好\nS009_R_000000-000100 x\n")      # a decode of another set
    p = _run("--hyp", hyp, "--ids", ids, "--out", out)
    assert p.returncode == 1 and "S009_R_000000-000100" in p.stderr and str(hyp) in p.stderr
    ids.write_text("a\nb\na\n")
    p = _run("--hyp", hyp, "--ids", ids, "--out", out)
    assert p.returncode == 1 and f"{ids}:3" in p.stderr

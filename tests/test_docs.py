"""The user docs: every committed report re-renders from its committed JSON byte for byte (so re-running
the renderer gives no git diff), the README's tables stay short, and no user doc is a dated lab log
(history lives in docs/notebook/)."""
import glob
import os
import re

import pytest

from avsr.eval.render import render_docs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_committed_reports_rerender_byte_for_byte(tmp_path):
    pages = render_docs(ROOT, str(tmp_path))
    assert {"docs/BENCHMARKS.md", "recipes/synthmisp/RESULTS.md", "recipes/misp2022/RESULTS.md"} <= set(pages)
    for rel in pages:
        with open(os.path.join(ROOT, rel), "rb") as f, open(os.path.join(tmp_path, rel), "rb") as g:
            assert f.read() == g.read(), f"{rel} differs from its render: run `python -m avsr.bin.report --docs`"


def test_every_recipe_has_results():
    for d in glob.glob(os.path.join(ROOT, "recipes", "*", "run.sh")):
        assert os.path.isfile(os.path.join(os.path.dirname(d), "RESULTS.md")), d


def test_readme_table_cells_are_short():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        rows = [line for line in f if line.startswith("|")]
    assert rows
    for line in rows:
        for cell in line.strip().strip("|").split("|"):
            assert len(cell.strip()) <= 300, cell[:80]


USER_DOCS = (["README.md"] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
             + sorted(glob.glob(os.path.join(ROOT, "recipes", "*", "RESULTS.md"))))
LAB_NOTE = re.compile(r"\bissues? \d|(?<![\w&])#\d+\b|\b(19|20)\d\d-[01]\d-[0-3]\d\b", re.IGNORECASE)


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: os.path.relpath(os.path.join(ROOT, p), ROOT))
def test_user_docs_name_no_issue_and_no_date(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        hits = [(i + 1, m.group(0)) for i, line in enumerate(f) for m in LAB_NOTE.finditer(line)]
    assert not hits, f"{path}: issue numbers or dates (lab notes go to docs/notebook/): {hits[:5]}"

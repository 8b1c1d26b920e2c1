#!/usr/bin/env python
"""Render a leaderboard JSON (schema: avsr/eval/leaderboard.py) that is not the committed
docs/results/leaderboard.json into a notebook page, with an introduction paragraph.

usage: leaderboard_page.py LEADERBOARD.json OUT.md "INTRO"
"""
import json
import sys

from avsr.eval.leaderboard import validate_leaderboard
from avsr.eval.render import leaderboard_md


def main(src, out, intro):
    lb = json.load(open(src, encoding="utf-8"))
    validate_leaderboard(lb, src)
    lines = leaderboard_md(lb)
    lines[0] = "# " + lines[0].lstrip("# ")
    md = "\n".join([lines[0], "", intro, ""] + lines[1:]).replace(
        "`docs/results/leaderboard.json`", f"`{src}`").replace("`docs/results/leaderboard.png`", "the PNG beside it")
    open(out, "w", encoding="utf-8").write(md.rstrip("\n") + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])

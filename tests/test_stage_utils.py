"""scripts/stage_utils.sh: which done markers a re-run stage removes."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKERS = ["6_train_a0", "12_decode", "15_rows_train_core", "16_rows_select_core", "17_rows_sweep_core",
           "16_rows_select_leaderboard", "18_rows_table_leaderboard", "17_rows_sweep_full"]


def _run_stage(tmp_path, n, name):
    stages = tmp_path / "stages"
    stages.mkdir(exist_ok=True)
    for p in stages.iterdir():
        p.unlink()
    for m in MARKERS:
        if m != f"{n}_{name}":                    # the stage itself is not done yet
            (stages / f"{m}.done").write_text("stage\n")
    script = (f'set -euo pipefail; stage=0; stop_stage=100; force=false; exp_dir="{tmp_path}"; '
              f'source "{ROOT}/scripts/stage_utils.sh"; f() {{ echo ran; }}; run_stage {n} {name} f sig')
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ran" in r.stdout
    return sorted(p[:-5] for p in os.listdir(stages))


def test_rows_stage_removes_only_its_own_tables_later_markers(tmp_path):
    left = _run_stage(tmp_path, 15, "rows_train_leaderboard")
    # the leaderboard's later stages go; the core's and the full table's stay, as do the stages before
    assert "16_rows_select_leaderboard" not in left and "18_rows_table_leaderboard" not in left
    for kept in ["6_train_a0", "12_decode", "15_rows_train_core", "16_rows_select_core", "17_rows_sweep_core",
                 "17_rows_sweep_full"]:
        assert kept in left
    assert "15_rows_train_leaderboard" in left     # its own marker, written when it finished


def test_recipe_stage_removes_every_later_marker(tmp_path):
    left = _run_stage(tmp_path, 6, "train_a0")
    assert left == ["6_train_a0"]
    left = _run_stage(tmp_path, 16, "rows_select_core")
    assert "17_rows_sweep_core" not in left and "17_rows_sweep_full" in left and "18_rows_table_leaderboard" in left

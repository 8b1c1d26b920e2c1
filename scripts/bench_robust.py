#!/usr/bin/env python3
"""Issue-4 table on a recipe exp dir: train the robust rows, choose on dev, sweep on eval, test the claims.

    python scripts/bench_robust.py --exp_dir recipes/synthmisp/exp/synthmisp_mini \\
        --data_dir recipes/synthmisp/data/synthmisp_mini --config conf/mini.yaml \\
        --table core --distances mse --kd_weight 10 --out docs/results/robust_core.json

Needs the recipe's A0 and AV0 (stages 5-8: ``train_a0``, ``train_av0``, ``stats``).  Every row is an
``avsr.bin.train`` run into ``<rows_dir>/<ROW>`` (default ``<exp_dir>/rows``; a re-run resumes an
interrupted row and skips a finished one from the same init, --epochs, --lr, --warmup and ``--method``
settings; a row made otherwise is moved aside with its pack and sweeps), so the whole script resumes.
Rows (see docs/ROBUSTNESS.md):

* AV1 / AV2: init = AV0's init (A0 + V's visual branch), D_prob 1.0 / 0.5
* AV3: init AV0, D_prob 0.5
* AV5-<dist>[-w<λ>][-<tap>]: AV3 + MDA-KD from the frozen AV0 (tap ``--kd_tap``), one row per
  (distance, λ_KD) of the grid ``--distances`` × (``--kd_weight`` + ``--kd_weights``); with more than one,
  the row with the lowest dev CER (mean over random loss 0 / 0.5 / 1.0, CTC greedy) wins, a tie going to
  the earlier distance, then the earlier weight (one joint minimum: choosing the distance at one λ and
  then λ for that distance alone depends on the order).  Then, with that distance and weight, each
  further tap of ``--kd_taps`` (e.g. ``fusion``: every per-fusion-layer tap) is a row scored on dev only
  (same criterion); AV5 keeps ``--kd_tap`` (``fused``, the issue's default) and the dev scores are
  reported.  The core table (``make bench-robust``) gives one distance and weight, the recipe's default
  (mse, λ 10), which the full table's ablation (``make bench-full``) chose on dev: it then trains just
  that AV5
* AV6: MS-Adapter on AV5 (base frozen, audio-only); threshold 0 (paper) and one tuned on dev.  Its row
  dir is ``AV6-on-<AV5 row>`` (and its threshold sweep ``dev_threshold-<AV5 row>``), so the core and the
  full table can share a rows dir when they choose different AV5 rows.  ``--adapter_epochs`` (default
  ``--epochs``) sets the adapters' epochs; given several, each is a row ``AV6-on-<AV5 row>-e<N>`` (unless
  N = ``--epochs``) and the lowest dev CER with no video (CTC greedy) wins, a tie going to the earlier value
* S.1/.3/.5/.7 (full table): init AV0, D_prob 1.0, fixed rate 0.1 / 0.3 / 0.5 / 0.7

Rows other than AV6 train with AV0's own audio augmentation (the ``audio_noise`` methods in
``train_av0/config.yaml``, i.e. the recipe's ``--av_noise``); AV6's adapters train on clean audio.

Dropout rows draw the rate from U(0, 1] per dropped sample (pattern ``random``).  Fine-tunes run a
fixed ``--epochs`` from their init (``model.pth`` = average of all their epochs: nothing chosen on
eval).  The eval sweep decodes A0, AV0 and the rows with beam search (core) or CTC greedy
(``--search greedy``); the claims use paired bootstrap over utterances (1000 resamples).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _bench_common import command_line, emit, machine_info  # noqa: E402
from avsr.bin.eval import parse_models  # noqa: E402

DISTANCES = ("mse", "cosine", "gauss_kl", "mmd")
RATES = (0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.75, 1.0)
THRESHOLDS = (0.0, 0.1, 0.25, 0.5, 0.75)
SEL_RATES = (0, 0.5, 1.0)                             # dev criterion of the MDA-KD choices:
SEL_CONDS = tuple(f"random@{r:g}" for r in SEL_RATES)  # mean greedy CER at these random-loss rates


def _train_config(exp_dir):
    """The config.yaml that avsr.bin.train wrote into ``exp_dir``."""
    import yaml
    with open(os.path.join(exp_dir, "config.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def kd_row(distance, weight, tap, default_tap="fused"):
    """Row name of an AV5 variant: ``AV5-<dist>``, then ``-w<λ>`` unless λ_KD is 1, then ``-<tap>`` unless
    the tap is the default (so every KD setting has its own row dir)."""
    return (f"AV5-{distance}" + ("" if float(weight) == 1.0 else f"-w{float(weight):g}")
            + ("" if tap == default_tap else f"-{tap}"))


def choose_on_dev(grid, score):
    """The key of ``grid`` (``{key: row}`` in the order tried, e.g. ``(distance, weight)`` or adapter epochs)
    whose row has the lowest ``score[row]``; ties go to the earlier key.  No scores (one row, nothing to
    choose): the first.  With scores, every row must have one."""
    order = list(grid)
    if not score:
        return order[0]
    missing = [r for r in grid.values() if r not in score]
    if missing:
        raise ValueError(f"no dev score for {missing}")
    return min(order, key=lambda k: (score[grid[k]], order.index(k)))


def av6_row(av5_row, epochs, default_epochs):
    """Row name of AV6 on ``av5_row``: ``AV6-on-<AV5 row>``, then ``-e<N>`` unless its adapters train the
    fine-tunes' default number of epochs."""
    return f"AV6-on-{av5_row}" + ("" if int(epochs) == int(default_epochs) else f"-e{int(epochs)}")


def _methods(extra):
    """The ``--method`` specs in a train command's arguments, as config.yaml stores them."""
    return [extra[i + 1] for i, x in enumerate(extra[:-1]) if x == "--method"]


def _init_specs(cfg):
    """The ``--init`` specs of a train config as a list (TrainerConfig stores one spec as a plain string)."""
    init = (cfg.get("trainer") or {}).get("init") or []
    return [init] if isinstance(init, str) else [str(x) for x in init]


class Bench:
    def __init__(self, args):
        self.a = args
        self.exp = os.path.abspath(args.exp_dir)
        self.data = os.path.abspath(args.data_dir)
        self.rows_dir = os.path.abspath(getattr(args, "rows_dir", None) or os.path.join(self.exp, "rows"))
        self.py = sys.executable
        self.times = {}
        os.makedirs(self.rows_dir, exist_ok=True)

    # ---------------------------------------------------------------- helpers
    def sh(self, cmd, log):
        print("+ " + " ".join(cmd), flush=True)
        with open(log, "a") as f:
            f.write("+ " + " ".join(cmd) + "\n")
            f.flush()
            r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise SystemExit(f"command failed (rc {r.returncode}); see {log}")

    def timed(self, key, fn):
        t0 = time.perf_counter()
        out = fn()
        self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - t0
        return out

    def av0_settings(self):
        """AV0's own ``--init`` specs (A0, plus V's visual branch when used) and its audio augmentation
        (``--method audio_noise:...`` arguments), from its config.yaml: the AV rows are AV0's recipe
        plus dropout / KD, so AV1 / AV2 start where AV0 started and every AV row trains with the same
        augmentation."""
        cfg = _train_config(os.path.join(self.exp, "train_av0"))
        aug = []
        for spec in cfg.get("methods") or []:
            if spec.split(":", 1)[0] == "audio_noise":
                aug += ["--method", spec]
        return _init_specs(cfg), aug

    def train(self, row, init, extra, freeze=(), epochs=None):
        """Train row ``row`` from ``init`` with ``extra`` arguments for ``epochs`` (default ``--epochs``);
        ``freeze``: parameter name prefixes not trained (``--freeze_param``)."""
        d = os.path.join(self.rows_dir, row)
        e = int(self.a.epochs if epochs is None else epochs)
        freeze = [str(x) for x in freeze]
        if os.path.isfile(os.path.join(d, "config.yaml")):
            cfg = _train_config(d)
            old = _init_specs(cfg)
            if old != [str(x) for x in init]:
                # e.g. AV6 after a different AV5 won on dev: the old row (finished or not) is for another init
                self.move_aside(row, d, f"was trained from {old}, not {list(init)}")
            else:
                # e.g. a re-run with another --epochs: a finished 2-epoch row is not a 4-epoch row
                tc = cfg.get("trainer") or {}
                want = {"max_epochs": e, "lr": self.a.lr, "warmup_steps": self.a.warmup}
                diff = {k: tc.get(k) for k, v in want.items() if tc.get(k) is None or float(tc[k]) != float(v)}
                methods = _methods(extra)
                frozen = [str(x) for x in tc.get("freeze_param") or ()]
                if diff:
                    self.move_aside(row, d, f"was trained with {diff}, not {want}")
                elif frozen != freeze:
                    self.move_aside(row, d, f"was trained with freeze_param {frozen}, not {freeze}")
                elif list(cfg.get("methods") or []) != methods:
                    # e.g. a row name reused for another λ_KD: the method settings are part of the row
                    self.move_aside(row, d, f"was trained with methods {cfg.get('methods')}, not {methods}")
        if os.path.isfile(os.path.join(d, "model.pth")) and os.path.isfile(os.path.join(d, "train_result.json")):
            print(f"{row}: trained ({d}/model.pth)", flush=True)
            return d
        os.makedirs(d, exist_ok=True)
        cmd = [self.py, "-m", "avsr.bin.train", "--config", self.a.config, "--mode", "audiovisual",
               "--train_data", os.path.join(self.data, "train"), "--valid_data", os.path.join(self.data, "dev"),
               "--token_list", os.path.join(self.data, "token_list", "char", "tokens.txt"),
               "--stats", os.path.join(self.exp, "stats", "feats_stats.json"), "--exp_dir", d,
               "--init", *init, *extra, *(["--freeze_param", *freeze] if freeze else []),
               "--set", f"trainer.max_epochs={e}", f"trainer.best_n={e}", f"trainer.patience={e + 1}",
               f"trainer.lr={self.a.lr}", f"trainer.warmup_steps={self.a.warmup}"]
        self.timed(f"train {row}", lambda: self.sh(cmd, os.path.join(self.rows_dir, f"{row}.log")))
        return d

    def move_aside(self, row, d, why):
        """Move row dir ``d`` to ``<d>.stale-<time>``, with its packed model and every sweep that decoded it."""
        base = stale = f"{d}.stale-{int(time.time())}"
        n = 1
        while os.path.exists(stale):           # two in the same second
            stale, n = f"{base}-{n}", n + 1
        print(f"{row}: {d} {why}; moved to {stale}", flush=True)
        os.replace(d, stale)
        packed = os.path.join(self.rows_dir, "packed", row)
        if not os.path.isdir(packed):
            return
        os.replace(packed, stale + ".packed")
        sweeps = os.path.join(self.rows_dir, "sweep")
        for name in sorted(os.listdir(sweeps)) if os.path.isdir(sweeps) else []:
            j = os.path.join(sweeps, name, "sweep.json")
            if os.path.isfile(j) and any(m.get("path") == os.path.abspath(packed)
                                         for m in json.load(open(j)).get("models", {}).values()):
                os.replace(os.path.join(sweeps, name), f"{stale}.sweep-{name}")

    def pack(self, row, d):
        out = os.path.join(self.rows_dir, "packed", row)
        if not os.path.isfile(os.path.join(out, "model.pth")):
            self.sh([self.py, "-m", "avsr.cli", "pack", "--exp_dir", d, "--out", out],
                    os.path.join(self.rows_dir, "pack.log"))
        return out

    def kd_dev_scores(self, sweep_name, models):
        """``{name: mean greedy dev CER over SEL_CONDS}`` of packed ``models`` (``{name: path}``): the
        dev criterion of every MDA-KD choice (distance, λ, tap)."""
        dev = self.sweep(sweep_name, [f"{m}={p}" for m, p in models.items()], "dev", greedy=True, rates=SEL_RATES,
                         segment=False, whole=False, snrs=False)
        return {m: mean_cer(dev, m, SEL_CONDS) for m in models}

    def train_kd(self, row, teacher, train_args, kd_cfg):
        """Train AV5 row ``row``: ``train_args`` plus MDA-KD from ``teacher`` with ``kd_cfg`` (distance, tap,
        weight), initialised from the teacher (a fine-tune from AV0: ``--ft_freeze`` applies)."""
        kd = json.dumps({"teacher": teacher, **kd_cfg})
        return self.train(row, [teacher], [*train_args, "--method", f"mda_kd:{kd}"], freeze=self.a.ft_freeze)

    def kd_ablation(self, sweep_name, teacher, train_args, rows, packed, current, current_score, current_row,
                    variants):
        """One AV5 row per ``variants`` entry ``key -> (row, kd settings)`` (trained into ``rows``, packed
        into ``packed``), scored on dev like the distances (mean greedy CER over ``SEL_CONDS``).
        Returns ``(scores with current's, best key, its row)``; a tie keeps ``current``."""
        made = {}
        for key, (r, kd_cfg) in variants.items():
            rows[r] = self.train_kd(r, teacher, train_args, kd_cfg)
            packed[r] = self.pack(r, rows[r])
            made[key] = r
        score = {current: current_score}
        if made:
            dev = self.kd_dev_scores(sweep_name, {r: packed[r] for r in made.values()})
            score.update({k: dev[r] for k, r in made.items()})
        win = min(score, key=lambda k: (score[k], k != current))
        return score, win, made.get(win, current_row)

    def adapters(self, av5_row, av5_dir, epochs_grid):
        """MS-Adapter rows on AV5 row ``av5_row`` (in ``av5_dir``; base frozen, audio-only input), one per
        ``epochs_grid`` value.  With more than one, each is decoded on dev with no video (``random@1``, CTC
        greedy, threshold 0: the adapter path) and the lowest CER wins, a tie going to the earlier value.
        Returns ``(scores {epochs: CER} or {}, chosen epochs, {epochs: (row, row dir, packed dir)})``."""
        made = {}
        for e in epochs_grid:
            r = av6_row(av5_row, e, self.a.epochs)
            d = self.train(r, [os.path.join(av5_dir, "model.pth")],
                           ["--method", "ms_adapter", "--set", f"model.adapter_rank={self.a.adapter_rank}"], epochs=e)
            made[e] = (r, d, self.pack(r, d))
        score = {}
        if len(made) > 1:
            dev = self.sweep(f"dev_adapter_epochs-{av5_row}", [f"E{e}={p}@0" for e, (_, _, p) in made.items()],
                             "dev", greedy=True, rates=(1.0,), segment=False, whole=False, snrs=False)
            score = {e: dev["cer"][f"E{e}"]["random@1"]["cer"] for e in made}
        chosen = choose_on_dev({e: e for e in made}, score)      # the epochs stand for their rows
        return score, chosen, made

    def sweep(self, name, models, split, greedy, rates=RATES, segment=True, whole=True, snrs=True,
              extra=()):
        out = os.path.join(self.rows_dir, "sweep", name)
        j = os.path.join(out, "sweep.json")
        # done when sweep.json has these models, written as avsr eval writes them
        want = {n: {"path": os.path.abspath(p), "adapter_threshold": t} for n, (p, t) in parse_models(models).items()}
        if os.path.isfile(j):
            r = json.load(open(j))
            if r["models"] == want:
                print(f"sweep {name}: done ({j})", flush=True)
                return r
        cmd = [self.py, "-m", "avsr.cli", "eval", "--models", *models, "--data_dir", os.path.join(self.data, split),
               "--out_dir", out, "--batch_size", "16", "--rates", *map(str, rates)]
        cmd += ["--ctc_greedy"] if greedy else ["--beam_size", str(self.a.beam_size)]
        if not segment:
            cmd += ["--segment_rates"]
        if not whole:
            cmd += ["--no_whole"]
        if not snrs:
            cmd += ["--snrs"]
        cmd += list(extra)
        os.makedirs(out, exist_ok=True)
        self.timed(f"sweep {name}", lambda: self.sh(cmd, os.path.join(out, "log")))
        return json.load(open(j))


def mean_cer(sweep, model, conds):
    return sum(sweep["cer"][model][c]["cer"] for c in conds) / len(conds)


def paired(sweep, a, b, cond, seed=0):
    from avsr.eval.metrics import paired_bootstrap
    return paired_bootstrap(sweep["utt_errors"][a][cond], sweep["utt_errors"][b][cond], sweep["utt_ref_chars"],
                            num=1000, seed=seed)


def claims(sw, best_dropout):
    """The issue's claims on the eval sweep (paired bootstrap; B better than A when p < 0.05)."""
    r = {f"random@{x:g}": x for x in RATES}
    c0, c1 = "random@0", "random@1"
    out = {}
    p0, p1 = paired(sw, "A0", "AV0", c0), paired(sw, "AV0", "A0", c1)
    out["1_bias_reproduced"] = {
        "AV0_vs_A0_rate0": p0, "A0_vs_AV0_rate1": p1,
        "holds": p0["cer_b"] < p0["cer_a"] and p0["p_b_not_better"] < 0.05
                 and p1["cer_a"] > p1["cer_b"] and p1["p_b_not_better"] < 0.05}
    margin = 0.005
    ni = {"AV6_vs_AV0_rate0": {"AV6": sw["cer"]["AV6"][c0]["cer"], "AV0": sw["cer"]["AV0"][c0]["cer"]}}
    ni["AV6_vs_AV0_rate0"]["holds"] = ni["AV6_vs_AV0_rate0"]["AV6"] <= ni["AV6_vs_AV0_rate0"]["AV0"] + margin
    per = {}
    for c in list(r) + [k for k in sw["conditions"] if not k.startswith("random@")]:
        a6, a0 = sw["cer"]["AV6"][c]["cer"], sw["cer"]["A0"][c]["cer"]
        per[c] = {"AV6": a6, "A0": a0, "holds": a6 <= a0 + margin}
    ni["AV6_vs_A0_every_condition"] = per
    ni["AV6_vs_A0_every_rate_holds"] = all(v["holds"] for k, v in per.items() if k in r)   # the A0 half
    ni["holds"] = ni["AV6_vs_AV0_rate0"]["holds"] and ni["AV6_vs_A0_every_rate_holds"]
    ni["margin_abs"] = margin
    out["2_non_inferiority"] = ni
    da = sw.get("degradation_area", {})
    sup = {"degradation_area": da, "best_dropout_only_row": best_dropout}
    if best_dropout in da and "AV6" in da and da[best_dropout] > 0:
        sup["area_reduction_vs_best_dropout"] = 1 - da["AV6"] / da[best_dropout]
    sup["AV6_vs_AV0_rates_ge_0.5"] = {c: paired(sw, "AV0", "AV6", c) for c, x in r.items() if x >= 0.5}
    sup["holds"] = (sup.get("area_reduction_vs_best_dropout", -1) >= 0.20
                    and all(v["p_b_not_better"] < 0.05 for v in sup["AV6_vs_AV0_rates_ge_0.5"].values()))
    out["3_superiority"] = sup
    return out


def study_trend(sw):
    """Claim 4 over S.1 < S.3 < S.5 < S.7 (training dropout rate): relative CER against A0's output
    (mean over the random-loss rates) should fall, the A0 similarity (diagonal dominance at rate 0,
    and linear CKA) should rise.  Kendall's tau over the 4 rows (+1: rising)."""
    rows = [m for m in ("S.1", "S.3", "S.5", "S.7") if m in sw["cer"]]
    if len(rows) < 2:
        return None
    rc = [c for c in sw["conditions"] if c.startswith("random@")]

    def tau(v):
        pairs = [(i, j) for i in range(len(v)) for j in range(i + 1, len(v))]
        return sum((v[j] > v[i]) - (v[j] < v[i]) for i, j in pairs) / len(pairs)
    rel = [sum(sw["cer"][m][c]["relative_cer_vs_baseline"] for c in rc) / len(rc) for m in rows]
    dd = [sw["similarity"][m]["0"]["diagonal_dominance"] for m in rows]
    cka = [sw["similarity"][m]["0"]["linear_cka"] for m in rows]
    out = {"rows": rows, "relative_cer_mean": rel, "diagonal_dominance_rate0": dd, "linear_cka_rate0": cka,
           "kendall_tau": {"relative_cer": tau(rel), "diagonal_dominance": tau(dd), "linear_cka": tau(cka)}}
    out["holds"] = out["kendall_tau"]["relative_cer"] < 0 and out["kendall_tau"]["diagonal_dominance"] > 0
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--exp_dir", required=True)
    ap.add_argument("--data_dir", required=True, help="recipe data dir base (train, dev, eval, token_list)")
    ap.add_argument("--config", required=True)
    ap.add_argument("--table", choices=["core", "full"], default="core")
    ap.add_argument("--rows_dir", help="where the rows, their packs and sweeps go (default <exp_dir>/rows)")
    ap.add_argument("--epochs", type=int, default=2, help="fixed fine-tune epochs of every row")
    ap.add_argument("--lr", type=float, default=0.0005)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--ft_freeze", nargs="*", default=[], metavar="PREFIX",
                    help="parameter name prefixes frozen in the fine-tunes from AV0 (AV3, AV5, S.x), e.g. every "
                         "part but the visual branch; not in AV1 / AV2 (their fusion layers start untrained) nor "
                         "AV6 (its base is frozen anyway)")
    ap.add_argument("--distances", nargs="+", default=list(DISTANCES))
    ap.add_argument("--kd_tap", default="fused")
    ap.add_argument("--kd_weight", type=float, default=1.0, help="first λ_KD of the (distance, λ_KD) grid (ties go to it)")
    ap.add_argument("--kd_weights", type=float, nargs="*", default=[],
                    help="further λ_KD values of the grid: every distance is trained at each (rows AV5-<dist>-w<λ>)")
    ap.add_argument("--kd_taps", nargs="*", default=[],
                    help="further taps tried on dev with the chosen distance and λ_KD (rows AV5-<dist>-w<λ>-<tap>)")
    ap.add_argument("--adapter_rank", type=int, default=8)
    ap.add_argument("--adapter_epochs", type=int, nargs="+", default=None,
                    help="fixed epochs of AV6's adapter training (default: --epochs); several: one row each "
                         "(AV6-on-<AV5 row>-e<N>), chosen on dev with no video (CTC greedy)")
    ap.add_argument("--beam_size", type=int, default=10)
    ap.add_argument("--search", choices=["beam", "greedy"], default="beam", help="search of the eval sweep")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    args.config = os.path.abspath(args.config)
    b = Bench(args)
    t_all = time.perf_counter()
    teacher = os.path.join(b.exp, "train_av0", "model.pth")
    av0_init, aug = b.av0_settings()
    if aug:
        print(f"AV rows train with AV0's audio augmentation: {aug}", flush=True)
    drop = ["--drop_rate", "0", "1", "--drop_pattern", "random", *aug]
    rows = {}
    rows["AV3"] = b.train("AV3", [teacher], ["--d_prob", "0.5", *drop], freeze=args.ft_freeze)
    weights = [args.kd_weight] + [w for w in dict.fromkeys(args.kd_weights) if w != args.kd_weight]
    grid = {(d, w): kd_row(d, w, args.kd_tap) for d in args.distances for w in weights}
    kd_args = ["--d_prob", "0.5", *drop]
    for (dist, w), row in grid.items():
        rows[row] = b.train_kd(row, teacher, kd_args, {"distance": dist, "tap": args.kd_tap, "weight": w})
    if args.table == "full":
        for r in (0.1, 0.3, 0.5, 0.7):
            rows[f"S.{int(r * 10)}"] = b.train(f"S.{int(r * 10)}", [teacher],
                                               ["--d_prob", "1.0", "--drop_rate", str(r), "--drop_pattern", "random",
                                                *aug], freeze=args.ft_freeze)
        rows["AV1"] = b.train("AV1", av0_init, ["--d_prob", "1.0", *drop])
        rows["AV2"] = b.train("AV2", av0_init, ["--d_prob", "0.5", *drop])
    packed = {"A0": os.path.join(b.exp, "packed", "a0"), "AV0": os.path.join(b.exp, "packed", "av0")}
    for m, p in packed.items():
        if not os.path.isfile(os.path.join(p, "model.pth")):
            raise SystemExit(f"{p} missing: run the recipe's stage 11 (pack) for a0 and av0 first")
    for row, d in rows.items():
        packed[row] = b.pack(row, d)

    # --- dev: the MDA-KD distance and λ_KD, jointly (mean greedy CER over random loss 0 / 0.5 / 1.0); with one
    # row and nothing else to try (the core table: the recipe's default, chosen by the full table) no choice
    if len(grid) > 1 or set(args.kd_taps) - {args.kd_tap}:
        kd_score = b.kd_dev_scores("dev_kd", {m: packed[m] for m in grid.values()})
    else:
        kd_score = {}
    best_dist, best_weight = choose_on_dev(grid, kd_score)
    best = grid[(best_dist, best_weight)]
    print(f"dev: MDA-KD {best_dist}, λ_KD {best_weight:g} ({kd_score or 'the only row given'})", flush=True)
    # taps: tried on dev only; AV5 keeps --kd_tap (the default, `fused`) whatever wins here
    tap_score, best_tap, _ = b.kd_ablation(
        "dev_kd_tap", teacher, kd_args, rows, packed, args.kd_tap, kd_score.get(best), best,
        {t: (kd_row(best_dist, best_weight, t, args.kd_tap), {"distance": best_dist, "tap": t, "weight": best_weight})
         for t in args.kd_taps if t != args.kd_tap})
    if len(tap_score) > 1:
        print(f"dev: taps {tap_score}; lowest {best_tap} (AV5 keeps {args.kd_tap})", flush=True)
    packed["AV5"] = packed[best]
    # --- AV6: MS-Adapter on AV5, one row per --adapter_epochs value; with more than one, dev chooses (greedy CER
    # with no video, where threshold-0 routing uses the adapters), a tie going to the earlier value
    ad_epochs = list(dict.fromkeys(args.adapter_epochs or [args.epochs]))
    ad_score, ad_e, ad_rows = b.adapters(best, rows[best], ad_epochs)
    if ad_score:
        print(f"dev: adapter epochs {ad_e} ({ad_score})", flush=True)
    av6, rows["AV6"], packed["AV6"] = ad_rows[ad_e]

    # --- dev: the MS-Adapter threshold (mean greedy CER over the random-loss grid)
    thr_models = [f"T{t:g}={packed['AV6']}@{t}" for t in THRESHOLDS]
    dev_thr = b.sweep(f"dev_threshold-{av6.removeprefix('AV6-on-')}", thr_models, "dev", greedy=True, segment=False,
                      whole=False, snrs=False)
    rconds = [f"random@{x:g}" for x in RATES]
    thr_score = {t: mean_cer(dev_thr, f"T{t:g}", rconds) for t in THRESHOLDS}
    thr = min(thr_score, key=lambda t: (thr_score[t], t))
    print(f"dev: adapter threshold {thr} ({thr_score})", flush=True)

    # --- dev: the best dropout-only row (for the superiority claim), chosen on dev as well
    drop_rows = [r for r in ("AV1", "AV2", "AV3") if r in rows]
    if len(drop_rows) > 1:
        dev_drop = b.sweep("dev_dropout", [f"{m}={packed[m]}" for m in drop_rows], "dev", greedy=True,
                           segment=False, whole=False, snrs=False)
        best_drop = min(drop_rows, key=lambda m: mean_cer(dev_drop, m, rconds))
    else:
        best_drop = drop_rows[0]

    # --- eval sweep
    names = ["A0", "AV0"] + [r for r in ("AV1", "AV2", "AV3") if r in rows] + ["AV5"]
    spec = [f"{m}={packed[m]}" for m in names] + [f"AV6={packed['AV6']}@0", f"AV6-tuned={packed['AV6']}@{thr}"]
    if args.table == "full":
        # every other distance, at its own best λ_KD on dev
        spec += [f"{m}={packed[m]}" for m in (grid[choose_on_dev({k: r for k, r in grid.items() if k[0] == d}, kd_score)]
                                              for d in args.distances if d != best_dist)]
        spec += [f"{m}={packed[m]}" for m in rows if m.startswith("S.")]
    ev = b.sweep(f"eval_{args.table}", spec, "eval", greedy=args.search == "greedy",
                 extra=["--baseline", "A0", "--reference", "AV0", "--similarity_rates", "0", "0.5", "1.0"])
    wall = time.perf_counter() - t_all

    from avsr.models.model import count_parameters
    from avsr.pack import load_packed
    counts = count_parameters(load_packed(packed["AV6"])[0])
    out = {"machine": machine_info(), "command": command_line(), "table": args.table,
           "search": ev["search"], "epochs_per_finetune": args.epochs, "lr": args.lr, "warmup_steps": args.warmup,
           "finetune_frozen": list(args.ft_freeze),
           "kd": {"tap": args.kd_tap, "weight": args.kd_weight, "distances": list(args.distances),
                  "weights": weights,
                  "grid_dev_mean_cer_0_.5_1": [{"distance": d, "weight": w, "row": r, "cer": kd_score.get(r)}
                                               for (d, w), r in grid.items()] if kd_score else [],
                  "chosen_distance": best_dist, "chosen_weight": best_weight,
                  "tap_dev_mean_cer_0_.5_1": {t: v for t, v in tap_score.items() if v is not None},
                  "dev_lowest_tap": best_tap,
                  "chosen_row": best},
           "adapter": {"rank": args.adapter_rank, "epochs": ad_e, "row": av6,
                       "epochs_dev_cer_random@1": {str(k): v for k, v in ad_score.items()},
                       "dev_mean_cer_random_grid": {f"{t:g}": v for t, v in thr_score.items()},
                       "tuned_threshold": thr, "parameters": counts,
                       "adapter_share": counts.get("adapter", 0) / counts["total"]},
           "best_dropout_only_row_dev": best_drop,
           "eval": {k: ev[k] for k in ("conditions", "cer", "degradation_area", "similarity", "timing", "utts")
                    if k in ev},
           "claims": claims(ev, best_drop),
           "seconds": {"total_this_run": wall, **{k: round(v, 1) for k, v in b.times.items()}},
           "row_train_seconds": {}}
    trend = study_trend(ev)
    if trend:
        out["claims"]["4_study_trend"] = trend
    others = {r: d for e, (r, d, _) in ad_rows.items() if e != ad_e}     # adapter rows dev did not choose
    for row, d in {**rows, **others}.items():
        p = os.path.join(d, "train_result.json")
        if os.path.isfile(p):
            h = json.load(open(p)).get("history") or []
            out["row_train_seconds"][row] = sum((x.get("train_seconds") or 0) + (x.get("valid_seconds") or 0) for x in h)
    emit(out, args.out)


if __name__ == "__main__":
    main()

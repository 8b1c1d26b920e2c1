"""Train, choose on dev, sweep and tabulate the rows of a row spec (``conf/rows/*.yaml``) on a recipe exp dir.

    python -m avsr.bin.rows train  --rows conf/rows/dai2024.yaml --table core --exp_dir EXP --data_dir DATA \\
        --config conf/mini.yaml [--rows_dir EXP/rows]
    python -m avsr.bin.rows select ...   # dev choices (grids, probes, adapter threshold, best dropout row)
    python -m avsr.bin.rows sweep ...    # the eval sweep (avsr eval) of the table's models
    python -m avsr.bin.rows table ... --out robust_core.json   # claims (avsr.eval.claims) and the table JSON
    python -m avsr.bin.rows table ... --leaderboard leaderboard.json [--corpus_dir CORPUS]   # avsr.eval.leaderboard

Called by ``recipes/misp2022/run.sh`` stages 15-18.  Needs the recipe's A0 and AV0 (``train_a0``,
``train_av0``, ``stats``, ``packed/{a0,av0}``).  Every run is an ``avsr.bin.train`` call into
``<rows_dir>/<RUN>``; a finished run trained with the same init, epochs, lr, warm-up, frozen parts and
``--method`` settings is skipped, an interrupted one resumes from its checkpoint, one made otherwise is
moved aside (``<RUN>.stale-<time>``) with its pack and every sweep that decoded it.  Every step is
resumable, so each subcommand runs the steps before it that are not done (``select`` trains what it
needs; done sweeps are reused by name and models).  The row spec format: :mod:`avsr.eval.rows`.

The best dropout-only row (claim 4's comparison) is the row of the spec's ``roles.dropout_rows`` with the
lowest dev degradation area over the paper's rates 0 / .25 / .5 / .75 / 1
(:func:`avsr.eval.claims.best_dropout_row`, CTC greedy), never chosen on eval.  ``table --leaderboard
FILE`` also writes the leaderboard (schema: :mod:`avsr.eval.leaderboard`) of the eval sweep; its corpus
facts come from ``<corpus_dir>/synthmisp.json`` (``--corpus_dir``; by default the corpus root the data
dir's ``train/wav.scp`` points into) and the data dirs; the eval sweep's CER-vs-frame-loss plot (every
row with its 95 % band) is copied beside it (``FILE`` with ``.png``).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from avsr.bin import HelpFormatter
from avsr.eval.claims import UNITS, best_dropout_row, claims, claims_with_goal, mean_cer, precision_check, study_trend
from avsr.eval.rows import RECIPE_MODELS, RowSpecError, choose_on_dev, expand, load_spec, tie_key
from avsr.eval.sweep import RATES

THRESHOLDS_DEFAULT = (0.0, 0.1, 0.25, 0.5, 0.75)
#: AV0's methods that are data augmentation: the AV rows with ``audio_aug`` train with AV0's own
AUG_METHODS = ("speed_perturb", "audio_noise")


def _train_config(exp_dir):
    """The config.yaml that avsr.bin.train wrote into ``exp_dir``."""
    import yaml
    with open(os.path.join(exp_dir, "config.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def _methods(extra):
    """The ``--method`` specs in a train command's arguments, as config.yaml stores them."""
    return [extra[i + 1] for i, x in enumerate(extra[:-1]) if x == "--method"]


def _model_sets(args):
    """``{key: value}`` of the ``--set model.KEY=VALUE`` overrides in train arguments, read as avsr.bin.train
    reads them (:func:`avsr.bin.train.parse_set`; later wins)."""
    from avsr.bin.train import parse_set
    pairs, on = [], False
    for x in args:
        on = x == "--set" or (on and not x.startswith("--"))
        if on and x != "--set":
            pairs.append(x)
    return parse_set(pairs, {}).get("model", {})


def _packed_fusion(packed):
    """The ``decode.fusion`` stored in a packed dir's config.yaml (None when absent or unreadable)."""
    import yaml
    try:
        with open(os.path.join(packed, "config.yaml"), encoding="utf-8") as f:
            return ((yaml.safe_load(f) or {}).get("decode") or {}).get("fusion")
    except (OSError, yaml.YAMLError):
        return None


def _init_specs(cfg):
    """The ``--init`` specs of a train config as a list (TrainerConfig stores one spec as a plain string)."""
    init = (cfg.get("trainer") or {}).get("init") or []
    return [init] if isinstance(init, str) else [str(x) for x in init]


def _parse_models(specs):
    """``NAME=DIR[@T]`` → ``{name: (dir, threshold or None when not given)}``."""
    out = {}
    for s in specs:
        name, rest = s.split("=", 1)
        thr = None
        if "@" in rest:
            rest, t = rest.rsplit("@", 1)
            thr = "none" if t.lower() == "none" else float(t)
        out[name] = (rest, thr)
    return out


def sweep_done(models, specs):
    """Whether a sweep.json's ``models`` are the ``specs`` (``NAME=DIR[@T]``): the same names and paths,
    and the same routing threshold wherever a spec gives one (without ``@T`` the packed model's own)."""
    want = _parse_models(specs)
    if set(models) != set(want):
        return False
    for n, (p, t) in want.items():
        got = models[n]
        if got.get("path") != os.path.abspath(p):
            return False
        if t is not None and got.get("adapter_threshold") != (None if t == "none" else t):
            return False
    return True


def budget_steps(run_dir):
    """Optimiser steps the run took (its last history record), or None."""
    p = os.path.join(run_dir, "train_result.json")
    if not os.path.isfile(p):
        return None
    with open(p, encoding="utf-8") as f:
        h = json.load(f).get("history") or []
    return h[-1].get("step") if h else None


class RowRunner:
    """The bookkeeping of one rows dir: train (skip / resume / move aside), pack, sweep (reused when done)."""

    def __init__(self, exp_dir, data_dir, config, rows_dir=None, beam_size=10, python=None, train_args=(),
                 ngpu=0, device="cpu"):
        self.exp = os.path.abspath(exp_dir)
        # the recipe's --ngpu: > 1 trains every run through torchrun (DDP), >= 1 on cuda; ``device``: the
        # sweeps' (avsr eval --device: cpu, cuda or cuda:N)
        self.ngpu = int(ngpu)
        self.device = str(device)
        self.train_args = list(train_args)      # the recipe's --train_args: every row trains with them too
        self.data = os.path.abspath(data_dir)
        self.config = os.path.abspath(config) if config else config
        self.rows_dir = os.path.abspath(rows_dir or os.path.join(self.exp, "rows"))
        self.beam_size = beam_size
        self.py = python or sys.executable
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

    def launcher(self):
        """How a training run starts: python, or torchrun with one process per GPU when ngpu > 1 (the
        recipe's stages 6-10 do the same)."""
        if self.ngpu > 1:
            return [self.py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self.ngpu}"]
        return [self.py]

    def timed(self, key, fn):
        t0 = time.perf_counter()
        out = fn()
        self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - t0
        return out

    def model_path(self, m):
        """``model.pth`` of recipe model ``m`` (a0, v, av0)."""
        return os.path.join(self.exp, f"train_{m}", "model.pth")

    def av0_settings(self):
        """AV0's own ``--init`` specs (A0, plus V's visual branch when used) and its augmentation (the
        ``--method`` arguments of its ``speed_perturb`` and ``audio_noise`` methods, in its order), from its
        config.yaml: the AV rows are AV0's recipe plus dropout / KD, so AV1 / AV2 start where AV0 started
        and every AV row with ``audio_aug`` trains with the same augmentation."""
        cfg = _train_config(os.path.join(self.exp, "train_av0"))
        aug = []
        for spec in cfg.get("methods") or []:
            if spec.split(":", 1)[0].strip() in AUG_METHODS:
                aug += ["--method", spec]
        return _init_specs(cfg), aug

    def av0_schedule(self):
        """The recipe AV0's training schedule, ``{"epochs", "lr", "warmup", "best_n", "patience"}`` from its
        ``train_av0/config.yaml`` (the rows with ``schedule: av0``)."""
        tc = _train_config(os.path.join(self.exp, "train_av0")).get("trainer") or {}
        miss = [k for k in ("max_epochs", "lr", "warmup_steps") if tc.get(k) is None]
        if miss:
            raise SystemExit(f"{self.exp}/train_av0/config.yaml: trainer has no {', '.join(miss)} "
                             "(needed by a row with schedule: av0)")
        e = int(tc["max_epochs"])
        return {"epochs": e, "lr": float(tc["lr"]), "warmup": int(tc["warmup_steps"]),
                "best_n": int(tc.get("best_n") or e), "patience": int(tc.get("patience") or e + 1)}

    def train(self, row, init, extra, freeze=(), epochs=2, lr=0.0005, warmup=50, steps=0, best_n=None,
              patience=None):
        """Train run ``row`` from ``init`` (a list of ``--init`` specs) with ``extra`` arguments for ``epochs``
        (and at most ``steps`` optimiser updates when > 0); ``freeze``: parameter name prefixes not trained
        (``--freeze_param``); ``best_n`` / ``patience``: checkpoints averaged and early stopping (default
        every epoch's, and none)."""
        d = os.path.join(self.rows_dir, row)
        e, steps = int(epochs), int(steps)
        best_n, patience = int(best_n or e), int(patience or e + 1)
        freeze = [str(x) for x in freeze]
        if os.path.isfile(os.path.join(d, "config.yaml")):
            why = self.stale_reason(_train_config(d), init, extra, freeze, e, steps, lr, warmup, best_n, patience)
            if why:
                self.move_aside(row, d, why)
        if os.path.isfile(os.path.join(d, "model.pth")) and os.path.isfile(os.path.join(d, "train_result.json")):
            print(f"{row}: trained ({d}/model.pth)", flush=True)
            return d
        os.makedirs(d, exist_ok=True)
        cmd = [*self.launcher(), "-m", "avsr.bin.train", "--config", self.config, "--mode", "audiovisual",
               "--train_data", os.path.join(self.data, "train"), "--valid_data", os.path.join(self.data, "dev"),
               "--token_list", os.path.join(self.data, "token_list", "char", "tokens.txt"),
               "--stats", os.path.join(self.exp, "stats", "feats_stats.json"), "--exp_dir", d,
               *(["--device", "cuda"] if self.ngpu >= 1 else []),
               "--init", *init, *self.train_args, *extra, *(["--freeze_param", *freeze] if freeze else []),
               "--set", f"trainer.max_epochs={e}", f"trainer.best_n={best_n}", f"trainer.patience={patience}",
               f"trainer.lr={lr}", f"trainer.warmup_steps={warmup}", *([f"trainer.max_steps={steps}"] if steps else [])]
        self.timed(f"train {row}", lambda: self.sh(cmd, os.path.join(self.rows_dir, f"{row}.log")))
        return d

    def stale_reason(self, cfg, init, extra, freeze, epochs, steps, lr, warmup, best_n, patience):
        """Why a row dir trained with ``cfg`` (its config.yaml) is not the run asked for, or None when it is
        (then a finished run is reused and an unfinished one resumes)."""
        old = _init_specs(cfg)
        if old != [str(x) for x in init]:
            # e.g. AV6 after a different AV5 won on dev: the old row (finished or not) is for another init
            return f"was trained from {old}, not {list(init)}"
        # e.g. a re-run with another budget: a finished 2-epoch row is not a 4-epoch row
        tc = cfg.get("trainer") or {}
        want = {"max_epochs": epochs, "lr": lr, "warmup_steps": warmup, "best_n": best_n, "patience": patience}
        diff = {k: tc.get(k) for k, v in want.items() if tc.get(k) is None or float(tc[k]) != float(v)}
        if int(tc.get("max_steps") or 0) != steps:
            diff["max_steps"] = tc.get("max_steps")
        if diff:
            return f"was trained with {diff}, not {want}"
        frozen = [str(x) for x in tc.get("freeze_param") or ()]
        if frozen != freeze:
            return f"was trained with freeze_param {frozen}, not {freeze}"
        methods = _methods(extra)
        if list(cfg.get("methods") or []) != methods:
            # e.g. a row name reused for another λ_KD: the method settings are part of the row
            return f"was trained with methods {cfg.get('methods')}, not {methods}"
        # the recipe's model settings (--train_args, e.g. the mini's dropout) are part of every row
        mc, want_model = cfg.get("model") or {}, _model_sets(self.train_args)
        other = {k: mc.get(k) for k, v in want_model.items() if mc.get(k) != v}
        if other:
            return f"was trained with model settings {other}, not {want_model}"
        return None

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
        """Pack the run ``d`` into ``<rows_dir>/packed/<row>`` (reused when present with the same decode
        fusion).  A run trained with the ``mla`` method is packed with ``--decode_fusion entropy``: it is
        decoded by fusing its audio and video paths' CTC posteriors (:class:`avsr.inference.Speech2Text`)."""
        out = os.path.join(self.rows_dir, "packed", row)
        cfg = _train_config(d) if os.path.isfile(os.path.join(d, "config.yaml")) else {}
        fusion = "entropy" if any(str(m).partition(":")[0].strip() == "mla"
                                  for m in cfg.get("methods") or []) else None
        if not os.path.isfile(os.path.join(out, "model.pth")) or _packed_fusion(out) != fusion:
            self.pack_cli(["--exp_dir", d, "--out", out] + (["--decode_fusion", fusion] if fusion else []))
        return out

    def pack_cli(self, args):
        """``avsr pack ARGS``, in this process (a pack is a few file copies; a new interpreter per row costs
        more than the pack), its output appended to ``<rows_dir>/pack.log``; a failure is an error naming
        the log."""
        import contextlib
        import traceback

        from avsr.bin import pack as pack_bin
        log = os.path.join(self.rows_dir, "pack.log")
        print("+ avsr pack " + " ".join(args), flush=True)
        with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            print("+ avsr pack " + " ".join(args), flush=True)
            try:
                rc = pack_bin.main(list(args))
            except SystemExit as e:              # argparse errors (their message is already in the log)
                if e.code is not None and not isinstance(e.code, int):
                    print(e.code)
                rc = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            except Exception:                    # noqa: BLE001 - the log gets the traceback, the caller the log
                traceback.print_exc()
                rc = 1
        if rc:
            raise SystemExit(f"avsr pack failed (rc {rc}); see {log}")

    def pack_without_adapters(self, name, d):
        """A decode-only row's pack: the run ``d``'s weights with every LoRA ``B`` set to 0
        (:func:`avsr.models.lora.identity_adapter_state`), so the routed audio-only path runs without
        adapters; written to ``<rows_dir>/packed/<name>`` (reused when present)."""
        out = os.path.join(self.rows_dir, "packed", name)
        if os.path.isfile(os.path.join(out, "model.pth")):
            return out
        from avsr.models.lora import identity_adapter_state
        from avsr.utils.checkpoint import load_checkpoint, model_state, save_checkpoint
        w = os.path.join(self.rows_dir, "noadapter", name, "model.pth")
        os.makedirs(os.path.dirname(w), exist_ok=True)
        sd = identity_adapter_state(model_state(load_checkpoint(os.path.join(d, "model.pth"))))
        save_checkpoint({k: v.detach().clone() for k, v in sd.items()}, w)
        self.pack_cli(["--exp_dir", d, "--weights", w, "--out", out])
        return out

    def sweep(self, name, models, split, greedy, rates=RATES, segment=True, whole=True, snrs=True, extra=()):
        """``avsr eval`` of ``models`` (``NAME=DIR[@T]``) on ``split`` into ``<rows_dir>/sweep/<name>``; a
        sweep.json with these models is reused (:func:`sweep_done`)."""
        out = os.path.join(self.rows_dir, "sweep", name)
        j = os.path.join(out, "sweep.json")
        if os.path.isfile(j):
            r = json.load(open(j))
            if sweep_done(r["models"], models):
                print(f"sweep {name}: done ({j})", flush=True)
                return r
        cmd = [self.py, "-m", "avsr.cli", "eval", "--models", *models, "--data_dir", os.path.join(self.data, split),
               "--out_dir", out, "--batch_size", "16", "--device", self.device, "--rates", *map(str, rates)]
        cmd += ["--ctc_greedy"] if greedy else ["--beam_size", str(self.beam_size)]
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

    def dev_scores(self, sweep_name, models, rates, threshold=None):
        """``{name: mean greedy dev CER over random loss at rates}`` of packed ``models`` (``{name: path}``)."""
        suf = "" if threshold is None else f"@{threshold:g}"
        dev = self.sweep(sweep_name, [f"{m}={p}{suf}" for m, p in models.items()], "dev", greedy=True,
                         rates=tuple(rates), segment=False, whole=False, snrs=False)
        conds = [f"random@{float(r):g}" for r in rates]
        return {m: mean_cer(dev, m, conds) for m in models}


class Experiment:
    """The rows of one table of a row spec on a :class:`RowRunner`: train → select → sweep → table."""

    def __init__(self, spec, runner):
        self.spec, self.r = spec, runner
        self.av0_init, self.aug = None, []
        self.bootstrap_unit = "utterance"   # what the intervals resample (avsr.eval.claims.Resampler)
        self.runs = {}          # row -> [Run]
        self.dirs = {}          # run name -> train dir
        self.packed = {}        # run name -> packed dir
        self.chosen = {}        # row -> chosen run
        self.scores = {}        # row -> {run name: dev score}
        self.probes = {}        # row -> {value: score}, lowest, current
        self.route = {}
        self.best_dropout, self.best_dropout_dev = None, {}
        self.steps = {}         # run name -> {"own", "init", "total", "budget", "init_run"} (optimiser steps)

    def resolve(self, m):
        if m == "av0_init":
            raise RowSpecError(f"{self.spec.path}: '@av0_init' is not one model; use init: av0_init")
        return self.r.model_path(m)

    def _init(self, run):
        if run.init == "av0_init":
            return list(self.av0_init)
        if run.init in RECIPE_MODELS:
            return [self.r.model_path(run.init)]
        return [os.path.join(self.dirs[self.chosen[run.init].name], "model.pth")]

    def _budget_steps(self, run):
        """The run's step budget counted from its recipe model (:meth:`_train_run`): ``run.steps``, or the
        steps of what its budget refers to (``budget: {steps: "@ROW"}``: ROW's chosen run, its init's steps
        included; ``"@av0"``: the recipe's AV0 training, ``train_av0``'s last history record)."""
        if not run.steps_of:
            return run.steps
        ref = run.steps_of
        if ref.lower() == "av0":
            d = os.path.join(self.r.exp, "train_av0")
        elif ref in self.chosen:
            name = self.chosen[ref].name
            if name in self.steps:
                return int(self.steps[name]["total"])
            d = self.dirs[name]
        else:
            raise SystemExit(f"{self.spec.path}: rows.{run.row}.budget: steps '@{ref}' needs row {ref} trained "
                             f"before it (put it earlier in the table)")
        n = budget_steps(d)
        if not n:
            raise SystemExit(f"{d}/train_result.json: no optimiser steps recorded (the budget of {run.row})")
        return int(n)

    def _budget_text(self, run, cap):
        return f"{cap} steps" + (f" (the steps of @{run.steps_of})" if run.steps_of else "")

    def _split_init(self, run, cap):
        """``budget.init_share``: the init row's chosen run retrained with its own settings for
        ``round(init_share * cap)`` steps (run ``<chosen>-s<N>``, from the same recipe model); returns it."""
        cur = self.chosen[run.init]
        if cur.init not in RECIPE_MODELS:
            raise SystemExit(f"{self.spec.path}: rows.{run.row}.budget: init_share needs an init row that starts "
                             f"from a recipe model; {run.init} starts from {cur.init}")
        n = int(round(run.init_share * cap))
        if not 1 <= n < cap:
            raise SystemExit(f"{self.spec.path}: rows.{run.row}: init_share {run.init_share:g} of "
                             f"{self._budget_text(run, cap)} leaves no steps for the init part or the row's own")
        base = self.spec.rows[run.init]
        part = type(base)(**{**base.__dict__, "methods": cur.methods, "options": cur.options, "grid": {},
                             "budget": {"epochs": cur.epochs, "steps": n}})
        split, = expand(part, cur.init_run, extra={}, base=f"{cur.name}-s{n}")
        self._train_run(split, pack=False)
        return split

    def _train_run(self, run, pack=True):
        """Train ``run``, counting optimiser steps from its recipe model: its own plus, when it starts from
        another row, that row's run's (the init part).  A step budget caps that total: the run's own
        ``max_steps`` is the budget less the init part, and a total over the budget is an error naming
        the row spec file and the row."""
        # schedule: av0 (AV1, AV2, the merge ablation): trained as the recipe trained AV0, with no step cap
        # unless the row sets one (MLA: budget {steps: "@av0"})
        capped = run.schedule != "av0" or bool(run.steps or run.steps_of)
        cap = self._budget_steps(run) if capped else 0
        init_run, init = None, self._init(run)
        if run.init_share is not None:
            init_run = self._split_init(run, cap)
            init = [os.path.join(self.dirs[init_run.name], "model.pth")]
        elif run.init in self.spec.rows:
            init_run = self.chosen[run.init]
        init_steps = int(self.steps[init_run.name]["total"]) if init_run is not None else 0
        own_cap = 0
        if cap:
            own_cap = cap - init_steps
            if own_cap <= 0:
                raise SystemExit(f"{self.spec.path}: rows.{run.row}: budget {self._budget_text(run, cap)}, but its "
                                 f"init {init_run.name} already took {init_steps}: nothing is left for its own "
                                 f"training (budget.init_share splits the budget with the init row)")
        sched = self.r.av0_schedule() if run.schedule == "av0" else \
            {"epochs": run.epochs, "lr": run.lr, "warmup": run.warmup_steps}
        d = self.r.train(run.name, init, run.train_args(self.resolve, self.aug), freeze=run.freeze,
                         steps=own_cap, **sched)
        self.dirs[run.name] = d
        own = budget_steps(d)
        if own is None:
            raise SystemExit(f"{d}/train_result.json: no optimiser steps recorded (run {run.name} of {run.row})")
        total = init_steps + int(own)
        if cap and total > cap:
            raise SystemExit(f"{self.spec.path}: rows.{run.row}: run {run.name} took {total} optimiser steps "
                             f"({init_steps} of its init + {own} of its own), over its budget of "
                             f"{self._budget_text(run, cap)}")
        self.steps[run.name] = {"own": int(own), "init": init_steps, "total": total, "budget": cap or None,
                                "init_run": init_run.name if init_run is not None else None}
        if pack:
            self.packed[run.name] = self.r.pack(run.name, d)
        return d

    def train(self):
        """Train every run of every row, in the table's order; a row whose init is another row waits for
        that row's dev choice (made here, on the same sweep ``select`` reuses)."""
        for m in ("a0", "av0"):
            p = os.path.join(self.r.exp, "packed", m)
            if not os.path.isfile(os.path.join(p, "model.pth")):
                raise SystemExit(f"{p} missing: run the recipe's stage 11 (pack) for a0 and av0 first")
        self.av0_init, self.aug = self.r.av0_settings()
        if self.aug:
            print(f"AV rows train with AV0's audio augmentation: {self.aug}", flush=True)
        for name, row in self.spec.rows.items():
            init_run = self.chosen[row.init].name if row.init in self.spec.rows else None
            self.runs[name] = expand(row, init_run=init_run)
            for run in self.runs[name]:
                self._train_run(run)
            self.choose(name)

    def choose(self, name):
        """Dev choice among a row's runs (select: mean greedy CER at the random-loss rates; ties: earlier run)."""
        row, runs = self.spec.rows[name], self.runs[name]
        sel = row.select
        score = {}
        if len(runs) > 1:
            labels = {run.fmt(sel.get("label", "{run}")): run for run in runs}
            dev = self.r.dev_scores(runs[0].fmt(sel["sweep"]), {lab: self.packed[run.name] for lab, run in labels.items()},
                                    sel.get("rates", (0, 0.5, 1.0)), sel.get("threshold"))
            score = {labels[lab].name: v for lab, v in dev.items()}
        key = choose_on_dev({i: run.name for i, run in enumerate(runs)}, score)
        self.chosen[name], self.scores[name] = runs[key], score
        if score:
            print(f"dev: {name} = {runs[key].name} ({score})", flush=True)

    def select(self):
        """The dev choices after training: probes (reported), the adapter threshold, the best dropout row."""
        self.train()
        for name, row in self.spec.rows.items():
            if row.probe:
                self._probe(name, row)
            if row.route:
                self._route(name, row)
        drop = [m for m in self.spec.roles.get("dropout_rows", []) if m in self.spec.rows]
        self.best_dropout_dev = {}
        if len(drop) > 1:
            # the dev sweep's grid (RATES) holds the paper's rates; lowest dev area, ties to the earlier row
            dev = self.r.sweep("dev_dropout", [f"{m}={self.packed[self.chosen[m].name]}" for m in drop], "dev",
                               greedy=True, segment=False, whole=False, snrs=False)
            self.best_dropout, areas, anchor = best_dropout_row(dev, drop)
            self.best_dropout_dev = {"area_paper_rates": areas, "anchor": anchor}
        else:
            self.best_dropout = drop[0] if drop else None

    def _probe(self, name, row):
        p, cur = row.probe, self.chosen[name]
        axis = p["axis"]
        spec_axis = {axis: {"values": [v for v in p["values"]], "name": p.get("name", "-{}"), "omit": None}}
        _, mname, key = axis.split(".")
        cur_value = next((m[mname].get(key) for m in cur.methods if isinstance(m, dict) and mname in m), None)
        base = self.spec.rows[name]
        probe_row = type(base)(**{**base.__dict__, "methods": cur.methods, "options": cur.options,
                                  "budget": {"epochs": cur.epochs}})
        runs = [x for x in expand(probe_row, cur.init_run, extra=spec_axis, base=cur.name)
                if x.values[axis] != cur_value]
        for run in runs:
            self._train_run(run)
        score = {cur_value: self.scores[name].get(cur.name)}
        if runs:
            dev = self.r.dev_scores(p["sweep"], {run.name: self.packed[run.name] for run in runs},
                                    (row.select or {}).get("rates", (0, 0.5, 1.0)))
            score.update({run.values[axis]: dev[run.name] for run in runs})
        lowest = min(score, key=lambda k: (tie_key(score[k]) if score[k] is not None else float("inf"), k != cur_value))
        self.probes[name] = {"score": score, "lowest": lowest, "current": cur_value,
                             "runs": [run.name for run in runs]}

    def _route(self, name, row):
        run = self.chosen[name]
        thrs = [float(t) for t in row.route.get("thresholds", THRESHOLDS_DEFAULT)]
        p = self.packed[run.name]
        dev = self.r.sweep(run.fmt(row.route["sweep"]), [f"T{t:g}={p}@{t}" for t in thrs], "dev", greedy=True,
                           segment=False, whole=False, snrs=False)
        rconds = [f"random@{x:g}" for x in RATES]
        score = {t: mean_cer(dev, f"T{t:g}", rconds) for t in thrs}
        self.route[name] = {"score": score, "threshold": min(score, key=lambda t: (tie_key(score[t]), t))}

    def recipe_models(self):
        """``{row name: recipe model}`` of the recipe's own models in the eval sweep: A0 and AV0, and V when
        the recipe packed it (lips alone, the regime's reference)."""
        out = {"A0": "a0"}
        if os.path.isfile(os.path.join(self.r.exp, "packed", "v", "model.pth")):
            out["V"] = "v"
        out["AV0"] = "av0"
        return out

    def eval_models(self):
        """``NAME=DIR[@T]`` specs of the eval sweep: A0, V (when packed), AV0, the dropout rows, the student, the adapter at
        threshold 0 and tuned, the student's other best runs per ``eval_best_per`` value, then the rest (another
        routed row at threshold 0, and as ``<row>-tuned`` at its dev-tuned threshold when that is above 0)."""
        roles = self.spec.roles
        student, adapter = roles.get("student"), roles.get("adapter")
        spec = [f"{n}={os.path.join(self.r.exp, 'packed', m)}" for n, m in self.recipe_models().items()]
        for m in list(roles.get("dropout_rows", [])) + [student]:
            if m in self.spec.rows:
                spec.append(f"{m}={self.packed[self.chosen[m].name]}")
        if adapter in self.spec.rows:
            p = self.packed[self.chosen[adapter].name]
            spec += [f"{adapter}={p}@0", f"{adapter}-tuned={p}@{self.route[adapter]['threshold']}"]
        spec += [f"{run}={self.packed[run]}" for run in self.best_per_runs()]
        named = {s.split("=", 1)[0] for s in spec}
        for name in self.spec.rows:
            if name not in named and name not in (student, adapter) and name not in roles.get("dropout_rows", []):
                p = self.packed[self.chosen[name].name]
                if name in self.route:      # another routed row (MS-Adapter on CKD / TFR): as AV6, threshold 0,
                    t = self.route[name]["threshold"]       # and at its dev-tuned threshold where that differs
                    spec += [f"{name}={p}@0"] + ([f"{name}-tuned={p}@{t}"] if float(t) != 0 else [])
                else:
                    spec.append(f"{name}={p}")
        for name, d in self.spec.decodes.items():     # decode-only rows (AV6-noadapter)
            if d.of in self.chosen:
                run = self.chosen[d.of]
                spec.append(d.eval_spec(self.r.pack_without_adapters(name, self.dirs[run.name])))
        return spec

    def best_per_runs(self):
        """``{run name: row}`` of the eval sweep's extra runs of rows with ``eval_best_per`` (AV5's other
        distances): per value of the axis other than the chosen run's, that value's best run on dev."""
        out = {}
        for name, row in self.spec.rows.items():
            if row.eval_best_per and self.scores.get(name):
                axis, cur = row.eval_best_per, self.chosen[name]
                for v in dict.fromkeys(run.values[axis] for run in self.runs[name]):
                    if v == cur.values[axis]:
                        continue
                    sub = [run for run in self.runs[name] if run.values[axis] == v]
                    k = choose_on_dev({i: run.name for i, run in enumerate(sub)}, self.scores[name])
                    out[sub[k].name] = name
        return out

    def sweep(self):
        self.select()
        search = self.spec.search
        if search.startswith("beam"):
            self.r.beam_size = int(search[4:])
        return self.r.sweep(f"eval_{self.spec.table}", self.eval_models(), "eval", greedy=search == "greedy",
                            extra=["--baseline", "A0", "--reference", "AV0", "--similarity_rates", "0", "0.5", "1.0"])

    def table(self, command="", machine=None):
        """The table JSON (the format docs/results/robust_*.json have): eval sweep, dev choices, claims
        (the point-estimate ``claims`` and ``claims_by_interval``, :func:`avsr.eval.claims.interval_claims`)."""
        t0 = time.perf_counter()
        ev = self.eval_sweep = self.sweep()
        roles = self.spec.roles
        st, ad_row = roles.get("student"), roles.get("adapter")
        s_run, a_run = self.chosen.get(st), self.chosen.get(ad_row)
        kd = next((m[k] for m in (s_run.methods if s_run else []) if isinstance(m, dict) for k in m if k == "mda_kd"), {})
        grid = self.spec.rows[st].grid if st in self.spec.rows else {}
        out = {"machine": machine or {}, "command": command, "table": self.spec.table, "row_spec": self.spec.path,
               "search": ev["search"], "epochs_per_finetune": self.spec.rows[st].budget["epochs"] if st else None,
               "lr": s_run.lr if s_run else None, "warmup_steps": s_run.warmup_steps if s_run else None,
               "finetune_frozen": list(s_run.freeze) if s_run else [],
               "schedule_av0_rows": [n for n, row in self.spec.rows.items() if row.schedule == "av0"]}
        if s_run:
            dist_ax, w_ax = "methods.mda_kd.distance", "methods.mda_kd.weight"
            pr = self.probes.get(st, {})
            out["kd"] = {
                "tap": kd.get("tap"), "weight": (grid.get(w_ax) or {"values": [kd.get("weight")]})["values"][0],
                "distances": list((grid.get(dist_ax) or {"values": [kd.get("distance")]})["values"]),
                "weights": list((grid.get(w_ax) or {"values": [kd.get("weight")]})["values"]),
                "grid_dev_mean_cer_0_.5_1": [{"distance": run.values.get(dist_ax), "weight": run.values.get(w_ax),
                                              "row": run.name, "cer": self.scores[st].get(run.name)}
                                             for run in self.runs[st]] if self.scores.get(st) else [],
                "chosen_distance": kd.get("distance"), "chosen_weight": kd.get("weight"),
                "tap_dev_mean_cer_0_.5_1": {t: v for t, v in (pr.get("score") or {}).items() if v is not None},
                "dev_lowest_tap": pr.get("lowest", kd.get("tap")), "chosen_row": s_run.name}
        if a_run:
            from avsr.models.model import count_parameters
            from avsr.pack import load_packed
            counts = count_parameters(load_packed(self.packed[a_run.name])[0])
            ep_ax = "budget.epochs"
            by_steps = bool(a_run.steps or a_run.steps_of)      # a step budget: the epochs are only a cap
            scores = self.scores.get(ad_row) or {}
            out["adapter"] = {
                "rank": self.spec.rows[ad_row].set.get("model.adapter_rank"), "row": a_run.name,
                "epochs": None if by_steps else a_run.epochs,
                "epochs_dev_cer_random@1": {str(run.values.get(ep_ax, run.epochs)): scores[run.name]
                                            for run in self.runs[ad_row]} if scores and not by_steps else {},
                **({"runs_dev_cer_random@1": {run.name: scores[run.name] for run in self.runs[ad_row]}}
                   if scores and by_steps else {}),
                "dev_mean_cer_random_grid": {f"{t:g}": v for t, v in self.route[ad_row]["score"].items()},
                "tuned_threshold": self.route[ad_row]["threshold"], "parameters": counts,
                "adapter_share": counts.get("adapter", 0) / counts["total"]}
        out["best_dropout_only_row_dev"] = self.best_dropout
        if self.best_dropout_dev:
            out["best_dropout_dev"] = self.best_dropout_dev
        out["eval"] = {k: ev[k] for k in ("conditions", "cer", "degradation_area", "similarity", "timing", "utts")
                       if k in ev}
        out["claims"] = claims(ev, self.best_dropout)
        trend = study_trend(ev)
        if trend:
            out["claims"]["4_study_trend"] = trend
        if "utt_errors" in ev:
            out["claims_by_interval"] = claims_with_goal(ev, self.best_dropout, self.no_candidates(),
                                                         adapter=ad_row or "AV6", unit=self.bootstrap_unit)[0]
            out["bootstrap_unit"] = self.bootstrap_unit
            # can this eval set separate two robust rows? (the adapter row against the best dropout-only row)
            pc = precision_check(ev, ad_row or "AV6", self.best_dropout or "AV3", 0.5, unit=self.bootstrap_unit)
            if pc:
                out["precision"] = pc
        out["seconds"] = {"total_this_run": time.perf_counter() - t0,
                          **{k: round(v, 1) for k, v in self.r.times.items()}}
        # the recipe's own wall times of this table's stages 15-17 (done markers; stage 18 is this run)
        from avsr.bin.report import stage_seconds
        out["recipe_stage_seconds"] = {k: v for k, v in stage_seconds(os.path.join(self.r.exp, "stages")).items()
                                       if k.endswith(f"_{self.spec.table}") and k.split("_", 1)[0] in ("15", "16", "17")}
        out["row_steps"] = self.row_steps()
        out["row_train_seconds"], out["budget_steps"] = {}, {}
        for run_name, d in self.dirs.items():
            p = os.path.join(d, "train_result.json")
            if os.path.isfile(p):
                h = json.load(open(p)).get("history") or []
                out["row_train_seconds"][run_name] = sum((x.get("train_seconds") or 0) + (x.get("valid_seconds") or 0)
                                                         for x in h)
                out["budget_steps"][run_name] = budget_steps(d)
        return out

    def row_steps(self):
        """``{row: {"run", "steps", "own", "init", "init_run", "budget", "budget_of"}}``: the optimiser steps of
        each row's chosen run counted from its recipe model (its own plus its init row's run's), and its
        step budget (None: epochs only); ``A0`` / ``V`` / ``AV0``: the recipe's own training (``steps`` only)."""
        out = {}
        for name, m in self.recipe_models().items():
            n = budget_steps(os.path.join(self.r.exp, f"train_{m}"))
            if n is not None:
                out[name] = {"steps": int(n)}
        for name, run in self.chosen.items():
            st = self.steps.get(run.name)
            if st is None:
                continue
            out[name] = {"run": run.name, "steps": st["total"], "own": st["own"], "init": st["init"],
                         "init_run": st["init_run"], "budget": st["budget"],
                         "budget_of": f"@{run.steps_of}" if run.steps_of else None}
        return out

    def row_facts(self):
        """``{model: {"train_s", "params_added"}}`` of every model of the eval sweep: the training seconds of
        its own train dir (A0, V, AV0: the recipe's ``train_a0`` / ``train_v`` / ``train_av0``; a row: the run whose packed
        model it decodes, else the ``exp_dir`` in the packed model's meta.json) and its parameters beyond
        AV0's (``train_result.json``'s ``parameters.total``, else counted on the packed model)."""
        from avsr.eval.leaderboard import LeaderboardError, train_facts
        by_packed = {os.path.abspath(p): run for run, p in self.packed.items()}
        recipe = self.recipe_models()

        def total(tf, packed):
            if (tf.get("parameters") or {}).get("total") is not None:
                return int(tf["parameters"]["total"])
            from avsr.models.model import count_parameters
            from avsr.pack import load_packed
            return int(count_parameters(load_packed(packed)[0])["total"])

        base = total(train_facts(os.path.join(self.r.exp, "train_av0")), os.path.join(self.r.exp, "packed", "av0"))
        steps = self.row_steps()
        best_per = self.best_per_runs()
        out = {}
        for name, (p, _) in _parse_models(self.eval_models()).items():
            # the spec row whose steps and dev grid a decode states: <row>-tuned and the eval_best_per runs too
            row = best_per.get(name) or (name[:-len("-tuned")] if name.endswith("-tuned")
                                         and name[:-len("-tuned")] in self.spec.rows else name)
            if name in self.spec.decodes:     # decode-only (AV6-noadapter): no training of its own, and its
                from avsr.models.model import count_parameters     # zeroed adapters add nothing
                from avsr.pack import load_packed
                n = count_parameters(load_packed(p)[0])
                out[name] = {"train_s": 0.0, "params_added": int(n["total"] - n.get("adapter", 0) - base),
                             **self.row_budget(row, steps)}
                continue
            if name in recipe:
                d = os.path.join(self.r.exp, f"train_{recipe[name]}")
            elif os.path.abspath(p) in by_packed:
                d = self.dirs[by_packed[os.path.abspath(p)]]
            else:
                meta = os.path.join(p, "meta.json")
                d = json.load(open(meta, encoding="utf-8")).get("exp_dir") if os.path.isfile(meta) else None
                if not d:
                    raise LeaderboardError(f"{p}: no train dir known for row {name} (not a run of this rows dir, "
                                           "and no exp_dir in its meta.json)")
            tf = train_facts(d)
            out[name] = {"train_s": tf["train_s"], "params_added": total(tf, p) - base,
                         **self.row_budget(row, steps)}
        return out

    def row_budget(self, name, steps_of):
        """``{"steps", "grid"}`` of a leaderboard row (:mod:`avsr.eval.leaderboard`): its optimiser steps from
        its recipe model (``steps_of``: the output of :meth:`row_steps`) and every setting of its dev grid with
        its dev score (the mean CTC-greedy dev CER in % over the row's select rates; None for a grid of one)
        and whether dev chose it.  The recipe's A0 / AV0, and models that are no row of this spec, have no grid."""
        steps = steps_of.get(name, {}).get("steps")
        if name not in self.runs or name not in self.chosen:
            return {"steps": steps, "grid": []}
        scores, chosen = self.scores.get(name) or {}, self.chosen[name].name
        grid = [{"run": run.name, "setting": {a: v for a, v in run.values.items()},
                 "dev": None if scores.get(run.name) is None else round(100 * scores[run.name], 2),
                 "chosen": run.name == chosen} for run in self.runs[name]]
        return {"steps": steps, "grid": grid}

    def eval_plot(self):
        """The eval sweep's CER-vs-frame-loss plot (``avsr eval`` writes it with each model's 95 % band)."""
        return os.path.join(self.r.rows_dir, "sweep", f"eval_{self.spec.table}", "cer_vs_frame_loss.png")

    def error_breakdown(self, ev, corpus_dir=None):
        """Where each row's errors are (:func:`avsr.eval.breakdown.error_breakdown`) in the eval sweep
        ``ev``: from its ``hyps.json`` and ``<data_dir>/eval/text``, with SNR and overlap bins from the
        SynthMISP truth of ``corpus_dir`` when it has one."""
        from avsr.eval.breakdown import error_breakdown, utt_bins_from_truth
        from avsr.eval.leaderboard import CONDITIONS, LeaderboardError
        from avsr.eval.metrics import read_text_file
        p = os.path.join(self.r.rows_dir, "sweep", f"eval_{self.spec.table}", "hyps.json")
        if not os.path.isfile(p):
            raise LeaderboardError(f"{p}: not found (the eval sweep's hypotheses, for the error breakdown)")
        with open(p, encoding="utf-8") as f:
            hyps = json.load(f)
        bins = None
        if corpus_dir and os.path.isdir(os.path.join(corpus_dir, "truth")):
            bins = utt_bins_from_truth(corpus_dir, os.path.join(self.r.data, "eval"))
        try:
            return error_breakdown(hyps, read_text_file(os.path.join(self.r.data, "eval", "text")), ev["utt_ids"],
                                   CONDITIONS, bins)
        except ValueError as e:
            raise LeaderboardError(f"{p}: {e}") from None

    def no_candidates(self):
        """Models of the eval sweep the leaderboard's goal does not rank as methods: the spec's
        ``roles.dropout_rows`` and ``roles.baseline_rows`` (the study's fixed-rate rows, the ablations of a
        dropout-only row or of AV0), and every decode that dev did not choose as its row, so that no row is
        chosen on eval: the routed rows at their dev-tuned thresholds (``<row>-tuned``, an ablation of the
        paper's routing when no frame is present) and the ``eval_best_per`` runs (AV5's other distances)."""
        r = self.spec.roles
        tuned = [f"{name}-tuned" for name in self.route]      # (a name the sweep lacks excludes nothing)
        return list(r.get("dropout_rows", [])) + list(r.get("baseline_rows", [])) + tuned + list(self.best_per_runs())

    def leaderboard(self, corpus, corpus_dir=None):
        """The leaderboard (:func:`avsr.eval.leaderboard.build_leaderboard`) of the table's eval sweep,
        with ``corpus`` facts (:func:`avsr.eval.leaderboard.corpus_facts`) and each row's error breakdown
        (:meth:`error_breakdown`; SNR and overlap bins from ``corpus_dir``'s truth)."""
        from avsr.eval.leaderboard import build_leaderboard
        ev = getattr(self, "eval_sweep", None) or self.sweep()
        return build_leaderboard(ev, corpus, self.best_dropout, self.row_facts(),
                                 breakdown=self.error_breakdown(ev, corpus_dir), unit=self.bootstrap_unit,
                                 dropout_rows=self.no_candidates())


def build_parser():
    ap = argparse.ArgumentParser(prog="python -m avsr.bin.rows", description=__doc__.split("\n\n")[0],
                                 formatter_class=HelpFormatter, epilog=__doc__)
    ap.add_argument("command", choices=["train", "select", "sweep", "table"])
    ap.add_argument("--rows", required=True, help="row spec YAML (conf/rows/dai2024.yaml)")
    ap.add_argument("--table", default="core", help="table of the row spec (core, full)")
    ap.add_argument("--exp_dir", required=True, help="the recipe's exp dir (its train_a0, train_v, train_av0, packed/)")
    ap.add_argument("--data_dir", required=True, help="recipe data dir base (train, dev, eval, token_list)")
    ap.add_argument("--config", required=True, help="the recipe's model/trainer YAML")
    ap.add_argument("--rows_dir", help="where the runs, their packs and sweeps go (default <exp_dir>/rows)")
    ap.add_argument("--train_args", default="",
                    help="the recipe's extra avsr.bin.train arguments (e.g. '--set model.dropout_rate=0.2'), given to "
                         "every row's training before the row's own settings, which win")
    ap.add_argument("--ngpu", type=int, default=0,
                    help="GPUs for the runs' training: 0 = CPU, 1 = one GPU, > 1 = torchrun DDP (the recipe's --ngpu)")
    ap.add_argument("--device", default="cpu", help="device of the dev and eval sweeps: cpu, cuda or cuda:N")
    ap.add_argument("--out", help="table JSON (table)")
    ap.add_argument("--leaderboard", help="also write the leaderboard JSON (table; schema: avsr.eval.leaderboard)")
    ap.add_argument("--corpus_dir", help="the corpus root holding synthmisp.json (table --leaderboard; default: "
                                         "the root the data dir's train/wav.scp points into)")
    ap.add_argument("--bootstrap_unit", choices=UNITS, default="utterance",
                    help="what the intervals of the claims and the leaderboard resample (table): utterances, or whole "
                         "recordings (sessions) with their utterances, a cluster bootstrap (default: %(default)s)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = load_spec(args.rows, args.table)
    except RowSpecError as e:
        raise SystemExit(f"error: {e}")
    exp = Experiment(spec, RowRunner(args.exp_dir, args.data_dir, args.config, args.rows_dir,
                                     train_args=shlex.split(args.train_args), ngpu=args.ngpu, device=args.device))
    exp.bootstrap_unit = args.bootstrap_unit
    if args.command == "table":
        if not args.out and not args.leaderboard:
            raise SystemExit("error: table needs --out and/or --leaderboard")
        from avsr.eval.leaderboard import LeaderboardError, corpus_facts, corpus_root_from_data, write_leaderboard
        corpus = cdir = None
        if args.leaderboard:           # the corpus facts first: a missing file fails before any work
            cdir = args.corpus_dir or corpus_root_from_data(args.data_dir)
            if not cdir:
                raise SystemExit(f"error: {args.data_dir}/train/wav.scp names no corpus audio/ folder: "
                                 "--leaderboard needs --corpus_dir")
            try:
                corpus = corpus_facts(cdir, args.data_dir)
            except LeaderboardError as e:
                raise SystemExit(f"error: {e}")
        from avsr.utils.machine import machine_info
        out = exp.table(command="python -m avsr.bin.rows " + shlex.join(sys.argv[1:] if argv is None else argv),
                        machine=machine_info())
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)) or ".", exist_ok=True)
            with open(args.out, "w", encoding="utf-8") as f:
                json.dump(out, f, indent=1, ensure_ascii=False)
            print(f"wrote {args.out}")
        if args.leaderboard:
            try:
                write_leaderboard(exp.leaderboard(corpus, cdir), args.leaderboard)
            except LeaderboardError as e:
                raise SystemExit(f"error: {e}")
            print(f"wrote {args.leaderboard}")
            png = exp.eval_plot()
            if os.path.isfile(png):        # every row's CER against frame loss with its 95 % band
                dst = os.path.splitext(args.leaderboard)[0] + ".png"
                shutil.copyfile(png, dst + ".tmp")
                os.replace(dst + ".tmp", dst)
                print(f"wrote {dst}")
            else:
                print(f"warning: {png} not found (no CER-vs-frame-loss plot next to the leaderboard)", flush=True)
    else:
        getattr(exp, args.command)()
    return 0


if __name__ == "__main__":
    sys.exit(main())

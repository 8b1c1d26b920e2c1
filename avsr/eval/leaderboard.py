"""``leaderboard.json``: one eval sweep of the robustness rows as the paper's table, with intervals and claims.

Written by ``python -m avsr.bin.rows table ... --leaderboard docs/results/leaderboard.json`` (recipe
stage 18) with :func:`build_leaderboard`, checked by :func:`validate_leaderboard`, rendered by
:func:`avsr.eval.render.leaderboard_md`.  The schema (every key is required, no other key is allowed)::

    {"corpus": {"preset": str, "seed": int, "eval_segments": int, "eval_speakers": int, "train_hours": float},
     "search": "beam<N>" | "greedy",
     "rows": {"<ROW>": {"cer": {"<condition>": %, ...},            # every condition of CONDITIONS
                        "ci95": {"<condition>": [lo, hi], ...},     # the same conditions
                        "paired": {"<other ROW>@<condition>": {"diff": %, "ci95": [lo, hi], "p": float}},
                        "area": float, "train_s": float, "params_added": int,
                        "steps": int | null, "grid": [{"run": str, "setting": {axis: value}, "dev": float | null,
                                                        "chosen": bool}, ...],        # optional
                        "errors": {"split": {"<condition>": {"sub": %, "del": %, "ins": %}},    # optional
                                   "by_snr": {"<bin>": {"0": %, "whole": %}}, "by_overlap": {...}}}},
     "bins": {"snr": {"<bin>": utterances}, "overlap": {"<bin>": utterances}},    # optional, with errors
     "bootstrap": {"unit": "utterance" | "recording", "units": int, "resamples": int,   # optional
                   "widen": float},      # optional: the small-sample widening over recordings
     "claims": {"<name>": {"holds": true | false | "not resolved", "evidence": str}},
     "goal": {"best_dropout": str, "area_best_dropout": float, "reduction": float,      # optional
              "rows": {"<ROW>": {"eligible": ..., "verdict": ..., "area": float, "reduction_pct": float,
                                 "short_by": float, ...}}}}

* conditions (:data:`CONDITIONS`, leaderboard name → ``avsr eval`` condition): random frame loss at the
  paper's rates ``0``, ``0.25``, ``0.5``, ``0.75``, ``1``; ``segment0.5``; ``whole``; babble at 0 dB
  (``babble0``) and -5 dB (``babble-5``) with full video;
* ``cer``: corpus CER in %; ``ci95``: its 95 % bootstrap interval (over utterances, or over recordings:
  ``bootstrap``);
* ``paired``: against A0 and AV0 (:data:`COMPARE`) at every condition: ``diff`` = CER(row) − CER(other)
  in points, its paired 95 % interval, and ``p`` = share of resamples in which the row is not better
  (:func:`avsr.eval.claims.paired_diff`; the same seeded resamples for every cell);
* ``area``: degradation area over the paper's rates 0 / .25 / .5 / .75 / 1 (trapezoid of
  CER(r) − CER_AV0(0), points x rate; :data:`avsr.eval.sweep.PAPER_RATES`);
* ``train_s``: the row's own training wall time (the sum of train and validation seconds over its
  train dir's ``train_result.json`` history; not its init's), 0 for a row trained by no run of its own;
* ``params_added``: parameters beyond AV0 (``train_result.json``'s ``parameters.total`` minus AV0's):
  the adapters for AV6, 0 for a fine-tune of AV0's architecture, negative for A0 (no visual branch);
* ``steps`` (optional): the optimiser steps of the row's training counted from its recipe model (its own
  run's plus its init row's run's; the equal-budget rule of :mod:`avsr.bin.rows`), null when unknown;
* ``grid`` (optional): the row's dev grid: every setting tried (``run`` name, its axis values, its dev
  score, or null for a grid of one) and which one dev chose; empty for the recipe's own A0 and AV0;
* ``errors`` (optional) and ``bins``: where the row's errors are (:mod:`avsr.eval.breakdown`):
  substitutions, deletions and insertions per condition (% of reference characters; they add up to
  ``cer``), and CER with full and with no video per SNR and overlap bin (SynthMISP's truth; ``bins``
  gives each bin's utterance count);
* ``claims``: :func:`avsr.eval.claims.interval_claims`, and the leaderboard's goal
  ``goal_35pct_area_below_best_dropout`` (:func:`avsr.eval.claims.goal_claim`);
* ``goal`` (optional, with that claim): per candidate row, why it meets the goal or misses it: whether it is
  eligible (not worse than AV0 at rate 0 and than A0 at any rate by more than 0.5 points, upper bounds),
  the upper bounds that decide it, its area, its reduction against the best dropout-only row (%) and how
  many points of reduction it is short of 35 %;
* ``bootstrap`` (optional; without it, utterances): what every interval's resamples draw with replacement
  (``unit``: utterances, or whole recordings with their utterances, :class:`avsr.eval.claims.Resampler`),
  how many there are to draw from (``units``) and how many resamples were made;
* ``corpus``: ``preset`` and ``seed`` from the corpus's ``synthmisp.json``; ``eval_segments`` and
  ``eval_speakers`` from ``<data_dir>/eval/utt2spk``; ``train_hours`` from the segment durations of
  ``<data_dir>/train/segments`` (:func:`corpus_facts`).
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Dict, List, Mapping, Optional, Sequence

from avsr.eval.claims import (UNITS, Resampler, area_points, cell_interval, claims_with_goal, paired_diff,
                              rate_condition)
from avsr.eval.sweep import PAPER_RATES

__all__ = ["CONDITIONS", "COMPARE", "LeaderboardError", "corpus_root_from_data", "corpus_facts", "train_facts",
           "build_leaderboard", "validate_leaderboard", "write_leaderboard"]

#: leaderboard condition name → ``avsr eval`` condition name (the sweep must hold every one)
CONDITIONS: Dict[str, str] = {**{f"{r:g}": rate_condition(r) for r in PAPER_RATES},
                              "segment0.5": "segment@0.5", "whole": "whole",
                              "babble0": "babble+0dB", "babble-5": "babble-5dB"}
COMPARE = ("A0", "AV0")          # every row is compared with these at every condition
_TOP = {"corpus", "search", "rows", "claims"}
_TOP_OPTIONAL = {"bins", "bootstrap", "goal"}
_CORPUS = {"preset": str, "seed": int, "eval_segments": int, "eval_speakers": int, "train_hours": float}
_ROW = {"cer", "ci95", "paired", "area", "train_s", "params_added"}
_ROW_OPTIONAL = {"steps", "grid", "errors"}
_HOLDS = (True, False, "not resolved")


class LeaderboardError(ValueError):
    """A leaderboard that cannot be built or does not match the schema; the message starts with the file
    (or ``leaderboard``) and names each field."""


# ------------------------------------------------------------------------------------ inputs
def corpus_root_from_data(data_dir: str) -> Optional[str]:
    """The corpus root a recipe data dir was prepared from: the folder above ``audio/`` of the first
    recording of ``<data_dir>/train/wav.scp.orig`` (kept by the far-array front-end) or ``wav.scp``;
    None when neither names a file under an ``audio/`` folder."""
    for name in ("wav.scp.orig", "wav.scp"):
        p = os.path.join(data_dir, "train", name)
        if not os.path.isfile(p):
            continue
        with open(p, encoding="utf-8") as f:
            for line in f:
                parts = line.split(maxsplit=1)
                if len(parts) == 2:
                    path = parts[1].strip()
                    i = path.rfind(os.sep + "audio" + os.sep)
                    if i > 0:
                        return path[:i]
                    break
    return None


def _lines(path: str) -> List[List[str]]:
    if not os.path.isfile(path):
        raise LeaderboardError(f"{path}: not found (the leaderboard's corpus facts come from the recipe's data dirs)")
    with open(path, encoding="utf-8") as f:
        return [ln.split() for ln in f if ln.strip()]


def corpus_facts(corpus_dir: str, data_dir: str) -> Dict:
    """``{"preset", "seed", "eval_segments", "eval_speakers", "train_hours"}`` of a SynthMISP corpus
    (``<corpus_dir>/synthmisp.json``) and the recipe's data dirs (``<data_dir>/eval/utt2spk``,
    ``<data_dir>/train/segments``: ``<utt> <recording> <start s> <end s>``)."""
    p = os.path.join(corpus_dir, "synthmisp.json")
    if not os.path.isfile(p):
        raise LeaderboardError(f"{p}: not found; the leaderboard's corpus preset and seed come from the "
                               "synthmisp.json of a SynthMISP corpus (--corpus_dir)")
    with open(p, encoding="utf-8") as f:
        meta = json.load(f)
    for k in ("preset", "seed"):
        if k not in meta:
            raise LeaderboardError(f"{p}: no {k!r}")
    u2s = _lines(os.path.join(data_dir, "eval", "utt2spk"))
    seg_path = os.path.join(data_dir, "train", "segments")
    hours = 0.0
    for i, x in enumerate(_lines(seg_path), 1):
        try:
            hours += (float(x[3]) - float(x[2])) / 3600.0
        except (IndexError, ValueError):
            raise LeaderboardError(f"{seg_path}:{i}: expected '<utt> <recording> <start> <end>'") from None
    return {"preset": str(meta["preset"]), "seed": int(meta["seed"]), "eval_segments": len(u2s),
            "eval_speakers": len({x[1] for x in u2s if len(x) > 1}), "train_hours": round(hours, 4)}


def train_facts(train_dir: str) -> Dict:
    """``{"train_s", "parameters"}`` of one train dir's ``train_result.json``: the sum of train and
    validation seconds over its history (``wall_seconds_this_call`` without a history), and its
    ``parameters`` counts (None when not recorded)."""
    p = os.path.join(train_dir, "train_result.json")
    if not os.path.isfile(p):
        raise LeaderboardError(f"{p}: not found (a row's training time comes from its own train dir)")
    with open(p, encoding="utf-8") as f:
        r = json.load(f)
    h = r.get("history") or []
    fin = lambda x: float(x) if isinstance(x, (int, float)) and math.isfinite(x) else 0.0  # noqa: E731
    secs = sum(fin(x.get("train_seconds")) + fin(x.get("valid_seconds")) for x in h) if h else \
        fin(r.get("wall_seconds_this_call"))
    return {"train_s": secs, "parameters": r.get("parameters")}


# ------------------------------------------------------------------------------------ build
def _search(s: str) -> str:
    return "greedy" if s in ("ctc_greedy", "greedy") else str(s)


def build_leaderboard(ev: Mapping, corpus: Mapping, best_dropout: Optional[str], rows_info: Mapping[str, Mapping],
                      num: int = 1000, seed: int = 0, breakdown: Optional[Mapping] = None,
                      unit: str = "utterance", dropout_rows: Sequence[str] = ()) -> Dict:
    """The leaderboard of the eval sweep ``ev`` (``avsr eval``'s sweep.json as a dict, with A0 and AV0):
    ``corpus`` (:func:`corpus_facts`), ``best_dropout`` (the dropout-only row chosen on dev, claim 4),
    ``rows_info``: ``{row: {"train_s": float, "params_added": int[, "steps": int | None, "grid": [...]]}}`` for
    every model of the sweep (``steps`` and ``grid`` are copied when given); ``breakdown``:
    :func:`avsr.eval.breakdown.error_breakdown` of the same sweep (each row's ``errors`` and the ``bins``);
    ``unit``: what the bootstrap draws, utterances or recordings (:class:`avsr.eval.claims.Resampler`);
    ``dropout_rows``: the rows left out of the goal's candidates (the spec's dropout-only and baseline rows)
    (:func:`avsr.eval.claims.goal_claim`: claim ``goal_35pct_area_below_best_dropout`` and the per-row
    ``goal`` facts, with ``best_dropout``, A0 and AV0 in the sweep).
    Raises :class:`LeaderboardError` when the sweep lacks a condition, AV0 or a row's facts."""
    missing = [c for c in CONDITIONS.values() if c not in ev.get("conditions", [])]
    if missing:
        raise LeaderboardError(f"leaderboard: the eval sweep has no condition {', '.join(missing)} "
                               "(avsr eval needs --rates with 0 0.25 0.5 0.75 1, --segment_rates 0.5, "
                               "whole, --snrs with 0 and -5)")
    if "AV0" not in ev.get("utt_errors", {}):
        raise LeaderboardError("leaderboard: the eval sweep has no AV0 (the areas' anchor)")
    rs = Resampler(ev, num=num, seed=seed, unit=unit)
    ref0 = rs.point("AV0", rate_condition(0))
    rows = {}
    for m in ev["utt_errors"]:
        if m not in rows_info:
            raise LeaderboardError(f"leaderboard: no training facts for row {m}")
        cer = {k: rs.point(m, c) for k, c in CONDITIONS.items()}
        ci = {k: cell_interval(rs.boot(m, c)) for k, c in CONDITIONS.items()}
        paired = {}
        for o in COMPARE:
            if o == m or o not in ev["utt_errors"]:
                continue
            for k, c in CONDITIONS.items():
                pd = paired_diff(rs, m, o, c)
                paired[f"{o}@{k}"] = {"diff": pd["diff"], "ci95": pd["ci95"], "p": pd["p"]}
        info = rows_info[m]
        rows[m] = {"cer": cer, "ci95": ci, "paired": paired,
                   "area": area_points({rate_condition(r): cer[f"{r:g}"] for r in PAPER_RATES}, ref0),
                   "train_s": float(info["train_s"]), "params_added": int(info["params_added"])}
        if "steps" in info:
            rows[m]["steps"] = None if info["steps"] is None else int(info["steps"])
        if "grid" in info:
            rows[m]["grid"] = [dict(g) for g in info["grid"]]
        if breakdown is not None:
            if m not in breakdown["rows"]:
                raise LeaderboardError(f"leaderboard: the error breakdown has no row {m}")
            rows[m]["errors"] = breakdown["rows"][m]
    cl, g = claims_with_goal(ev, best_dropout, dropout_rows, num=num, seed=seed, unit=unit, rs=rs)
    out = {"corpus": dict(corpus), "search": _search(ev.get("search", "?")), "rows": rows,
           "bootstrap": {"unit": unit, "units": rs.units, "resamples": rs.num,
                         **({"widen": rs.widen} if rs.widen != 1.0 else {})},
           "claims": cl}
    if g:
        out["goal"] = {k: g[k] for k in ("best_dropout", "area_best_dropout", "reduction", "rows")}
    if breakdown is not None and breakdown["bins"]:
        out["bins"] = breakdown["bins"]
    return out


# ------------------------------------------------------------------------------------ schema
def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _interval(x) -> bool:
    return isinstance(x, list) and len(x) == 2 and all(_num(v) for v in x) and x[0] <= x[1]


def _keys(errs, where, d, want, optional=()):
    if not isinstance(d, dict):
        errs.append(f"{where}: expected an object, got {type(d).__name__}")
        return False
    if not set(want) <= set(d) <= set(want) | set(optional):
        miss, extra = sorted(set(want) - set(d)), sorted(set(d) - set(want) - set(optional))
        errs.append(f"{where}: " + "; ".join(([f"missing {', '.join(miss)}"] if miss else [])
                                             + ([f"unexpected {', '.join(extra)}"] if extra else [])))
    return True


def _grid(errs, where, g) -> None:
    if not isinstance(g, list):
        errs.append(f"{where}: expected a list of settings, got {type(g).__name__}")
        return
    for i, x in enumerate(g):
        w = f"{where}[{i}]"
        if not _keys(errs, w, x, ("run", "setting", "dev", "chosen")) or \
                not {"run", "setting", "dev", "chosen"} <= set(x):
            continue
        if not (isinstance(x["run"], str) and x["run"]):
            errs.append(f"{w}.run: expected a run name, got {x['run']!r}")
        if not isinstance(x["setting"], dict):
            errs.append(f"{w}.setting: expected an object (axis -> value), got {type(x['setting']).__name__}")
        if not (x["dev"] is None or _num(x["dev"])):
            errs.append(f"{w}.dev: expected a number or null, got {x['dev']!r}")
        if not isinstance(x["chosen"], bool):
            errs.append(f"{w}.chosen: expected true or false, got {x['chosen']!r}")
    if g and sum(1 for x in g if isinstance(x, dict) and x.get("chosen") is True) != 1:
        errs.append(f"{where}: expected exactly one chosen setting")


def _errors(errs, where, e, bins) -> None:
    kinds = [k for k in ("snr", "overlap") if k in bins]
    if not _keys(errs, where, e, ("split",), tuple(f"by_{k}" for k in ("snr", "overlap"))):
        return
    sp = e.get("split")
    if "split" in e and _keys(errs, f"{where}.split", sp, CONDITIONS):
        for k, v in sp.items():
            if _keys(errs, f"{where}.split.{k}", v, ("sub", "del", "ins")):
                errs += [f"{where}.split.{k}.{t}: expected a % >= 0, got {x!r}" for t, x in v.items()
                         if not (_num(x) and x >= 0)]
    for kind in ("snr", "overlap"):
        b = e.get(f"by_{kind}")
        if b is None:
            if kind in kinds:
                errs.append(f"{where}: missing by_{kind} (bins.{kind} is given)")
            continue
        if kind not in kinds:
            errs.append(f"{where}.by_{kind}: no bins.{kind} at the top level")
            continue
        if _keys(errs, f"{where}.by_{kind}", b, bins[kind]):
            for lab, v in b.items():
                if _keys(errs, f"{where}.by_{kind}.{lab}", v, ("0", "whole")):
                    errs += [f"{where}.by_{kind}.{lab}.{c}: expected a CER % >= 0, got {x!r}" for c, x in v.items()
                             if not (_num(x) and x >= 0)]


def validate_leaderboard(d, source: str = "leaderboard") -> None:
    """Check ``d`` against the schema of the module docstring; raises :class:`LeaderboardError` whose
    message starts with ``source`` and lists every problem with its field (``rows.AV6.cer.0.25: ...``)."""
    errs: List[str] = []
    if _keys(errs, "top level", d, _TOP, _TOP_OPTIONAL):
        bins = d.get("bins") or {}
        if "bins" in d:
            if not isinstance(d["bins"], dict) or not all(
                    k in ("snr", "overlap") and isinstance(v, dict) and v and all(
                        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in v.values())
                    for k, v in d["bins"].items()):
                errs.append(f"bins: expected {{snr|overlap: {{bin: utterances > 0}}}}, got {d['bins']!r}")
                bins = {}
        if "goal" in d:
            g = d["goal"]
            if not (isinstance(g, dict) and {"best_dropout", "reduction", "rows"} <= set(g)
                    and isinstance(g["rows"], dict) and all(
                        isinstance(v, dict) and {"eligible", "verdict", "area", "reduction_pct", "short_by"} <= set(v)
                        for v in g["rows"].values())):
                errs.append("goal: expected {best_dropout, reduction, rows: {row: {eligible, verdict, area, "
                            "reduction_pct, short_by, ...}}}")
        if "bootstrap" in d:
            b = d["bootstrap"]
            if not (isinstance(b, dict) and {"unit", "units", "resamples"} <= set(b) <= {"unit", "units", "resamples", "widen"}
                    and b["unit"] in UNITS
                    and all(isinstance(b[k], int) and not isinstance(b[k], bool) and b[k] > 0 for k in ("units", "resamples"))
                    and ("widen" not in b or (_num(b["widen"]) and b["widen"] >= 1))):
                errs.append("bootstrap: expected {unit: 'utterance' | 'recording', units: int > 0, resamples: int > 0"
                            f"[, widen: float >= 1]}}, got {b!r}")
        c = d.get("corpus")
        if "corpus" in d and _keys(errs, "corpus", c, _CORPUS):
            for k, t in _CORPUS.items():
                if k not in c:
                    continue
                v = c[k]
                ok = (isinstance(v, str) and v != "") if t is str else \
                    (isinstance(v, int) and not isinstance(v, bool) and v >= 0) if t is int else (_num(v) and v >= 0)
                if not ok:
                    want = {str: "a non-empty string", int: "an integer >= 0", float: "a number >= 0"}[t]
                    errs.append(f"corpus.{k}: expected {want}, got {v!r}")
        s = d.get("search")
        if "search" in d and not (isinstance(s, str) and (s == "greedy" or re.fullmatch(r"beam[1-9]\d*", s))):
            errs.append(f"search: expected 'greedy' or 'beam<N>', got {s!r}")
        rows = d.get("rows")
        if "rows" in d and isinstance(rows, dict) and not rows:
            errs.append("rows: empty")
        if "rows" in d and not isinstance(rows, dict):
            errs.append(f"rows: expected an object, got {type(rows).__name__}")
        elif "rows" in d:
            for m, r in rows.items():
                w = f"rows.{m}"
                if not _keys(errs, w, r, _ROW, _ROW_OPTIONAL):
                    continue
                if "cer" in r and _keys(errs, f"{w}.cer", r["cer"], CONDITIONS):
                    errs += [f"{w}.cer.{k}: expected a CER % >= 0, got {v!r}" for k, v in r["cer"].items()
                             if not (_num(v) and v >= 0)]
                if "ci95" in r and _keys(errs, f"{w}.ci95", r["ci95"], CONDITIONS):
                    errs += [f"{w}.ci95.{k}: expected [lo, hi] with lo <= hi, got {v!r}" for k, v in r["ci95"].items()
                             if not _interval(v)]
                if "paired" in r and isinstance(r["paired"], dict):
                    for k, v in r["paired"].items():
                        o, _, cond = k.partition("@")
                        if o not in rows or o == m or cond not in CONDITIONS:
                            errs.append(f"{w}.paired.{k}: expected '<other row>@<condition>' (a row of rows, not "
                                        f"{m}; a condition of {', '.join(CONDITIONS)})")
                        if not _keys(errs, f"{w}.paired.{k}", v, ("diff", "ci95", "p")):
                            continue
                        if "diff" in v and not _num(v["diff"]):
                            errs.append(f"{w}.paired.{k}.diff: expected a number, got {v['diff']!r}")
                        if "ci95" in v and not _interval(v["ci95"]):
                            errs.append(f"{w}.paired.{k}.ci95: expected [lo, hi] with lo <= hi, got {v['ci95']!r}")
                        if "p" in v and not (_num(v["p"]) and 0 <= v["p"] <= 1):
                            errs.append(f"{w}.paired.{k}.p: expected a number in [0, 1], got {v['p']!r}")
                elif "paired" in r:
                    errs.append(f"{w}.paired: expected an object, got {type(r['paired']).__name__}")
                if "area" in r and not _num(r["area"]):
                    errs.append(f"{w}.area: expected a number, got {r['area']!r}")
                if "train_s" in r and not (_num(r["train_s"]) and r["train_s"] >= 0):
                    errs.append(f"{w}.train_s: expected seconds >= 0, got {r['train_s']!r}")
                if "params_added" in r and not (isinstance(r["params_added"], int)
                                                and not isinstance(r["params_added"], bool)):
                    errs.append(f"{w}.params_added: expected an integer, got {r['params_added']!r}")
                if "steps" in r and not (r["steps"] is None or (isinstance(r["steps"], int)
                                                                and not isinstance(r["steps"], bool) and r["steps"] >= 0)):
                    errs.append(f"{w}.steps: expected an integer >= 0 or null, got {r['steps']!r}")
                if "grid" in r:
                    _grid(errs, f"{w}.grid", r["grid"])
                if "errors" in r:
                    _errors(errs, f"{w}.errors", r["errors"], bins)
        cl = d.get("claims")
        if "claims" in d and not isinstance(cl, dict):
            errs.append(f"claims: expected an object, got {type(cl).__name__}")
        elif "claims" in d:
            for k, v in cl.items():
                if not _keys(errs, f"claims.{k}", v, ("holds", "evidence")):
                    continue
                if "holds" in v and not any(v["holds"] is h if isinstance(h, bool) else v["holds"] == h for h in _HOLDS):
                    errs.append(f"claims.{k}.holds: expected true, false or \"not resolved\", got {v['holds']!r}")
                if "evidence" in v and not (isinstance(v["evidence"], str) and v["evidence"].strip()):
                    errs.append(f"claims.{k}.evidence: expected a non-empty string, got {v['evidence']!r}")
    if errs:
        raise LeaderboardError(f"{source}: not a leaderboard.json: " + "; ".join(errs))


def write_leaderboard(d: Mapping, path: str) -> None:
    """Validate ``d`` and write it to ``path`` (UTF-8 JSON, atomically)."""
    validate_leaderboard(d, "leaderboard (to be written to " + path + ")")
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(d, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)

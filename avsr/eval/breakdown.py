"""Where a model's errors are: substitutions, deletions and insertions per condition, and CER by the
talkers' SNR and by overlap, from an eval sweep's hypotheses (``hyps.json`` of ``avsr eval``).

The leaderboard (:mod:`avsr.eval.leaderboard`) carries this per row as the measured reason behind a
row that misses its goal:

* ``split``: per leaderboard condition, substitutions, deletions and insertions in % of the reference
  characters (they add up to the condition's CER; jiwer's character alignment,
  :func:`avsr.eval.metrics.utt_error_split`);
* ``by_snr`` / ``by_overlap``: CER in % per bin of utterances with full video (``"0"``) and with the
  whole video missing (``"whole"``).  SNR is the talkers-to-TV-noise ratio the generator drew for the
  utterance's session (three bins at the tertiles of the swept utterances' values, labelled by the
  range they hold); overlap is the share of the utterance's turn during which another talker speaks
  (``none``, ``up to 50 %``, ``over 50 %``).  Both come from a SynthMISP corpus's truth files
  (:mod:`avsr.synthmisp.truth`); a corpus without them (a real release) gets the split only.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from avsr.eval.metrics import utt_error_split

__all__ = ["BIN_CONDITIONS", "OVERLAP_BINS", "snr_bins", "overlap_bins", "error_breakdown", "utt_bins_from_truth"]

#: leaderboard condition → ``avsr eval`` condition of the binned CERs: full video and no video
BIN_CONDITIONS = {"0": "random@0", "whole": "whole"}
OVERLAP_BINS = ("none", "up to 50 %", "over 50 %")


def snr_bins(snr: Mapping[str, float]) -> Dict[str, str]:
    """``{utt: label}``: three bins at the tertiles of the values (fewer when values repeat), each
    labelled ``"<min> to <max> dB"`` of the values it holds."""
    if not snr:
        return {}
    vals = np.array(sorted(snr.values()), dtype=float)
    edges = sorted(set(np.quantile(vals, [1 / 3, 2 / 3]).tolist()))
    idx = {u: int(np.searchsorted(edges, v, side="right")) for u, v in snr.items()}
    labels = {}
    for b in sorted(set(idx.values())):
        members = [snr[u] for u, i in idx.items() if i == b]
        labels[b] = f"{min(members):.1f} to {max(members):.1f} dB"
    return {u: labels[i] for u, i in idx.items()}


def overlap_bins(overlap: Mapping[str, float]) -> Dict[str, str]:
    """``{utt: label}`` of :data:`OVERLAP_BINS` from the overlapped share of each utterance's turn."""
    return {u: OVERLAP_BINS[0] if x <= 0 else OVERLAP_BINS[1] if x <= 0.5 else OVERLAP_BINS[2]
            for u, x in overlap.items()}


def utt_bins_from_truth(corpus_dir: str, data_dir: str) -> Dict[str, Dict[str, str]]:
    """``{"snr": {utt: label}, "overlap": {utt: label}}`` for the segments of ``data_dir`` from the
    SynthMISP truth of ``corpus_dir`` (:func:`avsr.synthmisp.truth.segment_truths`, ``session_snr``)."""
    from avsr.synthmisp.truth import segment_truths, session_snr
    truths = segment_truths(corpus_dir, data_dir)
    snr_of = session_snr(corpus_dir)
    return {"snr": snr_bins({t.utt: snr_of[t.session] for t in truths}),
            "overlap": overlap_bins({t.utt: t.overlap for t in truths})}


def _sums(splits) -> Tuple[int, int, int, int]:
    """Substitutions, deletions, insertions and reference characters summed over utterances."""
    tot = [0, 0, 0, 0]
    for x in splits:
        for k in range(4):
            tot[k] += x[k]
    return tuple(tot)


def _pct(x: float, n: int) -> float:
    return round(100.0 * x / n, 4) if n else 0.0


def error_breakdown(hyps: Mapping[str, Mapping[str, Mapping[str, str]]], refs: Mapping[str, str],
                    utt_ids: Sequence[str], conditions: Mapping[str, str],
                    bins: Optional[Mapping[str, Mapping[str, str]]] = None) -> Dict:
    """``{"bins": {kind: {label: utterances}}, "rows": {model: {"split": ..., "by_snr": ..., "by_overlap": ...}}}``
    (module docstring) for every model of ``hyps`` (``{model: {condition: {utt: text}}}``, a missing
    hypothesis counts as empty) over ``utt_ids`` against ``refs``; ``conditions``: leaderboard name →
    sweep condition; ``bins``: :func:`utt_bins_from_truth` (None: the split only)."""
    missing = [u for u in utt_ids if u not in refs]
    if missing:
        raise ValueError(f"no reference text for {len(missing)} swept utterance(s), e.g. {missing[0]}")
    kinds = {k: dict(v) for k, v in (bins or {}).items() if v}
    for kind, b in kinds.items():
        lost = [u for u in utt_ids if u not in b]
        if lost:
            raise ValueError(f"{kind} bins: no value for {len(lost)} swept utterance(s), e.g. {lost[0]}")
    members = {kind: {lab: [u for u in utt_ids if b[u] == lab] for lab in _ordered(kind, b, utt_ids)}
               for kind, b in kinds.items()}         # each bin's utterances, in bin order
    out_bins = {kind: {lab: len(us) for lab, us in m.items()} for kind, m in members.items()}
    rows = {}
    for m, by_cond in hyps.items():
        per = {}
        for name, cond in conditions.items():
            if cond not in by_cond:
                raise ValueError(f"model {m}: no hypotheses for condition {cond}")
            h = by_cond[cond]
            per[name] = {u: utt_error_split(refs[u], h.get(u, "")) for u in utt_ids}
        split = {}
        for name, e in per.items():
            sub, dele, ins, n = _sums(e.values())
            split[name] = {"sub": _pct(sub, n), "del": _pct(dele, n), "ins": _pct(ins, n)}
        row = {"split": split}
        for kind in kinds:
            row[f"by_{kind}"] = {}
            for lab, us in members[kind].items():
                row[f"by_{kind}"][lab] = {}
                for name in BIN_CONDITIONS:
                    if name in per:
                        sub, dele, ins, n = _sums(per[name][u] for u in us)
                        row[f"by_{kind}"][lab][name] = _pct(sub + dele + ins, n)
        rows[m] = row
    return {"bins": out_bins, "rows": rows}


def _ordered(kind: str, b: Mapping[str, str], utt_ids: Sequence[str]) -> list:
    present = {b[u] for u in utt_ids}
    if kind == "overlap":
        return [x for x in OVERLAP_BINS if x in present]
    return sorted(present, key=lambda lab: float(lab.split(" to ")[0]))

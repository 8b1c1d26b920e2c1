"""avsr.eval.breakdown: substitutions, deletions and insertions per condition and CER by SNR and
overlap bins (the leaderboard's measured reasons), on hand-made hypotheses and a hand-made truth."""
import json

import pytest

from avsr.eval import leaderboard as lbm
from avsr.eval.breakdown import OVERLAP_BINS, error_breakdown, overlap_bins, snr_bins, utt_bins_from_truth

REFS = {"u1": "我们去公园", "u2": "今天下雨", "u3": "小王在家看书", "u4": "他们买了车"}
CONDS = {"0": "random@0", "whole": "whole"}


def test_split_counts_each_kind_and_adds_up_to_the_cer():
    hyps = {"M": {"random@0": {"u1": "我们去公园", "u2": "今天下", "u3": "小王在家看书书", "u4": "她们买了车"},
                  "whole": {"u1": "", "u2": "今天下雨", "u3": "小王在家看书", "u4": "他们买了车"}}}
    out = error_breakdown(hyps, REFS, list(REFS), CONDS)
    n = sum(len(t) for t in REFS.values())          # 20 reference characters
    assert out["rows"]["M"]["split"]["0"] == {"sub": pytest.approx(100 / n, abs=1e-3), "del": pytest.approx(100 / n, abs=1e-3),
                                              "ins": pytest.approx(100 / n, abs=1e-3)}
    # an empty hypothesis deletes every character; a missing one counts as empty
    assert out["rows"]["M"]["split"]["whole"] == {"sub": 0.0, "del": pytest.approx(500 / n, abs=1e-3), "ins": 0.0}
    del hyps["M"]["whole"]["u1"]
    assert error_breakdown(hyps, REFS, list(REFS), CONDS)["rows"]["M"]["split"]["whole"]["del"] == pytest.approx(500 / n, abs=1e-3)
    assert out["bins"] == {} and "by_snr" not in out["rows"]["M"]
    with pytest.raises(ValueError, match="no reference text for 1 .* u9"):
        error_breakdown(hyps, REFS, list(REFS) + ["u9"], CONDS)
    with pytest.raises(ValueError, match="model M: no hypotheses for condition whole"):
        error_breakdown({"M": {"random@0": {}}}, REFS, list(REFS), CONDS)


def test_bins_split_the_cer_by_snr_and_overlap():
    hyps = {"M": {c: {"u1": "", "u2": "今天下雨", "u3": "小王在家看书", "u4": "他们买了"} for c in CONDS.values()}}
    bins = {"snr": snr_bins({"u1": 0.5, "u2": 4.0, "u3": 4.2, "u4": 9.0}),
            "overlap": overlap_bins({"u1": 0.6, "u2": 0.2, "u3": 0.0, "u4": 0.0})}
    # tertile edges 4.0 and 4.2 (a value on an edge goes up)
    assert bins["snr"] == {"u1": "0.5 to 0.5 dB", "u2": "4.0 to 4.0 dB", "u3": "4.2 to 9.0 dB", "u4": "4.2 to 9.0 dB"}
    assert bins["overlap"] == {"u1": OVERLAP_BINS[2], "u2": OVERLAP_BINS[1], "u3": OVERLAP_BINS[0], "u4": OVERLAP_BINS[0]}
    out = error_breakdown(hyps, REFS, list(REFS), CONDS, bins)
    assert out["bins"] == {"snr": {"0.5 to 0.5 dB": 1, "4.0 to 4.0 dB": 1, "4.2 to 9.0 dB": 2},
                           "overlap": {"none": 2, "up to 50 %": 1, "over 50 %": 1}}
    r = out["rows"]["M"]
    assert r["by_snr"]["0.5 to 0.5 dB"] == {"0": 100.0, "whole": 100.0}           # u1: all deleted
    assert r["by_snr"]["4.0 to 4.0 dB"]["0"] == 0.0 and r["by_snr"]["4.2 to 9.0 dB"]["0"] == pytest.approx(100 / 11, abs=1e-3)
    assert r["by_overlap"]["none"]["0"] == pytest.approx(100 / 11, abs=1e-3)                 # u3 + u4: 1 of 11
    assert list(r["by_overlap"]) == list(OVERLAP_BINS)
    with pytest.raises(ValueError, match="snr bins: no value for 1 .* u4"):
        error_breakdown(hyps, REFS, list(REFS), CONDS, {"snr": {k: v for k, v in bins["snr"].items() if k != "u4"}})


def test_snr_bins_are_tertiles():
    vals = {f"u{i}": float(i) for i in range(9)}
    labs = snr_bins(vals)
    assert sorted(set(labs.values()), key=lambda s: float(s.split()[0])) == ["0.0 to 2.0 dB", "3.0 to 5.0 dB",
                                                                             "6.0 to 8.0 dB"]
    assert set(snr_bins({"a": 3.0, "b": 3.0}).values()) == {"3.0 to 3.0 dB"}     # one value: one bin


def test_bins_from_a_synthmisp_truth(tmp_path):
    from tests.test_synthmisp_truth import SESSION, _corpus
    corpus, data = _corpus(tmp_path)
    f = corpus / "truth" / "dev" / f"{SESSION}.json"
    d = json.loads(f.read_text(encoding="utf-8"))
    f.write_text(json.dumps({**d, "snr_db": 3.5}, ensure_ascii=False), encoding="utf-8")
    b = utt_bins_from_truth(str(corpus), str(data))
    assert set(b["snr"].values()) == {"3.5 to 3.5 dB"} and len(b["snr"]) == 5
    # the first two turns overlap (32 % and 37 % of each), the other two and the filler do not
    assert sorted(b["overlap"].values()) == ["none"] * 3 + ["up to 50 %"] * 2


def test_leaderboard_validates_the_errors_against_its_bins():
    def lb(errors, bins):
        cer = {k: 1.0 for k in lbm.CONDITIONS}
        row = {"cer": cer, "ci95": {k: [0.0, 2.0] for k in cer}, "paired": {}, "area": 0.0, "train_s": 0.0,
               "params_added": 0, "errors": errors}
        d = {"corpus": {"preset": "mini", "seed": 1, "eval_segments": 1, "eval_speakers": 1, "train_hours": 1.0},
             "search": "greedy", "rows": {"AV0": row}, "claims": {}}
        if bins is not None:
            d["bins"] = bins
        return d
    split = {k: {"sub": 1.0, "del": 0.0, "ins": 0.0} for k in lbm.CONDITIONS}
    good = {"split": split, "by_snr": {"0 to 3 dB": {"0": 1.0, "whole": 2.0}}}
    lbm.validate_leaderboard(lb(good, {"snr": {"0 to 3 dB": 4}}))
    for errors, bins, msg in (
            (good, None, r"rows\.AV0\.errors\.by_snr: no bins\.snr"),
            ({"split": split}, {"snr": {"0 to 3 dB": 4}}, r"rows\.AV0\.errors: missing by_snr"),
            ({**good, "by_snr": {"3 to 6 dB": {"0": 1.0, "whole": 2.0}}}, {"snr": {"0 to 3 dB": 4}},
             r"by_snr: missing 0 to 3 dB; unexpected 3 to 6 dB"),
            ({**good, "split": {**split, "0": {"sub": -1.0, "del": 0.0, "ins": 0.0}}}, {"snr": {"0 to 3 dB": 4}},
             r"split\.0\.sub: expected a % >= 0"),
            (good, {"snr": {"0 to 3 dB": 0}}, r"bins: expected")):
        with pytest.raises(lbm.LeaderboardError, match=msg):
            lbm.validate_leaderboard(lb(errors, bins))

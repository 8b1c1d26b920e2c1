#!/usr/bin/env python
"""Where does a fine-tune's rate-0 loss live?  Swap parameter groups between two packed models.

For a *base* and a *donor* packed model of the same config, write one packed hybrid per group:
the base's weights with that group's parameters taken from the donor.  Decode them (with
``avsr eval``) to see which part of the fine-tune carries a change in behaviour.  Groups are
top-level submodules of :class:`avsr.models.AVSRModel`, merged as listed in ``GROUPS``.

    python scripts/probe_swap.py --base AV5.packed --donor AV0.packed --out_dir DIR
    python -m avsr.cli eval --models $(ls -d DIR/*/ | ...) --data_dir .../dev ...
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from avsr.pack import load_packed, pack_model  # noqa: E402
from avsr.trainer.checkpoint import load_checkpoint  # noqa: E402

# group name -> top-level prefixes of the state dict
GROUPS = {
    "audio": ("audio_frontend.", "audio_encoder."),
    "visual": ("visual_frontend.", "visual_encoder."),
    "cross": ("cross_a2v.", "cross_v2a."),
    "merge": ("merge_ffn.",),
    "shared": ("shared_encoder.",),
    "ctc": ("ctc.",),
    "decoder": ("decoder.",),
}


def hybrid(base_sd, donor_sd, prefixes):
    out, n = {}, 0
    for k, v in base_sd.items():
        if k.startswith(prefixes):
            out[k] = donor_sd[k]
            n += v.numel()
        else:
            out[k] = v
    return out, n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="packed model dir whose weights are kept")
    p.add_argument("--donor", required=True, help="packed model dir the swapped group comes from")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--groups", nargs="+", default=["audio", "visual", "cross+merge", "shared+ctc"],
                   help="groups to swap, one hybrid each; join with + to swap several at once")
    a = p.parse_args(argv)
    _, _, info = load_packed(a.base)
    base_sd = load_checkpoint(os.path.join(a.base, "model.pth"))
    donor_sd = load_checkpoint(os.path.join(a.donor, "model.pth"))
    if set(base_sd) != set(donor_sd):
        sys.exit(f"{a.base} and {a.donor} have different parameters; they must share a config")
    for spec in a.groups:
        names = spec.split("+")
        bad = [g for g in names if g not in GROUPS]
        if bad:
            sys.exit(f"unknown group(s) {bad}; known: {sorted(GROUPS)}")
        prefixes = tuple(x for g in names for x in GROUPS[g])
        sd, n = hybrid(base_sd, donor_sd, prefixes)
        out = os.path.join(a.out_dir, spec.replace("+", "_"))
        pack_model(out, model_config=info["model"], token_list=os.path.join(a.base, "tokens.txt"),
                   weights=sd, decode=info.get("decode"),
                   extra_meta={"hybrid": {"base": os.path.abspath(a.base), "donor": os.path.abspath(a.donor),
                                          "swapped": names, "swapped_parameters": n}})
        print(f"{out}: {n} parameters from the donor ({spec})")


if __name__ == "__main__":
    main()

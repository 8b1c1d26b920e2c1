"""Global fbank mean / std over a training data dir (ESPnet's collect_stats idea).

    python -m avsr.bin.collect_stats --config conf/mini.yaml --data_dir data/train --out exp/stats/feats_stats.json

Writes JSON ``{"mean": [...80], "std": [...80], "frames": N, "utterances": U, "data_dir": ...}``.
The trainer copies these into the model's buffers, so they are stored with every checkpoint and
packed model.  Also records the mean ROI pixel value (``video_mean``) for methods that need it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from avsr.bin import HelpFormatter


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="avsr collect_stats", description=__doc__.split("\n\n")[0],
                                 formatter_class=HelpFormatter)
    ap.add_argument("--config", required=True, help="YAML with a model: section (fbank settings)")
    ap.add_argument("--data_dir", required=True, help="the training data dir")
    ap.add_argument("--out", required=True, help="feats_stats.json to write (global fbank mean and std)")
    ap.add_argument("--batch_size", type=int, default=16, help="utterances per batch")
    ap.add_argument("--video_utts", type=int, default=200, help="utterances for the mean ROI value (0: skip)")
    args = ap.parse_args(argv)

    from avsr.data.dataset import AVSRDataset, collate
    from avsr.models import AudioFrontend, compute_feature_stats, load_model_config

    t0 = time.time()
    cfg = load_model_config(args.config, vocab_size=3)
    fr = AudioFrontend(cfg.fs, cfg.n_fft, cfg.win_length, cfg.hop_length, cfg.n_mels, False)
    ds = AVSRDataset(args.data_dir, None, modality="audio")
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, collate_fn=collate)
    frames = [0]

    def batches():
        for b in loader:
            frames[0] += int(b.audio_lens.sum())
            yield b

    with torch.no_grad():
        mean, std = compute_feature_stats(fr, batches())
    out = {"mean": mean.tolist(), "std": std.tolist(), "utterances": len(ds),
           "audio_seconds": frames[0] / cfg.fs, "data_dir": os.path.abspath(args.data_dir)}
    if args.video_utts > 0 and os.path.isfile(os.path.join(args.data_dir, "roi.scp")):
        from avsr.data.dataset import dataset_video_mean
        vds = AVSRDataset(args.data_dir, None, modality="video")
        vm = dataset_video_mean(vds, max_utts=args.video_utts)
        out["video_mean"] = float(vm.mean()) / 255.0   # compare with the config's video_mean
    out["seconds"] = time.time() - t0
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, args.out)
    print(f"{args.out}: {len(ds)} utterances, {out['audio_seconds'] / 3600:.2f} h, {out['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

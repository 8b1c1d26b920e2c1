"""Audio-visual dataset over a Kaldi-style data dir, and the collate function making a :class:`Batch`.

Documented behaviours
---------------------
* **Reading**: the data dir is read with :func:`avsr.data.datadir.read_datadir`.  Audio:
  ``wav.scp`` (+ ``segments``) with :func:`frontends.audio.load_audio` (``start``/``end`` of
  the segment, 16 kHz, ``channel`` = ``"mean"`` by default - the identity for the mono
  per-channel files the recipes write; an ``int`` picks a channel of multi-channel files).
  ``wav.scp`` entries must be file paths (Kaldi pipe commands ``... |`` are refused at
  construction).  Text: ``text`` -> ids with :class:`avsr.text.tokens.Tokenizer`
  (no ``text`` file: ``tokens`` is None).  Video: ``roi.scp`` -> ``npz`` with ``roi``
  uint8 ``[T, 96, 96]`` and ``detected`` bool ``[T]``.
* **Crop**: ``train=True``: one random ``crop x crop`` window per utterance (same offsets for
  all its frames, offsets uniform over all positions) and, with probability ``flip_prob``,
  a horizontal flip of the whole utterance; ``train=False``: the centre crop
  (:func:`frontends.roi.center_crop`), no flip.
* **frame_mask starts all True** for the frames that exist: frames without a detection were
  cropped with an interpolated box, so they hold real pixels; the per-frame ``detected``
  flags are kept in ``Batch.extras["detected"]`` (False in padding).  Missing-video
  simulation (:mod:`avsr.robust.frame_loss`) then sets dropped frames to False.
  In a collated batch, ``frame_mask`` is False in padding.
* **Utterances without video** (evaluation sets prepared with ``avsr prepare_rois
  --keep_all``): when the data dir has a ``utt2audio_only`` table, an utterance listed
  there, or without a ``roi.scp`` entry, gets an all-absent video: ``round(end * 25) -
  round(start * 25)`` frames (rounding half up, as the ROI files; at least 1) of black
  pixels (0, the toolkit's missing-frame value, as in :mod:`avsr.robust.frame_loss`),
  ``detected`` all False and ``frame_mask`` all False (item key ``"present"``), so that
  :meth:`avsr.inference.Speech2Text.route` sends it to the audio-only (MS-Adapter) path
  and a model without adapters sees black frames.  :attr:`AVSRDataset.audio_only` holds
  these ids.  Without the table every utterance needs an ROI, as before (training).
* **Determinism**: the augmentation of item ``i`` is drawn from
  ``numpy.random.default_rng([seed, epoch, i])``, so it depends only on ``(seed, epoch, i)``
  - not on worker processes or loading order.  Call :meth:`AVSRDataset.set_epoch` before
  creating the epoch's DataLoader iterator (workers copy the dataset when the iterator
  starts; do not use ``persistent_workers`` with a changing epoch).
* **max_duration**: utterances longer than this many seconds are left out
  (:attr:`AVSRDataset.num_filtered` counts them).
* **Errors**: a missing or unreadable wav / ROI file raises
  :class:`frontends.errors.MediaError` whose message starts with the file path and names
  the utterance; malformed tables raise :class:`avsr.data.datadir.DataDirError`.
* **Padding** (:func:`collate`): audio and video with zeros, tokens with ``IGNORE_ID`` (-1).
  ``Batch.extras``: ``"detected"`` bool ``[B, T]`` (video), ``"text"`` list of str.
  An item's optional ``"present"`` bool ``[T]`` is and-ed into ``frame_mask``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from avsr.data.batch import IGNORE_ID, Batch
from avsr.data.datadir import DataDir, DataDirError, read_datadir
from frontends.constants import CROP_SIZE, ROI_SIZE, SAMPLE_RATE
from frontends.constants import VIDEO_FPS as _FPS
from frontends.errors import MediaError

__all__ = ["AVSRDataset", "collate", "load_items", "load_roi_file", "dataset_video_mean", "MODALITIES", "VIDEO_FPS",
           "AUDIO_ONLY_TABLE"]

MODALITIES = ("audiovisual", "audio", "video")
#: Frame rate of ROI files (:data:`frontends.constants.VIDEO_FPS`, as a float).
VIDEO_FPS = float(_FPS)
ROI_SIDE = ROI_SIZE
#: Data-dir table listing utterances kept without ROI (written by ``avsr prepare_rois --keep_all``).
AUDIO_ONLY_TABLE = "utt2audio_only"


def load_roi_file(path: str, utt: Optional[str] = None):
    """``(roi uint8 [T, H, W], detected bool [T])``; :class:`MediaError` naming ``path`` otherwise."""
    what = f" (utterance {utt})" if utt else ""
    if not os.path.isfile(path):
        raise MediaError(path, f"ROI file not found{what}")
    try:
        with np.load(path) as z:
            roi = z["roi"]
            det = z["detected"] if "detected" in z.files else None
    except KeyError:
        raise MediaError(path, f"ROI file has no 'roi' array{what}") from None
    except Exception as e:  # BadZipFile, ValueError, OSError, EOFError ...
        raise MediaError(path, f"unreadable ROI file{what} ({type(e).__name__}: {e})") from None
    if roi.dtype != np.uint8 or roi.ndim != 3 or roi.shape[0] == 0:
        raise MediaError(path, f"ROI must be non-empty uint8 [T, H, W], got {roi.dtype} "
                               f"{tuple(roi.shape)}{what}")
    if det is None:
        det = np.ones(roi.shape[0], dtype=bool)
    det = np.asarray(det).astype(bool).reshape(-1)
    if det.shape[0] != roi.shape[0]:
        raise MediaError(path, f"'detected' has {det.shape[0]} entries for {roi.shape[0]} "
                               f"frames{what}")
    return roi, det


class AVSRDataset(torch.utils.data.Dataset):
    """One item per utterance of a data dir (sorted ids); see the module docstring.

    ``token_list``: path to ``tokens.txt``, a list of tokens, a :class:`Tokenizer`, or None
    (no targets).  ``modality``: which streams to load (``audio`` skips ROI files, ``video``
    skips audio).  Items are dicts: ``utt_id``, ``audio`` float32 ``[N]`` or None, ``video``
    uint8 ``[T, crop, crop]`` or None, ``detected`` bool ``[T]`` or None, ``tokens`` int64
    ``[L]`` or None, ``text``.
    """

    def __init__(self, data_dir: Union[str, os.PathLike], token_list=None, *,
                 modality: str = "audiovisual", train: bool = False, crop: int = CROP_SIZE,
                 flip_prob: float = 0.5, max_duration: Optional[float] = None, seed: int = 0,
                 channel: Union[int, str] = "mean", token_type: str = "char",
                 bpemodel: Optional[str] = None, sample_rate: int = SAMPLE_RATE):
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        self.data_dir = os.fspath(data_dir)
        self.modality = modality
        self.train = bool(train)
        self.crop = int(crop)
        if not 0 < self.crop <= ROI_SIDE:
            raise ValueError(f"crop must be in 1..{ROI_SIDE}, got {crop}")
        self.flip_prob = float(flip_prob)
        self.seed = int(seed)
        self.epoch = 0
        self.channel = channel
        self.sample_rate = int(sample_rate)
        dd = read_datadir(self.data_dir)
        self.dd: DataDir = dd
        self.use_audio = modality in ("audiovisual", "audio")
        self.use_video = modality in ("audiovisual", "video")
        utts = dd.utts
        #: utterances decoded without video (see the module docstring); empty without the table
        self.audio_only = set()
        if AUDIO_ONLY_TABLE in dd.extra:
            self.audio_only = {u for u in utts if u in dd.extra[AUDIO_ONLY_TABLE] or u not in dd.roi}
        if self.use_video and not dd.roi and AUDIO_ONLY_TABLE not in dd.extra:
            raise DataDirError(f"{os.path.join(self.data_dir, 'roi.scp')}: missing or empty "
                               f"(needed for modality {modality!r})")
        if self.use_audio:
            wav_scp = os.path.join(self.data_dir, "wav.scp")
            for rec, p in dd.wav.items():
                if not p.strip():
                    raise DataDirError(f"{wav_scp}: entry {rec!r} is empty")
            for u in utts:
                if dd.recording_of(u) not in dd.wav:
                    raise DataDirError(f"{wav_scp}: no audio for utterance {u!r} "
                                       f"(recording {dd.recording_of(u)!r})")
        if self.use_video:
            missing = [u for u in utts if u not in dd.roi and u not in self.audio_only]
            if missing:
                raise DataDirError(f"{os.path.join(self.data_dir, 'roi.scp')}: no ROI for "
                                   f"{len(missing)} utterance(s), e.g. {missing[0]}")
        # durations (s): segments, else utt2num_roi_frames / 25, else audio header
        durs: Dict[str, float] = {}
        nroi = dd.extra.get("utt2num_roi_frames", {})
        for u in utts:
            if dd.segments:
                durs[u] = dd.segments[u].duration
            elif u in nroi:
                durs[u] = int(nroi[u]) / VIDEO_FPS
            else:
                from frontends.audio import audio_info, is_kaldi_entry, load_kaldi_audio
                w = dd.wav[dd.recording_of(u)]
                durs[u] = (len(load_kaldi_audio(w, target_sr=SAMPLE_RATE)) / SAMPLE_RATE if is_kaldi_entry(w)
                           else audio_info(w).duration)
        self.max_duration = max_duration
        if max_duration is not None:
            kept = [u for u in utts if durs[u] <= float(max_duration)]
        else:
            kept = list(utts)
        self.num_filtered = len(utts) - len(kept)
        self.utt_ids: List[str] = kept
        self.durations: List[float] = [float(durs[u]) for u in kept]
        # tokenizer
        if token_list is None:
            self.tokenizer = None
        elif hasattr(token_list, "encode") and hasattr(token_list, "token_list"):
            self.tokenizer = token_list
        else:
            from avsr.text.tokens import Tokenizer
            self.tokenizer = Tokenizer(token_list, token_type=token_type, bpemodel=bpemodel)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.utt_ids)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (see the module docstring)."""
        self.epoch = int(epoch)

    def num_frames(self, index: int) -> int:
        """Video frames of item ``index`` (``utt2num_roi_frames`` or ``round(duration*25)``)."""
        u = self.utt_ids[index]
        n = None if u in self.audio_only else self.dd.extra.get("utt2num_roi_frames", {}).get(u)
        if n is not None:
            return int(n)
        if self.dd.segments:
            s = self.dd.segments[u]
            return int(np.floor(s.end * VIDEO_FPS + 0.5)) - int(np.floor(s.start * VIDEO_FPS + 0.5))
        return int(np.floor(self.durations[index] * VIDEO_FPS + 0.5))

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    # ------------------------------------------------------------------ loading
    def load_audio(self, index: int) -> np.ndarray:
        from frontends.audio import is_kaldi_entry, load_audio, load_kaldi_audio
        u = self.utt_ids[index]
        path = self.dd.wav[self.dd.recording_of(u)]
        start, end = self.dd.span(u)
        try:       # a file path, or a Kaldi pipe / ark entry (read with kaldiio)
            return (load_kaldi_audio if is_kaldi_entry(path) else load_audio)(
                path, target_sr=self.sample_rate, channel=self.channel, start=start, end=end)
        except MediaError as e:
            raise MediaError(e.path, f"{e.reason} (utterance {u})") from None

    def load_video(self, index: int, rng: Optional[np.random.Generator] = None):
        """``(video uint8 [T, crop, crop], detected bool [T])`` with the train/eval crop."""
        from frontends.roi import center_crop
        u = self.utt_ids[index]
        if u in self.audio_only:  # no lip ROI: black frames, none detected (module docstring)
            n = max(1, self.num_frames(index))
            return np.zeros((n, self.crop, self.crop), dtype=np.uint8), np.zeros(n, dtype=bool)
        roi, det = load_roi_file(self.dd.roi[u], u)
        H, W = roi.shape[1:]
        if H < self.crop or W < self.crop:
            raise MediaError(self.dd.roi[u], f"ROI frames {H}x{W} are smaller than the "
                                             f"{self.crop} crop (utterance {u})")
        if self.train:
            rng = rng if rng is not None else self.rng(index)
            y = int(rng.integers(0, H - self.crop + 1))
            x = int(rng.integers(0, W - self.crop + 1))
            flip = bool(rng.random() < self.flip_prob)
            v = roi[:, y:y + self.crop, x:x + self.crop]
            if flip:
                v = v[:, :, ::-1]
        else:
            v = center_crop(roi, self.crop)
        return np.ascontiguousarray(v), det

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if not 0 <= index < len(self.utt_ids):
            raise IndexError(index)
        u = self.utt_ids[index]
        item: Dict[str, Any] = {"utt_id": u, "audio": None, "video": None, "detected": None,
                                "tokens": None, "text": self.dd.text.get(u)}
        rng = self.rng(index)
        if self.use_video:
            v, det = self.load_video(index, rng)
            item["video"] = torch.from_numpy(v)
            item["detected"] = torch.from_numpy(np.ascontiguousarray(det))
            if u in self.audio_only:
                item["present"] = torch.zeros(v.shape[0], dtype=torch.bool)
        if self.use_audio:
            item["audio"] = torch.from_numpy(self.load_audio(index))
        if self.tokenizer is not None and item["text"] is not None:
            item["tokens"] = torch.tensor(self.tokenizer.encode(item["text"]), dtype=torch.int64)
        return item


def load_items(dataset, indices: Sequence[int]) -> Tuple[List[Dict[str, Any]], List[Tuple[str, str]]]:
    """``(items, skipped)``: the items of ``dataset`` at ``indices``, leaving out those whose media
    cannot be read, which are listed as ``(utt_id, "ErrorType: message")`` (batch jobs skip and
    report them instead of dying)."""
    items, skipped = [], []
    for i in indices:
        try:
            items.append(dataset[i])
        except Exception as e:  # noqa: BLE001 - reported and skipped, the job goes on
            skipped.append((dataset.utt_ids[i], f"{type(e).__name__}: {e}"))
    return items, skipped


def _pad(seqs: Sequence[torch.Tensor], value) -> torch.Tensor:
    n = max(int(s.shape[0]) for s in seqs)
    out = seqs[0].new_full((len(seqs), n) + tuple(seqs[0].shape[1:]), value)
    for i, s in enumerate(seqs):
        out[i, :s.shape[0]] = s
    return out


def collate(items: Sequence[Dict[str, Any]]) -> Batch:
    """Pad items of :class:`AVSRDataset` into a :class:`Batch` (see the module docstring)."""
    if not items:
        raise ValueError("collate: empty list of items")
    b = Batch(utt_ids=[it["utt_id"] for it in items])
    if items[0].get("audio") is not None:
        a = [it["audio"] for it in items]
        b.audio = _pad(a, 0.0)
        b.audio_lens = torch.tensor([x.shape[0] for x in a], dtype=torch.int64)
    if items[0].get("video") is not None:
        v = [it["video"] for it in items]
        b.video = _pad(v, 0)
        b.video_lens = torch.tensor([x.shape[0] for x in v], dtype=torch.int64)
        T = b.video.shape[1]
        b.frame_mask = torch.arange(T)[None, :] < b.video_lens[:, None]
        if any(it.get("present") is not None for it in items):
            pres = [it["present"] if it.get("present") is not None
                    else torch.ones(x.shape[0], dtype=torch.bool) for it, x in zip(items, v)]
            b.frame_mask &= _pad(pres, False)
        dets = [it["detected"] if it.get("detected") is not None
                else torch.ones(x.shape[0], dtype=torch.bool) for it, x in zip(items, v)]
        b.extras["detected"] = _pad(dets, False)
    if items[0].get("tokens") is not None:
        t = [it["tokens"] for it in items]
        b.tokens = _pad(t, IGNORE_ID)
        b.token_lens = torch.tensor([x.shape[0] for x in t], dtype=torch.int64)
    b.extras["text"] = [it.get("text") for it in items]
    return b


def dataset_video_mean(dataset: AVSRDataset, max_utts: Optional[int] = None) -> torch.Tensor:
    """Mean visual frame, float32 ``[crop, crop]``, in pixel units (0..255, before normalisation).

    Averages every frame of every utterance (or the first ``max_utts``) of ``dataset`` with
    the **centre** crop (no random crop or flip, whatever ``dataset.train`` says), in float64.
    Undetected frames count (they hold real pixels of an interpolated box).  Use the train set.
    """
    from frontends.roi import center_crop
    if not dataset.dd.roi:
        raise ValueError(f"{dataset.data_dir}: no roi.scp, no visual statistics")
    total = np.zeros((dataset.crop, dataset.crop), dtype=np.float64)
    count = 0
    n = len(dataset) if max_utts is None else min(len(dataset), int(max_utts))
    for i in range(n):
        u = dataset.utt_ids[i]
        if u not in dataset.dd.roi:  # kept without ROI (utt2audio_only): no pixels to average
            continue
        roi, _ = load_roi_file(dataset.dd.roi[u], u)
        c = center_crop(roi, dataset.crop)
        total += c.sum(axis=0, dtype=np.float64)
        count += c.shape[0]
    if count == 0:
        raise ValueError(f"{dataset.data_dir}: no video frames")
    return torch.from_numpy((total / count).astype(np.float32))

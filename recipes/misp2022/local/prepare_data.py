#!/usr/bin/env python3
"""Stage 1 of recipes/misp2022: MISP2022 transcriptions -> Kaldi-style data dirs.

For each split, every ``transcription/<split>/<Session>_Near_<SpkID>.TextGrid`` is read
(tier ``内容层``; see ``local/misp.py`` for naming, decoding, the text rules and the ids) and
each interval the text rules keep becomes one utterance of recording ``<Session>_Far``:

    <out_dir>/wav.scp     <Session>_Far  <misp_root>/audio/<split>/far/<Session>_Far_<channel>.wav
    <out_dir>/video.scp   <Session>_Far  <misp_root>/video/<split>/far/<Session>_Far.mp4
    <out_dir>/segments    <utt> <Session>_Far <start_s> <end_s>
    <out_dir>/text, utt2spk (S<SpkID>), spk2utt
    <out_dir>/skipped          what was left out and why (TSV: kind, id or file, reason)
    <out_dir>/prep_report.json the counts printed at the end

Text rules (``--text_norm``):

* ``official`` (default): the official data preparation's rules, ids and boundaries
  (misp2022_baseline ``track2_AVDR/local/prepare_data.py``; ``misp.official_segment``):
  intervals that are exactly ``<NOISE>``/``<DEAF>``, shorter than 40 ms, or a single filler
  (呃 啊 噢 嗯 唉, after the official punctuation list is removed) are dropped; ids and
  ``segments`` hold the official boundaries (snapped outward to the 40 ms grid).  The
  ``text`` is the official text passed through ``misp.normalize_text``; an interval the
  official rules keep whose normalised text is empty (every empty interval, for one) is
  skipped as ``no speech characters after normalisation``.
* ``toolkit``: ``misp.normalize_text`` on the label; intervals that are only marks /
  punctuation or shorter than 10 ms are dropped; ids and ``segments`` hold the interval
  times in 10 ms units.

Media paths are written absolute.  What cannot be used is skipped, reported with the
file name, and counted:

* a TextGrid with a bad name, unreadable, or without the tier -> that file is skipped;
* a session whose far wav (of ``--channel``) or far mp4 is missing or unreadable
  -> the whole session is skipped;
* an interval the text rules drop -> dropped, under its rule's category;
* two intervals of one speaker with the same id -> the first (in time) is kept;
* a segment ending after the end of the wav or the mp4 (+20 ms tolerance) -> skipped.

Eval from a segment file (``--eval_segments FILE``, for the split ``--eval_split``,
default ``eval``): the eval release lists the segments to recognise, one
``<segment_id> <speaker_id> <wav_name> <start> <end>`` per line, and a submission is keyed
by exactly those ids.  That split's data dir is then built from the file, not from
TextGrids: one utterance per line with the id as written, ``utt2spk`` from column 2,
``segments`` from columns 4-5 (written with 2 decimals, as every ``segments`` file), the
recording ``<Session>_Far`` of ``wav_name`` (``<Session>_Far``, ``<Session>_Far_<Ch>``,
with or without ``.wav``, or a path to one; ``wav.scp`` and ``video.scp`` as above, with
``--channel``), and ``<out_dir>/eval_segment_ids`` (the ids in file order).  A malformed
line, a duplicate id, ``end <= start``, a ``wav_name`` of another form, or a session
without a readable far wav/mp4 under ``--misp_root`` is an error naming ``FILE:LINE``
(exit status 1): nothing is dropped.  A segment ending after the media only gets a
warning.  References: when the split has TextGrids they are prepared as above and
``text`` is written only when every segment id has a reference with the same id;
otherwise the data dir has no ``text`` file and a message says scoring will be skipped.

The data dir is built in a temporary sibling directory, validated
(:func:`avsr.data.datadir.validate_datadir`), and only then renamed into place.
Exit status 1 when a split ends up with no usable segment.

Usage::

    python local/prepare_data.py --misp_root /data/misp2022 --splits train dev eval \\
        --data_dir data --suffix _all --channel 0 [--text_norm official|toolkit] \\
        [--eval_segments eval_segments.txt --eval_split eval]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import misp  # noqa: E402  (local/misp.py)

from avsr.data.datadir import (DataDir, DataDirError, Segment, audio_duration,  # noqa: E402
                               segments_outside, validate_datadir, video_duration, write_datadir)
from frontends.errors import MediaError  # noqa: E402


def log(msg: str) -> None:
    print(msg, flush=True)


class SplitReport:
    def __init__(self, split: str):
        self.split = split
        self.sessions_found = 0
        self.sessions_kept = 0
        self.textgrids_found = 0
        self.textgrids_used = 0
        self.segments_found = 0
        self.segments_kept = 0
        self.skipped_sessions: collections.Counter = collections.Counter()
        self.skipped_textgrids: collections.Counter = collections.Counter()
        self.skipped_segments: collections.Counter = collections.Counter()
        self.rows: List[tuple] = []  # (kind, id, reason)

    def skip(self, kind: str, ident: str, reason: str, category: str) -> None:
        {"session": self.skipped_sessions, "textgrid": self.skipped_textgrids,
         "segment": self.skipped_segments}[kind][category] += 1
        self.rows.append((kind, ident, reason.replace("\t", " ").replace("\n", " ")))

    def as_dict(self) -> Dict:
        return {
            "split": self.split,
            "sessions": {"found": self.sessions_found, "kept": self.sessions_kept,
                         "skipped": dict(sorted(self.skipped_sessions.items()))},
            "textgrids": {"found": self.textgrids_found, "used": self.textgrids_used,
                          "skipped": dict(sorted(self.skipped_textgrids.items()))},
            "segments": {"found": self.segments_found, "kept": self.segments_kept,
                         "skipped": dict(sorted(self.skipped_segments.items()))},
        }

    def skipped_tsv(self) -> str:
        return "".join(f"{k}\t{i}\t{r}\n" for k, i, r in self.rows)

    def print_summary(self) -> None:
        d = self.as_dict()
        log(f"[{self.split}] sessions: {d['sessions']['found']} found, {d['sessions']['kept']} kept"
            + _fmt_skips(d["sessions"]["skipped"]))
        log(f"[{self.split}] TextGrids: {d['textgrids']['found']} found, {d['textgrids']['used']} used"
            + _fmt_skips(d["textgrids"]["skipped"]))
        log(f"[{self.split}] segments: {d['segments']['found']} found, {d['segments']['kept']} kept"
            + _fmt_skips(d["segments"]["skipped"]))


def _fmt_skips(c: Dict[str, int]) -> str:
    if not c:
        return ""
    return "; skipped: " + ", ".join(f"{n} {k}" for k, n in c.items())


#: Report category of an interval the official rules keep but whose normalised text is empty.
NO_SPEECH_AFTER_NORM = "no speech characters after normalisation"

TEXT_NORMS = ("official", "toolkit")


def _interval_utterance(text_norm: str, spk: str, session: str, start: float, end: float,
                        label: str) -> Tuple[str, Optional[Tuple[float, float, str]], str, str]:
    """One interval -> ``(utt, (start_s, end_s, text) or None, reason, category)``.

    ``None`` with the reason and category when the interval is left out.
    """
    if text_norm == "official":
        oseg, drop = misp.official_segment(start, end, label)
        utt = misp.utterance_id(spk, session, oseg.start_units, oseg.end_units)
        where = f"{start}-{end} s"
        if drop is not None:
            return utt, None, f"{drop}: {label!r} ({where})", drop
        text = misp.normalize_text(oseg.text)
        if not text:
            what = "empty interval" if not label.strip() else repr(label)
            return utt, None, f"{NO_SPEECH_AFTER_NORM}: {what} ({where})", NO_SPEECH_AFTER_NORM
        if oseg.end_units <= oseg.start_units:  # cannot happen with >= 40 ms; kept as a guard
            return utt, None, f"empty official segment ({where})", "too short"
        return utt, (oseg.start, oseg.end, text), "", ""
    text = misp.normalize_text(label)
    s_u, e_u = misp.time_units(start), misp.time_units(end)
    utt = misp.utterance_id(spk, session, s_u, e_u)
    if not text:
        cat = "only non-speech marks" if misp.has_mark(label) else "no speech characters"
        return utt, None, f"{cat}: {label.strip()!r}", cat
    if e_u <= s_u:
        return utt, None, f"shorter than 10 ms ({start:.3f}-{end:.3f} s)", "too short"
    return utt, (s_u / 100.0, e_u / 100.0, text), "", ""


def collect_split(misp_root: str, split: str, channel: int = 0,
                  text_norm: str = "official") -> Tuple[DataDir, SplitReport]:
    """The data dir of ``split`` from its TextGrids, in memory, and its report."""
    if text_norm not in TEXT_NORMS:
        raise ValueError(f"text_norm must be one of {TEXT_NORMS}, not {text_norm!r}")
    root = os.path.abspath(misp_root)
    rep = SplitReport(split)
    tdir = misp.transcription_dir(root, split)
    if not os.path.isdir(tdir):
        raise SystemExit(f"ERROR: {tdir}: transcription directory not found")

    # ---- TextGrids, grouped by session
    by_session: Dict[str, Dict[str, str]] = collections.defaultdict(dict)
    for name in sorted(os.listdir(tdir)):
        if not name.lower().endswith(".textgrid"):
            continue
        rep.textgrids_found += 1
        path = os.path.join(tdir, name)
        nn = misp.parse_near_name(name)
        if nn is None:
            log(f"WARNING: {path}: file name is not <Session>_Near_<SpkID>.TextGrid; skipped")
            rep.skip("textgrid", path, "bad file name", "bad file name")
            continue
        by_session[nn.session][nn.spk] = path
    rep.sessions_found = len(by_session)

    dd = DataDir()
    for session in sorted(by_session):
        rec = misp.recording_id(session)
        wav = misp.far_wav_path(root, split, session, channel)
        mp4 = misp.far_video_path(root, split, session)
        # ---- media first: a session without usable media is skipped as a whole
        try:
            wav_dur = audio_duration(wav)
        except MediaError as e:
            cat = "missing wav" if not os.path.exists(wav) else "unreadable wav"
            log(f"ERROR: {e} -- session {session} skipped")
            rep.skip("session", session, str(e), cat)
            continue
        try:
            vid_dur = video_duration(mp4)
        except MediaError as e:
            cat = "missing mp4" if not os.path.exists(mp4) else "unreadable mp4"
            log(f"ERROR: {e} -- session {session} skipped")
            rep.skip("session", session, str(e), cat)
            continue

        segs: Dict[str, Segment] = {}
        texts: Dict[str, str] = {}
        spks: Dict[str, str] = {}
        for spk in sorted(by_session[session]):
            tg = by_session[session][spk]
            try:
                intervals = misp.read_tier(tg, keep_empty=text_norm == "official")
            except misp.TextGridError as e:
                log(f"ERROR: {e} -- file skipped")
                rep.skip("textgrid", tg, e.reason, e.kind)
                continue
            rep.textgrids_used += 1
            for start, end, label in intervals:
                rep.segments_found += 1
                utt, kept, reason, cat = _interval_utterance(text_norm, spk, session, start, end,
                                                             label)
                if kept is None:
                    rep.skip("segment", utt, reason, cat)
                    continue
                if utt in segs:
                    rep.skip("segment", utt, f"duplicate id in {tg} ({start}-{end} s)",
                             "duplicate id")
                    continue
                segs[utt] = Segment(rec, kept[0], kept[1])
                texts[utt] = kept[2]
                spks[utt] = misp.speaker_id(spk)
        if not segs:
            log(f"WARNING: session {session}: no usable segment in its TextGrids; skipped")
            rep.skip("session", session, "no usable segment", "no usable segment")
            continue

        # ---- segments outside the media
        for kind, dur, path in (("wav", wav_dur, wav), ("mp4", vid_dur, mp4)):
            bad = segments_outside(segs, {rec: dur}, kind=kind)
            if bad:
                latest = max(segs[u].end for u in bad)
                log(f"WARNING: {path}: {kind} is {dur:.2f} s but {len(bad)} segment(s) end after it "
                    f"(latest {latest:.2f} s); skipped")
                for u, r in sorted(bad.items()):
                    rep.skip("segment", u, f"{r} {path}", f"beyond {kind} end")
                    del segs[u], texts[u], spks[u]
        if not segs:
            rep.skip("session", session, "all segments outside the media", "no usable segment")
            continue

        rep.sessions_kept += 1
        rep.segments_kept += len(segs)
        dd.segments.update(segs)
        dd.text.update(texts)
        dd.utt2spk.update(spks)
        dd.wav[rec] = wav
        dd.video[rec] = mp4
    return dd, rep


def prepare_split(misp_root: str, split: str, out_dir: str, channel: int = 0,
                  text_norm: str = "official") -> SplitReport:
    """Write the data dir of ``split`` from its TextGrids (see the module docstring)."""
    dd, rep = collect_split(misp_root, split, channel, text_norm)
    if not dd.utt2spk:
        rep.print_summary()
        raise SystemExit(f"ERROR: split {split}: no usable segments under "
                         f"{os.path.abspath(misp_root)}")
    report = rep.as_dict()
    report["text_norm"] = text_norm
    write_datadir(dd, out_dir, extra_files={
        "skipped": rep.skipped_tsv(),
        "prep_report.json": json.dumps(report, indent=2, ensure_ascii=False) + "\n"})
    res = validate_datadir(out_dir, check_media=False, require_video=True)
    if not res.ok:  # write_datadir already validated; this guards the renamed copy
        raise SystemExit(f"ERROR: {out_dir} failed validation:\n{res.report()}")
    return rep


# --------------------------------------------------------------------------- eval segment file

#: The file of an eval data dir that lists the segment ids in the segment file's order.
EVAL_SEGMENT_IDS = "eval_segment_ids"


class EvalReport:
    def __init__(self, split: str, segment_file: str):
        self.split = split
        self.segment_file = segment_file
        self.segments = 0
        self.sessions = 0
        self.beyond_media_end = 0
        self.text = "absent"
        self.text_reason = ""
        self.references: Optional[Dict] = None

    def as_dict(self) -> Dict:
        return {"split": self.split, "segment_file": self.segment_file,
                "segments": self.segments, "sessions": self.sessions,
                "beyond_media_end": self.beyond_media_end, "text": self.text,
                "text_reason": self.text_reason, "references": self.references}

    def print_summary(self) -> None:
        log(f"[{self.split}] from {self.segment_file}: {self.segments} segments, "
            f"{self.sessions} sessions, {self.beyond_media_end} ending after the media (kept); "
            f"text: {self.text}" + (f" ({self.text_reason})" if self.text_reason else ""))


def _has_textgrids(tdir: str) -> bool:
    return os.path.isdir(tdir) and any(n.lower().endswith(".textgrid") for n in os.listdir(tdir))


def prepare_eval_segments(misp_root: str, split: str, out_dir: str, segment_file: str,
                          channel: int = 0, text_norm: str = "official") -> EvalReport:
    """Write the data dir of ``split`` from an eval segment file (see the module docstring).

    Raises ``SystemExit`` (status 1) with a message naming ``FILE:LINE`` for a line that
    cannot be used.
    """
    root = os.path.abspath(misp_root)
    rep = EvalReport(split, segment_file)
    try:
        rows = misp.read_segment_file(segment_file)
    except misp.SegmentFileError as e:
        raise SystemExit(f"ERROR: {e}") from None

    media: Dict[str, Tuple[str, str, float, float]] = {}
    dd = DataDir()
    for r in rows:
        if r.session not in media:
            wav = misp.far_wav_path(root, split, r.session, channel)
            mp4 = misp.far_video_path(root, split, r.session)
            try:
                wav_dur = audio_duration(wav)
                vid_dur = video_duration(mp4)
            except MediaError as e:
                raise SystemExit(f"ERROR: {segment_file}:{r.line}: wav_name {r.wav_name}: "
                                 f"no usable far media for session {r.session} under {root} "
                                 f"({e})") from None
            media[r.session] = (wav, mp4, wav_dur, vid_dur)
        wav, mp4, _, _ = media[r.session]
        if abs(r.start * 100 - round(r.start * 100)) > 1e-6 or \
                abs(r.end * 100 - round(r.end * 100)) > 1e-6:
            log(f"WARNING: {segment_file}:{r.line}: times {r.start} {r.end} are not on the 10 ms "
                f"grid; segments holds them with 2 decimals")
        rec = misp.recording_id(r.session)
        dd.segments[r.utt] = Segment(rec, r.start, r.end)
        dd.utt2spk[r.utt] = r.speaker
        dd.wav[rec] = wav
        dd.video[rec] = mp4
    rep.segments = len(rows)
    rep.sessions = len(media)
    line_of = {r.utt: r.line for r in rows}
    beyond = set()
    for kind, idx in (("wav", 2), ("mp4", 3)):
        durs = {misp.recording_id(s): m[idx] for s, m in media.items()}
        bad = segments_outside(dd.segments, durs, kind=kind)
        for u in sorted(bad, key=line_of.get):
            log(f"WARNING: {segment_file}:{line_of[u]}: segment {u} {bad[u]}; kept")
        beyond.update(bad)
    rep.beyond_media_end = len(beyond)

    # ---- references
    ids = [r.utt for r in rows]
    tdir = misp.transcription_dir(root, split)
    if _has_textgrids(tdir):
        ref_dd, ref_rep = collect_split(misp_root, split, channel, text_norm)
        rep.references = ref_rep.as_dict()
        missing = [u for u in ids if u not in ref_dd.text]
        if not missing:
            dd.text = {u: ref_dd.text[u] for u in ids}
            rep.text = "written"
            extra = len(set(ref_dd.text) - set(ids))
            rep.text_reason = (f"every segment id has a reference from {tdir}"
                               + (f"; {extra} reference(s) not in the segment file ignored"
                                  if extra else ""))
        else:
            rep.text_reason = (f"{len(missing)} of {len(ids)} segment ids have no reference with "
                               f"the same id in {tdir} (e.g. {missing[0]})")
    else:
        rep.text_reason = f"no TextGrids in {tdir}"
    if rep.text != "written":
        log(f"[{split}] no text file written ({rep.text_reason}): scoring will be skipped")

    extra_files = {
        EVAL_SEGMENT_IDS: "".join(u + "\n" for u in ids),
        "prep_report.json": json.dumps(rep.as_dict(), indent=2, ensure_ascii=False) + "\n"}
    try:
        write_datadir(dd, out_dir, extra_files=extra_files, require_text=False)
    except DataDirError as e:
        raise SystemExit(f"ERROR: {segment_file}: the segments do not make a valid data dir: "
                         f"{e}") from None
    res = validate_datadir(out_dir, check_media=False, require_video=True, require_text=False)
    if not res.ok:
        raise SystemExit(f"ERROR: {out_dir} failed validation:\n{res.report()}")
    return rep


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--misp_root", required=True, help="corpus root (audio/ video/ transcription/ ...)")
    ap.add_argument("--splits", nargs="+", default=["train", "dev", "eval"])
    ap.add_argument("--data_dir", default="data", help="output base directory")
    ap.add_argument("--suffix", default="_all",
                    help="data dir name suffix: <data_dir>/<split><suffix> (default _all)")
    ap.add_argument("--channel", type=int, default=0, help="far-field channel for wav.scp")
    ap.add_argument("--text_norm", choices=TEXT_NORMS, default="official",
                    help="text rules, ids and boundaries: official (the official data "
                         "preparation's, default) or toolkit (10 ms ids, marks/punctuation-only "
                         "intervals dropped)")
    ap.add_argument("--eval_segments", default=None, metavar="FILE",
                    help="build the --eval_split data dir from this segment file "
                         "(<segment_id> <speaker_id> <wav_name> <start> <end>) instead of TextGrids")
    ap.add_argument("--eval_split", default="eval", metavar="NAME",
                    help="the split --eval_segments describes (default eval)")
    args = ap.parse_args(argv)
    if args.channel < 0:
        ap.error("--channel must be >= 0")
    if args.eval_segments is not None and args.eval_split not in args.splits:
        ap.error(f"--eval_split {args.eval_split} is not one of --splits {' '.join(args.splits)}")

    reports = []
    for split in args.splits:
        out = os.path.join(args.data_dir, f"{split}{args.suffix}")
        if args.eval_segments is not None and split == args.eval_split:
            log(f"== {split}: {args.eval_segments} -> {out}")
            rep = prepare_eval_segments(args.misp_root, split, out, args.eval_segments,
                                        args.channel, args.text_norm)
        else:
            log(f"== {split}: {misp.transcription_dir(os.path.abspath(args.misp_root), split)} "
                f"-> {out} (text rules: {args.text_norm})")
            rep = prepare_split(args.misp_root, split, out, args.channel, args.text_norm)
        reports.append(rep)
    log("== summary")
    for rep in reports:
        rep.print_summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())

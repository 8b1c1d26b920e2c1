"""Kaldi-style data directories: read, write (atomically), validate, filter.

A data dir is a folder of plain-text tables, one ``<id> <value>`` entry per line,
sorted by id in C-locale (byte) order, ids unique:

``wav.scp``      recording -> audio file path
``segments``     utterance -> ``<recording> <start_s> <end_s>`` (optional: without it
                 every recording is one utterance with the same id)
``text``         utterance -> transcription (may contain spaces); a data dir of segments
                 to recognise without references (an eval release) has no ``text``:
                 written and validated with ``require_text=False``
``utt2spk``      utterance -> speaker
``spk2utt``      speaker -> utterances (derived from ``utt2spk`` on write)
``video.scp``    recording -> video file path (optional)
``roi.scp``      utterance -> ROI file (optional; see :mod:`avsr.data.roi_dump`)

Any other ``utt2*`` / ``*.scp`` two-column table found in the folder is carried along
in :attr:`DataDir.extra` (e.g. ``utt2num_roi_frames``), and filtered with the utterances.
Other files (reports such as ``skipped`` or ``prep_report.json``) are not part of the
data dir model and are not copied by :func:`write_datadir`.

Sorting: Python's default ``str`` ordering is code-point order, which for valid
strings equals the byte order of their UTF-8 encoding, i.e. ``LC_ALL=C sort``.

Validation (:func:`validate_datadir`) follows Kaldi's ``utils/validate_data_dir.sh``:
every table sorted with unique ids; ``utt2spk``/``spk2utt`` consistent and sorted the
same way when sorted by speaker (speaker ids must be prefixes of utterance ids);
every utterance has text (non-empty; with ``require_text=False`` a data dir without a
``text`` file is accepted, and one that has the file is checked the same), a segment whose recording is in ``wav.scp``
(and in ``video.scp`` when there is one, or when ``require_video``), and an ROI entry
when there is a ``roi.scp``; segments satisfy ``0 <= start < end``; and, with
``check_media``, every media file exists and each segment lies inside the audio
duration (``soundfile.info``) and the video duration (:func:`frontends.video.video_info`)
up to :data:`DURATION_TOLERANCE` seconds.
"""
from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

#: Seconds a segment may extend past the end of its audio/video file and still be kept
#: (segment times are quantised to 10 ms; 20 ms also absorbs container-duration rounding).
DURATION_TOLERANCE = 0.02

#: The standard tables, in the order they are written.
WAV_SCP = "wav.scp"
SEGMENTS = "segments"
TEXT = "text"
UTT2SPK = "utt2spk"
SPK2UTT = "spk2utt"
VIDEO_SCP = "video.scp"
ROI_SCP = "roi.scp"
_STANDARD = (WAV_SCP, SEGMENTS, TEXT, UTT2SPK, SPK2UTT, VIDEO_SCP, ROI_SCP)


class DataDirError(RuntimeError):
    """A data dir (or one of its files) is malformed; the message names the file."""


@dataclass(frozen=True)
class Segment:
    recording: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class DataDir:
    """In-memory data dir. Keys are ids; writing sorts them (C locale)."""

    wav: Dict[str, str] = field(default_factory=dict)
    segments: Dict[str, Segment] = field(default_factory=dict)
    text: Dict[str, str] = field(default_factory=dict)
    utt2spk: Dict[str, str] = field(default_factory=dict)
    video: Dict[str, str] = field(default_factory=dict)
    roi: Dict[str, str] = field(default_factory=dict)
    extra: Dict[str, Dict[str, str]] = field(default_factory=dict)

    @property
    def utts(self) -> List[str]:
        """Sorted utterance ids (from ``utt2spk``)."""
        return sorted(self.utt2spk)

    @property
    def spk2utt(self) -> Dict[str, List[str]]:
        out: Dict[str, List[str]] = {}
        for utt in sorted(self.utt2spk):
            out.setdefault(self.utt2spk[utt], []).append(utt)
        return {s: out[s] for s in sorted(out)}

    def recording_of(self, utt: str) -> str:
        return self.segments[utt].recording if self.segments else utt

    def span(self, utt: str) -> Tuple[float, Optional[float]]:
        """(start, end) in seconds of an utterance within its recording (end None = whole)."""
        if self.segments:
            s = self.segments[utt]
            return s.start, s.end
        return 0.0, None

    def subset(self, utts: Iterable[str]) -> "DataDir":
        """A new DataDir with only ``utts`` (and only the recordings they use)."""
        keep = set(utts)
        segs = {u: s for u, s in self.segments.items() if u in keep}
        recs = {s.recording for s in segs.values()} if self.segments else set(keep)
        return DataDir(
            wav={r: p for r, p in self.wav.items() if r in recs},
            segments=segs,
            text={u: t for u, t in self.text.items() if u in keep},
            utt2spk={u: s for u, s in self.utt2spk.items() if u in keep},
            video={r: p for r, p in self.video.items() if r in recs},
            roi={u: p for u, p in self.roi.items() if u in keep},
            extra={name: {u: v for u, v in tab.items() if u in keep or u in recs}
                   for name, tab in self.extra.items()},
        )

    def total_duration(self, durations: Optional[Mapping[str, float]] = None) -> float:
        """Sum of segment durations in seconds (needs ``durations[rec]`` without segments)."""
        if self.segments:
            return float(sum(s.duration for s in self.segments.values()))
        if durations is None:
            raise ValueError("no segments: pass recording durations")
        return float(sum(durations[r] for r in self.wav))


# --------------------------------------------------------------------------- tables


def read_table(path: "str | os.PathLike[str]") -> List[Tuple[str, str]]:
    """Lines of ``<key> <value>`` in file order (value may contain spaces, may be '')."""
    path = os.fspath(path)
    out = []
    try:
        with open(path, "r", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\n").rstrip("\r")
                if not line.strip():
                    raise DataDirError(f"{path}:{n}: empty line")
                parts = line.split(maxsplit=1)
                out.append((parts[0], parts[1].strip() if len(parts) > 1 else ""))
    except UnicodeDecodeError as e:
        raise DataDirError(f"{path}: not UTF-8 ({e})") from None
    return out


def table_to_dict(path: "str | os.PathLike[str]", rows: Sequence[Tuple[str, str]]) -> Dict[str, str]:
    d: Dict[str, str] = {}
    for k, v in rows:
        if k in d:
            raise DataDirError(f"{os.fspath(path)}: duplicate id {k!r}")
        d[k] = v
    return d


def write_table(path: "str | os.PathLike[str]", table: Mapping[str, object]) -> None:
    """Write ``<key> <value>`` lines sorted by key (C locale). Keys must not contain spaces."""
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as f:
        for k in sorted(table):
            if not k or any(c.isspace() for c in k):
                raise DataDirError(f"{path}: invalid id {k!r}")
            v = table[k]
            if isinstance(v, (list, tuple)):
                v = " ".join(str(x) for x in v)
            v = str(v)
            if "\n" in v:
                raise DataDirError(f"{path}: newline in value of {k!r}")
            f.write(f"{k} {v}\n" if v != "" else f"{k}\n")


def format_time(t: float) -> str:
    """Seconds with 2 decimals (segment times are quantised to 10 ms)."""
    return f"{t:.2f}"


def _parse_segments(path: str, rows: Sequence[Tuple[str, str]]) -> Dict[str, Segment]:
    out: Dict[str, Segment] = {}
    for utt, rest in rows:
        f = rest.split()
        if len(f) != 3:
            raise DataDirError(f"{path}: bad line for {utt!r}: expected '<utt> <rec> <start> <end>'")
        try:
            seg = Segment(f[0], float(f[1]), float(f[2]))
        except ValueError:
            raise DataDirError(f"{path}: bad times for {utt!r}: {rest!r}") from None
        if utt in out:
            raise DataDirError(f"{path}: duplicate id {utt!r}")
        out[utt] = seg
    return out


def _is_extra_table(name: str) -> bool:
    return name not in _STANDARD and (name.startswith("utt2") or name.endswith(".scp")) \
        and not name.startswith(".")


def read_datadir(path: "str | os.PathLike[str]") -> DataDir:
    """Load a data dir (duplicate ids raise :class:`DataDirError`; order is not checked)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DataDirError(f"{path}: data dir not found")
    for req in (WAV_SCP, UTT2SPK):
        if not os.path.isfile(os.path.join(path, req)):
            raise DataDirError(f"{os.path.join(path, req)}: missing")

    def tab(name: str) -> Dict[str, str]:
        p = os.path.join(path, name)
        return table_to_dict(p, read_table(p)) if os.path.isfile(p) else {}

    dd = DataDir(wav=tab(WAV_SCP), text=tab(TEXT), utt2spk=tab(UTT2SPK), video=tab(VIDEO_SCP),
                 roi=tab(ROI_SCP))
    seg_path = os.path.join(path, SEGMENTS)
    if os.path.isfile(seg_path):
        dd.segments = _parse_segments(seg_path, read_table(seg_path))
    for name in sorted(os.listdir(path)):
        if _is_extra_table(name) and os.path.isfile(os.path.join(path, name)):
            dd.extra[name] = tab(name)
    return dd


# --------------------------------------------------------------------------- atomic dirs


def replace_dir(tmp_dir: str, final_dir: str) -> None:
    """Move the finished ``tmp_dir`` to ``final_dir``, replacing any previous one.

    The old directory is first renamed aside, so ``final_dir`` is at every moment
    either the complete old or the complete new directory (or briefly absent),
    never a mixture.
    """
    final_dir = os.path.normpath(final_dir)
    old = None
    if os.path.lexists(final_dir):
        old = f"{final_dir}.old.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        os.rename(final_dir, old)
    os.rename(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def make_tmp_dir(final_dir: str) -> str:
    """A fresh sibling directory of ``final_dir`` to build into (same file system)."""
    final_dir = os.path.normpath(final_dir)
    parent = os.path.dirname(final_dir) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = f"{final_dir}.tmp.{os.getpid()}.{uuid.uuid4().hex[:6]}"
    os.makedirs(tmp)
    return tmp


def write_datadir(dd: DataDir, path: "str | os.PathLike[str]", *,
                  extra_files: Optional[Mapping[str, str]] = None,
                  validate: bool = True, require_text: bool = True) -> None:
    """Write ``dd`` to ``path`` atomically (build in a temp dir, validate, rename).

    ``extra_files``: name -> text content of additional files (reports) to put in the dir.
    ``require_text=False``: when ``dd.text`` is empty no ``text`` file is written and the
    validation accepts its absence (a non-empty ``dd.text`` is written and checked as always).
    With ``validate`` the structure is checked (no media access) before the rename;
    a failure raises :class:`DataDirError` and leaves any previous ``path`` untouched.
    """
    path = os.fspath(path)
    tmp = make_tmp_dir(path)
    try:
        write_table(os.path.join(tmp, WAV_SCP), dd.wav)
        if dd.segments:
            write_table(os.path.join(tmp, SEGMENTS),
                        {u: (s.recording, format_time(s.start), format_time(s.end))
                         for u, s in dd.segments.items()})
        if dd.text or require_text:
            write_table(os.path.join(tmp, TEXT), dd.text)
        write_table(os.path.join(tmp, UTT2SPK), dd.utt2spk)
        write_table(os.path.join(tmp, SPK2UTT), dd.spk2utt)
        if dd.video:
            write_table(os.path.join(tmp, VIDEO_SCP), dd.video)
        if dd.roi:
            write_table(os.path.join(tmp, ROI_SCP), dd.roi)
        for name, table in dd.extra.items():
            if table:
                write_table(os.path.join(tmp, name), table)
        for name, content in (extra_files or {}).items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(content)
        if validate:
            res = validate_datadir(tmp, check_media=False, require_text=require_text)
            if not res.ok:
                raise DataDirError(f"refusing to write invalid data dir {path}:\n  "
                                   + "\n  ".join(res.errors + [f"{u}: {r}" for u, r in
                                                               res.bad_segments.items()]))
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- media


def audio_duration(path: str) -> float:
    """Duration (s) of an audio file via ``soundfile.info``; raises MediaError."""
    import soundfile as sf

    from frontends.errors import MediaError
    if not os.path.isfile(path):
        raise MediaError(path, "audio file not found")
    try:
        info = sf.info(path)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError
        raise MediaError(path, f"unreadable audio ({e})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise MediaError(path, "empty audio file")
    return info.frames / float(info.samplerate)


def video_duration(path: str) -> float:
    """Duration (s) of a video file via :func:`frontends.video.video_info`; raises MediaError."""
    from frontends.errors import MediaError
    from frontends.video import video_info
    if not os.path.isfile(path):
        raise MediaError(path, "video file not found")
    try:
        info = video_info(path)
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(path, f"unreadable video ({e})") from None
    dur = float(info["duration"])
    if not dur > 0:
        raise MediaError(path, "video has no frames")
    return dur


def segments_outside(segments: Mapping[str, Segment], durations: Mapping[str, float], *,
                     kind: str, tolerance: float = DURATION_TOLERANCE) -> Dict[str, str]:
    """utt -> reason for each segment that ends after its recording's ``kind`` duration."""
    bad = {}
    for utt, s in segments.items():
        d = durations.get(s.recording)
        if d is not None and s.end > d + tolerance:
            bad[utt] = f"ends at {s.end:.2f} s, after the end of the {kind} ({d:.2f} s)"
    return bad


# --------------------------------------------------------------------------- validation


@dataclass
class ValidationResult:
    errors: List[str] = field(default_factory=list)  # structural problems
    bad_segments: Dict[str, str] = field(default_factory=dict)  # utt -> reason (media checks)
    media_errors: Dict[str, str] = field(default_factory=dict)  # path -> reason

    @property
    def ok(self) -> bool:
        return not self.errors and not self.bad_segments and not self.media_errors

    def report(self) -> str:
        lines = list(self.errors)
        lines += [f"{p}: {r}" for p, r in self.media_errors.items()]
        lines += [f"segment {u}: {r}" for u, r in self.bad_segments.items()]
        return "\n".join(lines)


def _check_sorted_unique(path: str, rows: Sequence[Tuple[str, str]], errors: List[str]) -> None:
    keys = [k for k, _ in rows]
    seen = set()
    dups = []
    for k in keys:
        if k in seen:
            dups.append(k)
        seen.add(k)
    if dups:
        errors.append(f"{path}: duplicate ids: {', '.join(sorted(set(dups))[:5])}"
                      + (" ..." if len(set(dups)) > 5 else ""))
    for i in range(1, len(keys)):
        if keys[i] < keys[i - 1]:
            errors.append(f"{path}: not sorted (C locale): {keys[i - 1]!r} before {keys[i]!r} "
                          f"(line {i + 1})")
            break


def validate_datadir(path: "str | os.PathLike[str]", *, check_media: bool = True,
                     require_video: bool = False, require_roi: bool = False,
                     require_text: bool = True,
                     tolerance: float = DURATION_TOLERANCE) -> ValidationResult:
    """Check a data dir on disk; see the module docstring for the rules.

    ``require_text=False`` accepts a data dir without a ``text`` file (segments to
    recognise without references); a ``text`` file that is there is checked as always.
    """
    path = os.fspath(path)
    res = ValidationResult()
    E = res.errors
    if not os.path.isdir(path):
        E.append(f"{path}: data dir not found")
        return res
    rows: Dict[str, List[Tuple[str, str]]] = {}
    for name in _STANDARD + tuple(n for n in sorted(os.listdir(path)) if _is_extra_table(n)):
        p = os.path.join(path, name)
        if os.path.isfile(p):
            try:
                rows[name] = read_table(p)
            except DataDirError as e:
                E.append(str(e))
                continue
            _check_sorted_unique(p, rows[name], E)
    for req in (WAV_SCP, TEXT, UTT2SPK, SPK2UTT):
        if req == TEXT and not require_text:
            continue
        if req not in rows and os.path.isfile(os.path.join(path, req)) is False:
            E.append(f"{os.path.join(path, req)}: missing")
    if require_video and VIDEO_SCP not in rows:
        E.append(f"{os.path.join(path, VIDEO_SCP)}: missing")
    if require_roi and ROI_SCP not in rows:
        E.append(f"{os.path.join(path, ROI_SCP)}: missing")
    if E and any(n not in rows for n in (WAV_SCP, UTT2SPK)):
        return res

    def d(name: str) -> Dict[str, str]:
        return dict(rows.get(name, []))

    wav, text, utt2spk, video, roi = d(WAV_SCP), d(TEXT), d(UTT2SPK), d(VIDEO_SCP), d(ROI_SCP)
    utts = set(utt2spk)
    if not utts:
        E.append(f"{os.path.join(path, UTT2SPK)}: empty")

    # utt2spk <-> spk2utt
    if SPK2UTT in rows:
        s2u = {s: v.split() for s, v in rows[SPK2UTT]}
        derived: Dict[str, List[str]] = {}
        for u in sorted(utt2spk):
            derived.setdefault(utt2spk[u], []).append(u)
        if s2u != derived:
            E.append(f"{os.path.join(path, SPK2UTT)}: does not match utt2spk")
    spk_sorted = [u for _, u in sorted((s, u) for u, s in utt2spk.items())]
    if spk_sorted != sorted(utt2spk):
        E.append(f"{os.path.join(path, UTT2SPK)}: not sorted the same by speaker and by utterance "
                 f"(make speaker ids prefixes of utterance ids)")
    for u, s in utt2spk.items():
        if not s:
            E.append(f"{os.path.join(path, UTT2SPK)}: no speaker for {u!r}")

    def same_keys(name: str, table: Mapping[str, str], what: str) -> None:
        p = os.path.join(path, name)
        missing = sorted(utts - set(table))
        extra = sorted(set(table) - utts)
        if missing:
            E.append(f"{p}: no {what} for {len(missing)} utterance(s), e.g. {missing[0]}")
        if extra:
            E.append(f"{p}: {len(extra)} id(s) not in utt2spk, e.g. {extra[0]}")

    if TEXT in rows:
        same_keys(TEXT, text, "text")
        empty = sorted(u for u, t in text.items() if not t.strip())
        if empty:
            E.append(f"{os.path.join(path, TEXT)}: empty text for {len(empty)} utterance(s), "
                     f"e.g. {empty[0]}")
    if ROI_SCP in rows:
        same_keys(ROI_SCP, roi, "ROI")

    segments: Dict[str, Segment] = {}
    if SEGMENTS in rows:
        seg_path = os.path.join(path, SEGMENTS)
        for utt, rest in rows[SEGMENTS]:
            f = rest.split()
            try:
                if len(f) != 3:
                    raise ValueError
                s = Segment(f[0], float(f[1]), float(f[2]))
            except ValueError:
                E.append(f"{seg_path}: bad line for {utt!r}: {rest!r}")
                continue
            if not (0.0 <= s.start < s.end):
                E.append(f"{seg_path}: bad times for {utt!r}: start {s.start} end {s.end}")
            segments[utt] = s
        same_keys(SEGMENTS, segments, "segment")  # type: ignore[arg-type]
        recs_used = {s.recording for s in segments.values()}
    else:
        recs_used = set(utts)
        missing = sorted(utts - set(wav))
        if missing:
            E.append(f"{os.path.join(path, WAV_SCP)}: no audio for {len(missing)} utterance(s) "
                     f"(no segments file), e.g. {missing[0]}")
    for name, table, what in ((WAV_SCP, wav, "audio"), (VIDEO_SCP, video, "video")):
        if name not in rows:
            continue
        p = os.path.join(path, name)
        miss = sorted(recs_used - set(table))
        if miss:
            E.append(f"{p}: no {what} for {len(miss)} recording(s), e.g. {miss[0]}")
        unused = sorted(set(table) - recs_used)
        if unused:
            E.append(f"{p}: {len(unused)} recording(s) not used by any utterance, e.g. {unused[0]}")

    if check_media:
        wav_dur: Dict[str, float] = {}
        vid_dur: Dict[str, float] = {}
        from frontends.errors import MediaError
        for rec in sorted(recs_used):
            for table, durs, fn in ((wav, wav_dur, audio_duration), (video, vid_dur, video_duration)):
                if rec in table:
                    try:
                        durs[rec] = fn(table[rec])
                    except MediaError as e:
                        res.media_errors[e.path] = e.reason
        if ROI_SCP in rows:
            for u, p in roi.items():
                if not os.path.isfile(p):
                    res.media_errors[p] = "ROI file not found"
        if segments:
            for kind, durs in (("audio", wav_dur), ("video", vid_dur)):
                for u, r in segments_outside(segments, durs, kind=kind, tolerance=tolerance).items():
                    res.bad_segments.setdefault(u, r)
    return res


def filter_datadir(src: "str | os.PathLike[str]", dst: "str | os.PathLike[str]",
                   keep: Callable[[str], bool] | Iterable[str], *,
                   extra_files: Optional[Mapping[str, str]] = None) -> DataDir:
    """Copy the data dir ``src`` to ``dst`` keeping only some utterances (atomic write).

    A ``src`` without a ``text`` file gives a ``dst`` without one.
    """
    dd = read_datadir(src)
    has_text = os.path.isfile(os.path.join(os.fspath(src), TEXT))
    if callable(keep):
        utts = [u for u in dd.utts if keep(u)]
    else:
        ks = set(keep)
        utts = [u for u in dd.utts if u in ks]
    sub = dd.subset(utts)
    write_datadir(sub, dst, extra_files=extra_files, require_text=has_text)
    return sub

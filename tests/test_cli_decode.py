"""``avsr decode`` on real-world media made here with ffmpeg / soundfile, and the face detectors
on a real photograph (scikit-image's astronaut, shipped offline)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
FFMPEG = "ffmpeg"
pytestmark = pytest.mark.skipif(subprocess.run(["which", FFMPEG], capture_output=True).returncode != 0,
                                reason="ffmpeg not installed")


def ff(*args):
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def tone(sr, secs, ch=1):
    t = np.arange(int(sr * secs)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return np.stack([x] * ch, 1) if ch > 1 else x


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    import torch

    from avsr.models import AVSRModel, load_config
    from avsr.pack import pack_model
    from avsr.text.tokens import write_token_list
    d = tmp_path_factory.mktemp("model")
    toks = ["<blank>", "<unk>"] + list("我们今天去北京") + ["<sos/eos>"]
    write_token_list(toks, str(d / "tokens.txt"))
    torch.manual_seed(0)
    m = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=len(toks), adapter_rank=2))
    pack_model(d / "packed", model_config=m.cfg.to_dict(), token_list=d / "tokens.txt", weights=m.state_dict())
    return d / "packed"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    m = {}
    # audio: rates, channels, bit depths, flac
    for name, sr, ch, sub, ext in [("a8k", 8000, 1, "PCM_16", "wav"), ("a22k", 22050, 2, "PCM_U8", "wav"),
                                   ("a44k", 44100, 2, "PCM_24", "wav"), ("a48k", 48000, 1, "PCM_32", "wav"),
                                   ("aflac", 48000, 2, "PCM_16", "flac")]:
        p = d / f"{name}.{ext}"
        sf.write(p, tone(sr, 2.0, ch), sr, subtype=sub)
        m[name] = p
    # ROI-sized videos (the mouth crop itself): frame rates, VFR, codecs, lengths
    src = "testsrc2=size=96x96:rate={r}"
    for name, rate, codec, secs in [("v24", "24", "libx264", 2), ("v2997", "30000/1001", "libx264", 2),
                                    ("v30", "30", "libx264", 2), ("hevc", "25", "libx265", 2),
                                    ("mpeg4", "25", "mpeg4", 2), ("short", "25", "libx264", 1),
                                    ("long", "25", "libx264", 3.5)]:
        p = d / f"{name}.mp4"
        extra = ["-x265-params", "log-level=none"] if codec == "libx265" else []
        ff("-f", "lavfi", "-i", src.format(r=rate), "-t", str(secs), "-c:v", codec, *extra, "-pix_fmt", "yuv420p", str(p))
        m[name] = p
    p = d / "vfr.mp4"      # variable frame rate: drop 2 of every 5 frames, keep the timestamps
    ff("-f", "lavfi", "-i", src.format(r=25), "-t", "2", "-vf", "select='lt(mod(n\\,5)\\,3)'", "-fps_mode", "vfr",
       "-c:v", "libx264", "-pix_fmt", "yuv420p", str(p))
    m["vfr"] = p
    # a full-frame video with no face
    p = d / "noface.mp4"
    ff("-f", "lavfi", "-i", "color=c=gray:size=320x240:rate=25", "-t", "2", "-c:v", "libx264", "-pix_fmt",
       "yuv420p", str(p))
    m["noface"] = p
    # broken inputs
    data = m["v24"].read_bytes()
    (d / "trunc.mp4").write_bytes(data[: len(data) // 3])
    m["trunc"] = d / "trunc.mp4"
    (d / "corrupt.mp4").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)))
    m["corrupt"] = d / "corrupt.mp4"
    (d / "empty.wav").write_bytes(b"")
    m["empty"] = d / "empty.wav"
    (d / "notmedia.wav").write_text("this is not audio\n")
    m["notmedia"] = d / "notmedia.wav"
    m["missing"] = d / "does_not_exist.wav"
    sf.write(d / "a16k.wav", tone(16000, 2.0), 16000)
    m["a16k"] = d / "a16k.wav"
    return m


def run(*args):
    return subprocess.run([sys.executable, "-m", "avsr.cli", "decode", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_pairs_matrix(packed, media, tmp_path):
    good = {  # key: (wav, video, expected modality, a warning that must appear or None)
        "sr8k": ("a8k", "v24", "audiovisual", None), "sr22k_u8_stereo": ("a22k", "v2997", "audiovisual", None),
        "sr44k_24bit": ("a44k", "v30", "audiovisual", None), "sr48k_32bit": ("a48k", "hevc", "audiovisual", None),
        "flac": ("aflac", "mpeg4", "audiovisual", None), "vfr": ("a16k", "vfr", "audiovisual", "missing"),
        "video_short": ("a16k", "short", "audiovisual", "shorter"), "video_long": ("a16k", "long", "audiovisual", "longer"),
        "noface": ("a16k", "noface", "audio", "no face"), "novideo": ("a16k", None, "audio", "no video"),
    }
    bad = {"trunc_mp4": ("a16k", "trunc"), "corrupt_mp4": ("a16k", "corrupt"), "empty_wav": ("empty", "v24"),
           "not_media": ("notmedia", "v24"), "missing": ("missing", "v24")}
    lines = [f"{k}\t{media[w]}\t{media[v] if v else '-'}" for k, (w, v, _, _) in good.items()]
    lines += [f"{k}\t{media[w]}\t{media[v]}" for k, (w, v) in bad.items()]
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n")
    p = run("--model", packed, "--pairs", tmp_path / "pairs.tsv", "--output", tmp_path / "out.jsonl",
            "--beam_size", "2", "--batch_size", "4")
    assert p.returncode == 3, p.stderr[-3000:]             # some failed
    assert "Traceback" not in p.stderr
    recs = {r["key"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert set(recs) == set(good)                          # good ones decoded and written, bad ones skipped
    for k, (_, _, mod, warn) in good.items():
        assert recs[k]["modality"] == mod, (k, recs[k])
        if warn:
            assert any(warn in w for w in recs[k]["warnings"]), (k, recs[k]["warnings"])
    errs = [l for l in p.stderr.splitlines() if "error:" in l]
    assert len(errs) == len(bad)
    for k, (w, v) in bad.items():
        line = next(l for l in errs if f": {k}:" in l)
        named = media[v] if k.endswith("mp4") else media[w]
        assert str(named) in line, line


def test_single_pair_errors_are_one_line(packed, media):
    for wav, video in [("missing", "v24"), ("a16k", "corrupt"), ("empty", None)]:
        args = ["--model", packed, "--wav", media[wav]] + (["--video", media[video]] if video else [])
        p = run(*args)
        assert p.returncode == 1 and "Traceback" not in p.stderr
        err = [l for l in p.stderr.splitlines() if "error" in l]
        assert len(err) == 1 and str(media[wav if wav != "a16k" else video]) in err[0], p.stderr
    p = run("--model", packed, "--wav", media["a16k"], "--output_format", "kaldi", "--beam_size", "2")
    assert p.returncode == 0 and p.stdout.startswith("a16k ")                # the key: the wav's name
    from avsr.bin.decode_pairs import single_key
    assert single_key("/x/my take#2.wav", None) == "my_take#2" and single_key(None, "/v/clip.mp4") == "clip"
    assert single_key("-", None) == "utt"


def test_pairs_from_stdin_paths_with_hash_and_spaces_and_device_strings(packed, media, tmp_path):
    d = tmp_path / "my takes"
    d.mkdir()
    wav = d / "take#2.wav"
    wav.write_bytes(media["a16k"].read_bytes())
    lst = f"# a comment line\ntake2\t{wav}\t-\n  # another\n"
    p = subprocess.run([sys.executable, "-m", "avsr.cli", "decode", "--model", str(packed), "--pairs", "-",
                        "--output_format", "kaldi", "--ctc_greedy"], input=lst, capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.startswith("take2")
    for dev, msg in (("gpu", "cpu, cuda or cuda:N"), ("cuda:7", "CUDA device")):
        q = run("--model", packed, "--wav", wav, "--device", dev)
        assert q.returncode == 1 and msg in q.stderr and "Traceback" not in q.stderr, q.stderr


def test_global_version_and_log_level():
    def cli(*a):
        return subprocess.run([sys.executable, "-m", "avsr.cli", *a], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    from avsr import __version__
    p = cli("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"avsr {__version__}"
    assert cli("--log_level", "loud", "pack").returncode == 2
    p = cli("--log_level", "debug", "--help")
    assert p.returncode == 0 and "--log_level" in p.stdout


def test_refuses_pickled_model(packed, tmp_path):
    import shutil

    import torch
    evil = tmp_path / "evil"
    shutil.copytree(packed, evil)
    torch.save({"x": Path("/")}, evil / "model.pth")
    p = run("--model", evil, "--wav", "x.wav")
    assert p.returncode == 1 and "checksum mismatch" in p.stderr           # caught by the checksum ...
    meta = json.loads((evil / "meta.json").read_text())
    meta.pop("sha256")                                                    # ... and without one
    (evil / "meta.json").write_text(json.dumps(meta))
    p = run("--model", evil, "--wav", "x.wav")
    assert p.returncode == 1 and "Traceback" not in p.stderr and "refused" in p.stderr, p.stderr


def _astronaut_video(tmp_path, two_faces=False):
    import cv2
    import skimage.data
    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    if two_faces:
        small = cv2.resize(img, (256, 256))
        canvas = np.full((512, 800, 3), 200, np.uint8)
        canvas[:, :512] = img
        canvas[128:384, 530:786] = small
        img = canvas
    p = tmp_path / ("two.mp4" if two_faces else "astro.mp4")
    raw = tmp_path / "frame.png"
    cv2.imwrite(str(raw), img)
    ff("-loop", "1", "-i", str(raw), "-t", "0.4", "-r", "25", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(p))
    return p


def test_haar_finds_the_astronauts_mouth(tmp_path):
    from frontends.face_detectors import HaarDetector, track_mouth
    from frontends.video import read_video
    clip = read_video(_astronaut_video(tmp_path))
    boxes, warnings = track_mouth(clip.frames, HaarDetector())
    assert np.isfinite(boxes).all() and not warnings
    x1, y1, x2, y2 = boxes.mean(0)
    # the mouth (lips) of the astronaut photograph is around x 223, y 145 (checked by eye on the image)
    assert x1 < 223 < x2 and y1 < 145 < y2
    assert abs((x1 + x2) / 2 - 223) < 12 and abs((y1 + y2) / 2 - 145) < 12 and (x2 - x1) < 70


def test_several_faces_choice(tmp_path):
    from frontends.face_detectors import HaarDetector, track_mouth
    from frontends.video import read_video
    clip = read_video(_astronaut_video(tmp_path, two_faces=True))
    det = HaarDetector()
    boxes, warnings = track_mouth(clip.frames, det)
    assert any("2 faces" in w for w in warnings) and boxes[0, 0] < 400      # the larger, left face
    b1, w1 = track_mouth(clip.frames, det, face_index=1)
    assert not w1 and b1[0, 0] > 500                                        # the small one on the right
    b2, _ = track_mouth(clip.frames, det, bbox=(530, 128, 786, 384))
    assert np.allclose(b1, b2)


def test_a_pairs_list_with_unusable_keys_or_fields_is_refused_before_decoding_naming_its_line(tmp_path):
    """Keys name the outputs (a kaldi/ctm field, an srt/vtt file under --output): white space, path
    separators, '.'/'..' and a key used twice are refused with the list's line; so are lines with 1 or 5
    fields.  A good list reads as before (comments, '-' fields)."""
    from avsr.bin.decode_pairs import read_pairs
    lst = tmp_path / "list.tsv"
    lst.write_text("# c\nok\ta b.wav\t-\nv\t-\tx#1.mp4\tx.json\n")
    assert read_pairs(str(lst)) == [("ok", "a b.wav", None, None), ("v", None, "x#1.mp4", "x.json")]
    for body, msg in (("a\tx.wav\n../up\tx.wav\n", r":2: key '\.\./up' holds a path separator"),
                      ("sub/dir\tx.wav\n", ":1: key 'sub/dir' holds a path separator"),
                      ("..\tx.wav\n", r":1: key '\.\.' holds a path separator"),
                      ("k 2\tx.wav\n", ":1: key 'k 2' holds white space"),
                      ("d\tx.wav\n# c\nd\ty.wav\n", ":3: key 'd' already used on line 1"),
                      ("onlykey\n", ":1: expected KEY<TAB>WAV.*got 1"),
                      ("k\ta\tb\tc\td\n", ":1: expected KEY<TAB>WAV.*got 5")):
        lst.write_text(body)
        with pytest.raises(ValueError, match=f"{lst}{msg}"):
            read_pairs(str(lst))


def test_an_interrupted_pairs_batch_resumes_with_the_same_command(packed, media, tmp_path, monkeypatch, capsys):
    """Killed during its third pair, a --pairs batch keeps the two finished ones in
    OUTPUT.progress.jsonl (OUTPUT itself is not there yet); the same command decodes only the rest and
    writes what one uninterrupted run writes; with srt the finished pairs' files are not decoded again."""
    from avsr.bin import decode_pairs
    from avsr.inference import Speech2Text
    keys = ["p1", "p2", "p3", "p4"]
    (tmp_path / "pairs.tsv").write_text("".join(f"{k}\t{media['a16k']}\t{media['v24']}\n" for k in keys))
    base = ["--model", str(packed), "--pairs", str(tmp_path / "pairs.tsv"), "--beam_size", "2", "--no_progress"]
    argv = base + ["--output_format", "kaldi"]
    assert decode_pairs.main(argv + ["--output", str(tmp_path / "full.txt")]) == 0
    want = (tmp_path / "full.txt").read_text()
    assert [l.split()[0] for l in want.splitlines()] == keys
    orig, calls = Speech2Text.transcribe, []

    def dies_third(self, *a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return orig(self, *a, **kw)

    out = tmp_path / "out.txt"
    monkeypatch.setattr(Speech2Text, "transcribe", dies_third)
    with pytest.raises(KeyboardInterrupt):
        decode_pairs.main(argv + ["--output", str(out)])
    assert not out.exists() and (tmp_path / "out.txt.progress.jsonl").exists()
    calls.clear()
    monkeypatch.setattr(Speech2Text, "transcribe", lambda self, *a, **kw: calls.append(1) or orig(self, *a, **kw))
    assert decode_pairs.main(argv + ["--output", str(out)]) == 0
    assert len(calls) == 2 and out.read_text() == want
    assert not (tmp_path / "out.txt.progress.jsonl").exists()
    assert "resuming: 2 of 4 pairs" in capsys.readouterr().err
    # srt: one file per pair; the finished pairs are not decoded again
    argv = base + ["--output_format", "srt", "--output", str(tmp_path / "srt")]
    calls.clear()
    monkeypatch.setattr(Speech2Text, "transcribe", dies_third)
    with pytest.raises(KeyboardInterrupt):
        decode_pairs.main(argv)
    assert sorted(os.listdir(tmp_path / "srt")) == ["p1.srt", "p2.srt", "progress.jsonl"]
    calls.clear()
    monkeypatch.setattr(Speech2Text, "transcribe", lambda self, *a, **kw: calls.append(1) or orig(self, *a, **kw))
    assert decode_pairs.main(argv) == 0
    assert len(calls) == 2 and sorted(os.listdir(tmp_path / "srt")) == [f"{k}.srt" for k in keys]
    # another option (here the beam): starts over
    calls.clear()
    monkeypatch.setattr(Speech2Text, "transcribe", dies_third)
    with pytest.raises(KeyboardInterrupt):
        decode_pairs.main(argv)
    monkeypatch.setattr(Speech2Text, "transcribe", lambda self, *a, **kw: calls.append(1) or orig(self, *a, **kw))
    calls.clear()
    assert decode_pairs.main([a if a != "2" else "3" for a in argv]) == 0
    assert len(calls) == 4 and "starting over" in capsys.readouterr().err
    # a listed file changed since the interruption: starts over
    wav = tmp_path / "w.wav"
    wav.write_bytes(media["a16k"].read_bytes())
    (tmp_path / "pairs.tsv").write_text("".join(f"{k}\t{wav}\t{media['v24']}\n" for k in keys))
    argv = base + ["--output_format", "kaldi", "--output", str(tmp_path / "o2.txt")]
    calls.clear()
    monkeypatch.setattr(Speech2Text, "transcribe", dies_third)
    with pytest.raises(KeyboardInterrupt):
        decode_pairs.main(argv)
    os.utime(wav, ns=(os.stat(wav).st_atime_ns, os.stat(wav).st_mtime_ns + 10**9))
    calls.clear()
    monkeypatch.setattr(Speech2Text, "transcribe", lambda self, *a, **kw: calls.append(1) or orig(self, *a, **kw))
    assert decode_pairs.main(argv) == 0
    assert len(calls) == 4 and "starting over" in capsys.readouterr().err

"""``avsr decode``'s two modes (files and ``--data_dir``) share their search options: one name, one default,
one help each; a left-out search option keeps the packed model's stored default in both modes; every
option of the decode commands has a help line that shows its default."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ("model", "beam_size", "ctc_greedy", "ctc_weight", "penalty", "batch_size", "device", "threads", "no_progress",
          "adapter_threshold", "lm_weight", "decode_fusion")


class _Stop(Exception):
    pass


def _parsers():
    from avsr.bin import decode, decode_pairs, eval as eval_cmd
    return {"files": decode_pairs.build_parser(), "data_dir": decode.build_parser(), "eval": eval_cmd.build_parser()}


def _actions(ap):
    return {a.dest: a for a in ap._actions if a.option_strings and a.dest != "help"}


def test_decode_modes_share_search_options():
    p = _parsers()
    files, data = _actions(p["files"]), _actions(p["data_dir"])
    for dest in SHARED:
        assert dest in files and dest in data, dest
        a, b = files[dest], data[dest]
        assert (a.option_strings, a.default, a.type, a.choices, a.help) == \
               (b.option_strings, b.default, b.type, b.choices, b.help), dest


def _all_parsers(monkeypatch):
    """Every ``avsr <command>``'s parser (each command's ``main(["--help"])`` stopped at its parse)."""
    from avsr import cli
    found = {}

    def spy(self, args=None, namespace=None):
        found.setdefault(cmd, []).append(self)
        raise _Stop
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", spy)
    for cmd, (run, _desc, _) in cli.COMMANDS.items():
        with pytest.raises(_Stop):
            run(["--help"])
    return found


def _with_subparsers(ap):
    yield ap
    for a in ap._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub in a.choices.values():
                yield from _with_subparsers(sub)


def test_every_option_has_help_with_its_default(monkeypatch):
    from avsr.bin import has_default
    found = _all_parsers(monkeypatch)
    from avsr import cli
    assert set(found) == set(cli.COMMANDS)
    found["decode --data_dir"] = [_parsers()["data_dir"]]       # avsr decode routes --data_dir to its own parser
    for cmd, parsers in found.items():
        for ap in (p for top in parsers for p in _with_subparsers(top)):
            ap.format_help()                                    # a stray % in a help line would raise here
            fmt = ap._get_formatter()
            for dest, a in _actions(ap).items():
                assert a.help and a.help.strip(), f"avsr {cmd}: {a.option_strings} has no help line"
                if has_default(a):
                    assert "default" in fmt._get_help_string(a), \
                        f"avsr {cmd}: {a.option_strings} does not show its default {a.default!r}"
    assert "(default: 16)" in " ".join(_parsers()["data_dir"].format_help().split())


def _pack_micro(d: Path, decode: dict) -> Path:
    """An untrained audio-only micro model packed into ``d/packed`` with the decoding defaults ``decode``."""
    import torch

    from avsr.models import AVSRModel, load_config
    from avsr.pack import pack_model
    from avsr.text.tokens import write_token_list
    toks = ["<blank>", "<unk>"] + list("我们今天") + ["<sos/eos>"]
    write_token_list(toks, str(d / "tokens.txt"))
    torch.manual_seed(0)
    m = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=len(toks), mode="audio"))
    pack_model(d / "packed", model_config=m.cfg.to_dict(), token_list=d / "tokens.txt", weights=m.state_dict(),
               decode=decode)
    return d / "packed"


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    return _pack_micro(tmp_path_factory.mktemp("model"), {"beam_size": 3, "ctc_weight": 0.5, "penalty": 0.25})


@pytest.mark.parametrize("extra, want", [
    ([], (3, 0.5, 0.25, False)),                     # the pack's stored defaults
    (["--beam_size", "5", "--ctc_weight", "0.3", "--penalty", "0"], (5, 0.3, 0.0, False)),
    (["--ctc_greedy"], (3, 0.5, 0.25, True)),
])
def test_left_out_search_options_keep_the_packs_defaults(packed, tmp_path, monkeypatch, extra, want):
    """Both modes build the decoder the same way: a bug that passes a parser default (beam 10, the config's
    CTC weight, penalty 0) over the pack's stored setting in one mode fails here."""
    from avsr.bin import decode, decode_pairs
    from avsr.inference import Speech2Text
    orig = Speech2Text.from_packed.__func__
    seen = []

    def spy(cls, path, device="cpu", **kw):
        s = orig(cls, path, device=device, **kw)
        seen.append((s.beam_size, s.ctc_weight, s.penalty, s.use_greedy))
        raise _Stop
    monkeypatch.setattr(Speech2Text, "from_packed", classmethod(spy))
    with pytest.raises(_Stop):
        decode.main(["--model", str(packed), "--data_dir", str(tmp_path), "--out_dir", str(tmp_path / "o"), *extra])
    with pytest.raises(_Stop):
        decode_pairs.main(["--model", str(packed), "--wav", str(tmp_path / "a.wav"), *extra])
    assert seen == [want, want]


def test_help_formatter_adds_a_default_once():
    from avsr.bin import HelpFormatter
    ap = argparse.ArgumentParser(formatter_class=HelpFormatter)
    ap.add_argument("--a", type=int, default=3, help="a number")
    ap.add_argument("--b", type=int, default=4, help="b (default: four)")
    ap.add_argument("--c", default=None, help="c")
    ap.add_argument("--d", action="store_true", help="d")
    ap.add_argument("--e", type=int, default=0, help="e")              # 0 == False: still a default
    h = " ".join(ap.format_help().split())
    assert "e (default: 0)" in h
    assert "a number (default: 3)" in h
    assert "b (default: four)" in h and "(default: 4)" not in h
    assert "c (default" not in h and "d (default" not in h


def test_nbest_with_a_greedy_pack_warns(tmp_path, capsys):
    """--nbest with CTC greedy search warns also when the greedy search is the pack's default (beam 0)."""
    from avsr.bin import decode_pairs
    from frontends.errors import MediaError
    packed = _pack_micro(tmp_path, {"beam_size": 0})
    for extra, warned in (([], True), (["--beam_size", "4"], False)):
        with pytest.raises(MediaError, match="missing.wav"):     # the pair itself fails after the model loads
            decode_pairs.main(["--model", str(packed), "--wav", str(tmp_path / "missing.wav"),
                               "--nbest", "3", "--no_progress", *extra])
        assert ("--nbest 3 with CTC greedy search" in capsys.readouterr().err) == warned, extra

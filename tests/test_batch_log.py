"""avsr.utils.io.BatchLog: the progress log of long decodes (resume after a kill)."""
from __future__ import annotations

import json

from avsr.utils.io import BatchLog, path_stamp


def test_records_come_back_and_a_cut_last_line_is_cut_off_the_file(tmp_path):
    p = str(tmp_path / "progress.jsonl")
    sig = {"model": "m", "beam": 2}
    log = BatchLog(p, sig)
    assert log.records == [] and not log.restarted
    log.append({"hyps": {"会议_001": "我们今天去北京"}})
    log.append({"hyps": {"会议_002": "早上"}})
    log.close()
    good = open(p, "rb").read()
    # a kill inside a multi-byte character of a third record
    third = json.dumps({"hyps": {"会议_003": "北京"}}, ensure_ascii=False).encode("utf-8")
    cut = third[: third.index("北".encode("utf-8")) + 1]
    open(p, "ab").write(cut)
    log = BatchLog(p, sig)
    assert [r["hyps"] for r in log.records] == [{"会议_001": "我们今天去北京"}, {"会议_002": "早上"}]
    assert open(p, "rb").read() == good                    # the cut line is gone, the rest untouched
    log.append({"hyps": {"会议_003": "北京"}})
    log.close()
    assert len(BatchLog(p, sig).records) == 3


def test_another_signature_starts_over_and_keeps_the_old_log(tmp_path):
    p = str(tmp_path / "progress.jsonl")
    log = BatchLog(p, {"beam": 2})
    log.append({"x": 1})
    log.close()
    old = open(p, "rb").read()
    log = BatchLog(p, {"beam": 3})
    assert log.restarted and log.records == []
    assert open(p + ".old", "rb").read() == old
    log.finish()
    assert not (tmp_path / "progress.jsonl").exists()
    (tmp_path / "progress.jsonl").write_bytes(b"")            # an empty file: no log, nothing to say
    log = BatchLog(p, {"beam": 3})
    assert not log.restarted and log.records == []
    (tmp_path / "progress.jsonl").write_bytes(b"\xe4\xbc")    # unreadable first line: starts over
    assert BatchLog(p, {"beam": 3}).restarted


def test_path_stamp_changes_with_a_file_and_can_leave_a_folder_out(tmp_path):
    (tmp_path / "a").write_text("1")
    (tmp_path / "out").mkdir()
    s0 = path_stamp(str(tmp_path))
    (tmp_path / "out" / "progress.jsonl").write_text("x")
    assert path_stamp(str(tmp_path), exclude=str(tmp_path / "out")) == s0
    (tmp_path / "a").write_text("22")
    assert path_stamp(str(tmp_path)) != s0 and path_stamp(str(tmp_path / "nothing")) == []

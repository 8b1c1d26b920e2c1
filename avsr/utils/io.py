"""Atomic writes of small text files (reports, lists, JSON): a temporary file in the same folder, then
``os.replace``, so a reader never sees half a file and an interrupted run leaves the old file."""
from __future__ import annotations

import os

__all__ = ["BatchLog", "path_stamp", "write_text_atomic"]


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; the folder is created when missing."""
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class BatchLog:
    """Finished batches of a long decoding, one JSON line each, so that an interrupted run resumes.

    The first line is ``{"signature": ...}``: what the run decodes and how (models and their files'
    sizes and times, data dir, search, conditions, seed, batch size).  Opening a log whose signature
    differs, or one without a readable first line, starts it over (``restarted`` is then True; the old
    log is kept as ``<path>.old``); otherwise :attr:`records` holds the finished batches' records in
    order.  A last line cut short by a kill (also inside a multi-byte character) is cut off the file
    (that batch is decoded again).  Every :meth:`append` is flushed and fsync'ed before it returns;
    :meth:`finish` removes the file once the run's outputs are written.
    """

    def __init__(self, path: str, signature):
        import json
        self.path = path
        self.records: list = []
        self.restarted = False
        sig = json.loads(json.dumps(signature, sort_keys=True))
        data = b""
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
        lines = data.split(b"\n")
        ok = False
        if data:
            try:
                ok = json.loads(lines[0]).get("signature") == sig
            except (ValueError, AttributeError):   # (a UnicodeDecodeError is a ValueError)
                ok = False
            self.restarted = not ok
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        if ok:
            end = len(lines[0]) + 1
            for ln in lines[1:]:
                try:
                    self.records.append(json.loads(ln))
                except ValueError:
                    break           # the cut-short last line (and anything after it)
                end += len(ln) + 1
            if end != len(data):
                with open(path, "r+b") as f:
                    f.truncate(end)
        else:
            if data:
                os.replace(path, path + ".old")
            write_text_atomic(path, json.dumps({"signature": sig}, ensure_ascii=False) + "\n")
        self._f = open(path, "a", encoding="utf-8")

    def append(self, record) -> None:
        import json
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def finish(self) -> None:
        self.close()
        if os.path.exists(self.path):
            os.remove(self.path)


def path_stamp(path: str, exclude: str = None) -> list:
    """``[[relative name, size, mtime_ns], ...]`` of a file or of every file under a folder (a packed
    model in a run's :class:`BatchLog` signature, so a retrained or repacked model starts the log over);
    ``[]`` when nothing is there.  ``exclude``: a folder under ``path`` left out (a run's own output dir)."""
    if os.path.isfile(path):
        st = os.stat(path)
        return [[os.path.basename(path), st.st_size, st.st_mtime_ns]]
    out = []
    skip = os.path.abspath(exclude) if exclude else None
    for root, dirs, files in os.walk(path):
        if skip:
            dirs[:] = [d for d in dirs if os.path.abspath(os.path.join(root, d)) != skip]
        for fn in files:
            p = os.path.join(root, fn)
            try:
                st = os.stat(p)
            except OSError:
                continue
            out.append([os.path.relpath(p, path), st.st_size, st.st_mtime_ns])
    return sorted(out)

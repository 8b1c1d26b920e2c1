"""Data preparation helpers: Kaldi-style data dirs (:mod:`avsr.data.datadir`) and
per-utterance lip-ROI files of a data dir (:mod:`avsr.data.roi_dump`; their command line is
``avsr prepare_rois``, :mod:`avsr.bin.prepare_rois`).

Names are imported lazily, so importing the package stays cheap.
"""
import importlib

_EXPORTS = {
    "DataDir": "avsr.data.datadir", "DataDirError": "avsr.data.datadir",
    "Segment": "avsr.data.datadir", "filter_datadir": "avsr.data.datadir",
    "read_datadir": "avsr.data.datadir", "validate_datadir": "avsr.data.datadir",
    "write_datadir": "avsr.data.datadir",
    "extract_rois": "avsr.data.roi_dump", "load_roi": "avsr.data.roi_dump",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

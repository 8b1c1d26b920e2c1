"""Data preparation helpers: Kaldi-style data dirs (:mod:`avsr.data.datadir`) and
lip-ROI extraction (:mod:`avsr.data.rois`).

Names are imported lazily so that ``python -m avsr.data.datadir`` / ``-m avsr.data.rois``
run without a double import.
"""
import importlib

_EXPORTS = {
    "DataDir": "avsr.data.datadir", "DataDirError": "avsr.data.datadir",
    "Segment": "avsr.data.datadir", "filter_datadir": "avsr.data.datadir",
    "read_datadir": "avsr.data.datadir", "validate_datadir": "avsr.data.datadir",
    "write_datadir": "avsr.data.datadir",
    "extract_rois": "avsr.data.rois", "load_roi": "avsr.data.rois",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

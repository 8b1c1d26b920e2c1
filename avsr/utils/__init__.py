"""Neutral helpers shared by training, models, packing and inference (no trainer imports):
:mod:`avsr.utils.checkpoint` (atomic save, weights-only load, partial init, averaging)."""

"""Evaluation: CER with jiwer, bootstrap intervals and paired bootstrap (:mod:`avsr.eval.metrics`)."""
from avsr.eval.metrics import (UttScore, bootstrap_ci, corpus_cer, paired_bootstrap, score_texts,  # noqa: F401
                               read_text_file, summarize, utt_errors)

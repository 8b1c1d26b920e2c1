"""Batched decoding: joint CTC/attention beam search across utterances, CTC greedy."""
from avsr._espnet import quiet_import

quiet_import()


from avsr.decoding.beam_search import Hypothesis, batch_beam_search
from avsr.decoding.ctc_greedy import ctc_greedy

__all__ = ["Hypothesis", "batch_beam_search", "ctc_greedy"]

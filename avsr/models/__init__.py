"""AVSR model (Dai et al., CVPR 2024 architecture) built from ESPnet blocks.

Public API::

    from avsr.models import AVSRModel, ModelConfig, build_model_from_config, load_model_config, load_partial
    cfg = load_model_config("conf/demo.yaml", vocab_size=V, mode="audiovisual")   # the one YAML parser
    model = AVSRModel(cfg)                        # or build_model_from_config("conf/demo.yaml", vocab_size=V)
    model.compute_stats(batches)                  # global fbank mean/std (or set_normalization)
    out = model(batch)                            # ModelOutput(loss, loss_ctc, loss_att, acc, taps, enc_out, enc_lens)
    enc_out, enc_lens, taps = model.encode(batch, modality="audio")
    res = load_partial(av_model, a0_model.state_dict())   # PartialLoad(loaded, missing, unexpected, shape_mismatch)
"""
from avsr._espnet import quiet_import

quiet_import()

from avsr.models.config import MODES, ModelConfig, load_config, load_model_config, read_config
from avsr.models.front_nets import (AudioFrontend, LightFrontend, ResNet18Frontend, VGGSubsampling,
                                    compute_feature_stats)
from avsr.models.model import (AVSRModel, CrossAttention, MaskedConvolutionModule, ModelOutput, build_model,
                               build_model_from_config, count_parameters, param_part, reconcile_video)
from avsr.utils.checkpoint import PartialLoad, load_partial  # the one --init implementation

__all__ = [
    "MODES", "ModelConfig", "load_config", "load_model_config", "read_config",
    "AudioFrontend", "LightFrontend", "ResNet18Frontend", "VGGSubsampling", "compute_feature_stats",
    "AVSRModel", "CrossAttention", "MaskedConvolutionModule", "ModelOutput", "PartialLoad",
    "build_model", "build_model_from_config", "count_parameters", "load_partial", "param_part", "reconcile_video",
]

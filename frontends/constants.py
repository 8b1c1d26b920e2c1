"""Media constants of the toolkit: the one place that states them (issue 20).

Everything that reads, writes, simulates or models audio and lip video uses these names; a test
(``tests/test_constants.py``) fails on the bare numbers elsewhere.  The module lives in
``frontends/`` (the media layer) because ``frontends/`` never imports from ``avsr/``, while every
``avsr`` module may import ``frontends``.  It imports nothing.

========================  =======  ==================================================================
name                      value    meaning
========================  =======  ==================================================================
``SAMPLE_RATE``           16000    Hz: audio as loaded, generated (SynthMISP) and fed to the model
``VIDEO_FPS``             25       frames/s of the lip-video grid (MISP2022 video, ROI files, model)
``SAMPLES_PER_FRAME``     640      audio samples per video frame (``SAMPLE_RATE // VIDEO_FPS``)
``ROI_SIZE``              96       side (pixels) of a stored lip ROI (``roi.npz``, ``avsr decode``)
``CROP_SIZE``             88       side (pixels) of the centre crop of an ROI that the model sees
``FBANK_N_FFT``           512      fbank FFT size (model default)
``FBANK_WIN_LENGTH``      400      fbank window, samples (25 ms)
``FBANK_HOP_LENGTH``      160      fbank hop, samples (10 ms; 4 hops per video frame)
``FBANK_N_MELS``          80       mel bins (model default)
========================  =======  ==================================================================

``VIDEO_FPS`` is an ``int``; places that work in float seconds use ``float(VIDEO_FPS)``.
"""

SAMPLE_RATE = 16000
VIDEO_FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS
ROI_SIZE = 96
CROP_SIZE = 88
FBANK_N_FFT = 512
FBANK_WIN_LENGTH = 400
FBANK_HOP_LENGTH = 160
FBANK_N_MELS = 80

__all__ = ["SAMPLE_RATE", "VIDEO_FPS", "SAMPLES_PER_FRAME", "ROI_SIZE", "CROP_SIZE", "FBANK_N_FFT",
           "FBANK_WIN_LENGTH", "FBANK_HOP_LENGTH", "FBANK_N_MELS"]

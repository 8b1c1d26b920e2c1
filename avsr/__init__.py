"""avsr: robust audio-visual speech recognition when lip video is unreliable."""
__version__ = "0.1.0"

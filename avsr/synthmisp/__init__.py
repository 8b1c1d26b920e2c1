"""SynthMISP: a synthetic Mandarin audio-visual corpus in the MISP2022 layout."""

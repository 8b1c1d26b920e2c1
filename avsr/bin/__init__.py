"""Recipe entry points (``python -m avsr.bin.<name> --help``): collect_stats, train, decode, score."""

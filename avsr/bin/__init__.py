"""Every command-line entry point of the toolkit, one module each with ``main(argv)``:
``avsr <command>`` (:mod:`avsr.cli`, ``avsr --help`` lists them) or ``python -m avsr.bin.<module>``.
Library modules elsewhere in ``avsr`` have no ``main``."""

#!/usr/bin/env bash
# Environment for recipes/misp2022 (sourced by run.sh; run from the recipe directory).
# PYTHON: the repository's ../../.venv/bin/python when present, else python3.
AVSR_RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AVSR_ROOT=$(cd "$AVSR_RECIPE_DIR/../.." && pwd)
if [ -x "$AVSR_ROOT/.venv/bin/python" ]; then
  PYTHON="$AVSR_ROOT/.venv/bin/python"
else
  PYTHON=python3
fi
export PYTHON AVSR_ROOT
export PYTHONPATH="$AVSR_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONIOENCODING=utf-8
export PYTHONUNBUFFERED=1
# Kaldi tables are sorted in C-locale (byte) order.
export LC_COLLATE=C

# avsr: set-up, demo, tests and benchmarks.  Every install step lives here (and .ci/run calls `make test`).
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION := 2.13.0
# extra pip arguments for the torch step, e.g. --index-url of PyTorch's CPU wheel index where a plain
# pip install would bring a CUDA build (the reference machines have the CPU wheel in pip's own set-up)
TORCH_PIP_ARGS ?=
ESPNET_VERSION := 202511
# mediapipe declares numpy<2 and opencv-contrib-python; its face mesh runs with numpy 2 and the one
# OpenCV (opencv-python-headless) here, so it goes in without its declared deps (the ones it needs at
# import are the `landmarks` extra of pyproject.toml)
MEDIAPIPE_VERSION := 0.10.21
# espnet's runtime requirements that the modules we use actually import (see docs/INSTALL.md);
# the rest of its declared list (lightning, hydra, nltk, pyworld, ...) is for tasks we don't use.
# (measured: importing the conformer/decoder/ctc/beam-search/specaug/stft/logmel/tokenizer modules
#  pulls in exactly typeguard, packaging, librosa and torch_complex beyond torch and numpy)
ESPNET_RUNTIME := "typeguard" "packaging" "librosa>=0.10.2" "torch_complex"
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NJ ?= 2

.PHONY: help install sysdeps demo test test-all bench bench-train bench-robust bench-leaderboard bench-sweep bench-align bench-aligner bench-full docs clean-venv

help:
	@echo "make demo     set up (.venv, deps) and run the SynthMISP demo recipe"
	@echo "make test     set up and run the default test suite (about 10 min on 2 cores)"
	@echo "make test-all the default suite and the slow tests"
	@echo "make bench-train   SynthMISP mini: corpus, A0, V and AV0 through the recipe (hours on 2 cores; resumes)"
	@echo "make bench    longer measurements; writes docs/BENCHMARKS.md and recipes/synthmisp/RESULTS.md"
	@echo "make bench-robust  the core rows of conf/rows/dai2024.yaml on SynthMISP mini (runs bench-train first if needed)"
	@echo "make bench-leaderboard  every robustness method on one budget, ranked, from nothing (runs bench-train first if needed)"
	@echo "make bench-full    every row and MDA-KD distance (CTC greedy sweep)"
	@echo "make docs     re-render the reports from docs/results/*.json"
	@echo "make bench-sweep   cost of the eval sweep vs independent decodes (on the demo's models)"
	@echo "make bench-align   CTC forced-alignment times against SynthMISP's truth (on the demo's a0)"
	@echo "make bench-aligner the local CTC aligner on SynthMISP mini: character times against the truth"
	@echo "make install  only the set-up"

sysdeps:
	if ! command -v espeak-ng >/dev/null || ! command -v ffmpeg >/dev/null \
	   || ! ldconfig -p | grep libespeak-ng.so.1 >/dev/null; then
	  $(SUDO) apt-get update -qq
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq espeak-ng ffmpeg >/dev/null
	fi

$(VENV)/.installed: pyproject.toml Makefile
	$(MAKE) --no-print-directory sysdeps
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	# 1. torch first (the local CPU wheel); the range in pyproject admits it, so nothing replaces it
	$(PIP) install -q --disable-pip-version-check $(TORCH_PIP_ARGS) "torch==$(TORCH_VERSION)"
	# 2. espnet pinned, without its declared deps (its setuptools<74 pin conflicts with torch 2.13)
	$(PIP) install -q --disable-pip-version-check --no-deps "espnet==$(ESPNET_VERSION)"
	# 3. the espnet runtime requirements we need, then this package and its test extras
	$(PIP) install -q --disable-pip-version-check $(ESPNET_RUNTIME)
	$(PIP) install -q --disable-pip-version-check -e ".[test,landmarks]"
	$(PIP) install -q --disable-pip-version-check --no-deps "mediapipe==$(MEDIAPIPE_VERSION)"
	# 4. librosa/pyworld-era code imports pkg_resources, removed in setuptools 81
	$(PIP) install -q --disable-pip-version-check "setuptools>=77.0.3,<81"
	$(PY) -c "import torch, espnet2.asr.encoder.conformer_encoder, cv2, av, soundfile, praatio, jiwer; \
	          assert torch.__version__.startswith('$(TORCH_VERSION)'), torch.__version__"
	touch $@

install: $(VENV)/.installed

# (without the local aligner, a stage of about 2 min with its two directions that would take the demo past 30 min; add it with
# ./run.sh --preset demo --models "a0 v av0" --stage 5 --stop_stage 5, then --stage 11 --stop_stage 11)
# epochs sized for 30 minutes on 2 cores: A0 20 (its dev CER stops improving after epoch 18), V 18, AV0 8
demo: install
	cd recipes/synthmisp && ./run.sh --preset demo --nj $(NJ) --models "a0 v av0" --use_aligner false \
	  --a0_args "--set trainer.max_epochs=20" --v_args "--set trainer.max_epochs=18" \
	  --av0_args "--set trainer.max_epochs=8 trainer.lr=0.001 trainer.warmup_steps=60"

test: install
	$(PY) -m pytest -q -m "not slow" tests

test-all: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) scripts/bench_roi.py --out docs/results/bench_roi.json
	$(PY) scripts/bench_far_frontend.py --minutes 2 --runs 3 --out docs/results/bench_far_frontend.json
	$(PY) scripts/bench_roi.py --before_after --out docs/results/bench_roi_speed.json
	$(PY) scripts/bench_detect.py --out docs/results/bench_detect.json
	$(PY) scripts/synthmisp_text_stats.py --out docs/results/synthmisp_text.json
	$(PY) scripts/bench_synthmisp.py --preset mini --nj $(NJ) --out docs/results/synthmisp_mini.json
	$(PY) scripts/bench_dataprep.py --misp_root corpora/synthmisp_mini --out docs/results/dataprep_mini.json
	$(MAKE) --no-print-directory bench-train
	$(MAKE) --no-print-directory bench-robust
	$(MAKE) --no-print-directory bench-sweep

# training calibration on the mini preset (resumable: re-running continues where it stopped)
MINI_EXP := recipes/synthmisp/exp/synthmisp_mini
bench-train: install
	[ -f corpora/synthmisp_mini/synthmisp.json ] || \
	  $(PY) scripts/bench_synthmisp.py --preset mini --nj $(NJ) --out docs/results/synthmisp_mini.json
	# (a subshell: with .ONESHELL a bare cd would move the remaining lines of this recipe too)
	# (the mini preset's own training options, speed perturbation, dropout 0.2 and the babble dose, come from the recipe)
	( cd recipes/synthmisp && ./run.sh --preset mini --nj $(NJ) --stage 1 --corpus_dir ../../corpora/synthmisp_mini \
	  --models "a0 v av0" --v_args "--set trainer.max_epochs=15" \
	  --av0_args "--set trainer.max_epochs=8 trainer.lr=0.001 trainer.warmup_steps=60" )
	$(PY) scripts/collect_training.py --exp_dir $(MINI_EXP) --config conf/demo.yaml --out docs/results/calibration_mini.json
	# the run's report, sweep and plot, rendered into recipes/synthmisp/RESULTS.md by avsr.bin.report --docs
	mkdir -p docs/results/mini
	cp $(MINI_EXP)/report.json $(MINI_EXP)/sweep/eval/sweep.json $(MINI_EXP)/sweep/eval/cer_vs_frame_loss.png docs/results/mini/
	$(PY) scripts/bench_decode.py --model $(MINI_EXP)/packed/av0 --data_dir recipes/synthmisp/data/synthmisp_mini/eval \
	  --beam_size 10 --batch_size 16 32 --threads 2 --out docs/results/bench_decode.json
	$(PY) scripts/bench_cli.py --model $(MINI_EXP)/packed/av0 --corpus corpora/synthmisp_mini --split eval \
	  --num 20 --out docs/results/bench_cli.json
	$(PY) -m avsr.bin.report --docs

# the robustness rows (conf/rows/dai2024.yaml) on the mini exp dir: recipe stages 15-18 (on bench-train's
# A0, V and AV0, which it makes first when the mini's stage 14 is not done; resumable: finished runs and sweeps are reused).  Table core: AV3, AV5 at the MDA-KD setting
# the full table chose on dev (mse, λ 100), AV6 with its adapter epochs chosen on dev; beam 10.  The
# fine-tunes train every parameter (the row spec's defaults.freeze); every table shares the rows dir.
ROBUST_ROWS := $(MINI_EXP)/rows
ROWS_RUN = cd recipes/synthmisp && ./run.sh --preset mini --nj $(NJ) --corpus_dir ../../corpora/synthmisp_mini \
	  --stage 15 --stop_stage 18 --rows ../../conf/rows/dai2024.yaml --rows_dir $(CURDIR)/$(ROBUST_ROWS)
bench-robust: install
	[ -f $(MINI_EXP)/stages/14_report.done ] || $(MAKE) --no-print-directory bench-train
	( $(ROWS_RUN) --rows_table core --rows_out $(CURDIR)/docs/results/robust_core.json )
	$(PY) -m avsr.bin.report --docs

# the leaderboard: every row of the row spec's table leaderboard (the paper's rows, the ablations, MLA, CKD,
# TFR and their combinations, with the recipe's A0, V and AV0) in one run, on the equal step budgets, each
# chosen on dev from at most 4 settings, beam-10 eval sweep under every frame-loss condition (bench-train
# first when not done; resumable; about 15-20 h on 2 CPU cores, docs/ROBUSTNESS.md) -> docs/results/leaderboard.json,
# its plot, and RESULTS.md sorted by degradation area
bench-leaderboard: install
	[ -f $(MINI_EXP)/stages/14_report.done ] || $(MAKE) --no-print-directory bench-train
	( $(ROWS_RUN) --rows_table leaderboard --rows_out $(CURDIR)/docs/results/rows_leaderboard.json \
	  --rows_leaderboard $(CURDIR)/docs/results/leaderboard.json )
	$(PY) -m avsr.bin.report --docs

# the eval sweep's cost against independent decodes, per stage, median of 5 runs per search, on the
# demo's models (make demo rebuilds them in about 30 min on 2 cores); DEMO_EXP / DEMO_DATA point elsewhere if needed
DEMO_EXP ?= recipes/synthmisp/exp/synthmisp_demo
DEMO_DATA ?= recipes/synthmisp/data/synthmisp_demo
bench-sweep: install
	[ -f $(DEMO_EXP)/packed/av0/model.pth ] || $(MAKE) --no-print-directory demo
	$(PY) scripts/bench_sweep.py --models A0=$(DEMO_EXP)/packed/a0 AV0=$(DEMO_EXP)/packed/av0 \
	  --data_dir $(DEMO_DATA)/eval --limit 96 --repeats 5 --searches greedy beam10 \
	  --note "the demo's A0 and AV0 (make demo); demo eval" --out docs/results/bench_sweep_demo.json
	$(PY) -m avsr.bin.report --docs

# CTC forced-alignment character times against the generator's truth, on the demo's audio-only model
DEMO_CORPUS ?= recipes/synthmisp/corpus/synthmisp_demo
bench-align: install
	[ -f $(DEMO_EXP)/packed/a0/model.pth ] || $(MAKE) --no-print-directory demo
	OMP_NUM_THREADS=1 $(PY) scripts/bench_alignment.py --model $(DEMO_EXP)/packed/a0 --corpus $(DEMO_CORPUS) \
	  --data_dir $(DEMO_DATA)/eval --data_dir $(DEMO_DATA)/dev --data_dir $(DEMO_DATA)/train \
	  --model_description "the audio-only model of make demo" --out docs/results/bench_alignment.json
	$(PY) -m avsr.bin.report --docs

# the local CTC aligner (recipe stage 5 aligner, conf/aligner.yaml) trained on the mini's training segments
# (two directions, about 23 min on 2 cores; reused when finished), measured on its dev and eval sessions (about
# 16 min with its 30 adaptation steps per segment; the probe with silence around each segment would double that:
# --pad_probe 1)
MINI_DATA := recipes/synthmisp/data/synthmisp_mini
bench-aligner: install
	[ -f $(MINI_EXP)/stats/feats_stats.json ] || $(MAKE) --no-print-directory bench-train
	$(PY) -m avsr.bin.train_aligner --train_data $(MINI_DATA)/train --valid_data $(MINI_DATA)/dev \
	  --token_list $(MINI_DATA)/token_list/char/tokens.txt --stats $(MINI_EXP)/stats/feats_stats.json \
	  --exp_dir $(MINI_EXP)/aligner --set trainer.progress=false
	$(PY) scripts/bench_alignment.py --aligner_dir $(MINI_EXP)/aligner --corpus corpora/synthmisp_mini \
	  --data_dir $(MINI_DATA)/eval --data_dir $(MINI_DATA)/dev --threads 2 --pad_probe 0 \
	  --model_description "the local CTC aligner of the SynthMISP mini recipe (conf/aligner.yaml)" \
	  --out docs/results/bench_aligner.json
	$(PY) -m avsr.bin.report --docs

# every row (AV1-AV6, S.1-S.7, AV5 over the 4 MDA-KD distances x λ 1, 10, 100 with one joint dev minimum,
# then the per-fusion-layer taps on dev), CTC greedy sweep: table full of the same row spec
bench-full: install
	( $(ROWS_RUN) --rows_table full --rows_out $(CURDIR)/docs/results/robust_full.json )
	$(PY) -m avsr.bin.report --docs

# every committed report (docs/BENCHMARKS.md, recipes/*/RESULTS.md, ...) from the committed JSONs;
# tests/test_docs.py checks in `make test` that this changes nothing
docs: install
	$(PY) -m avsr.bin.report --docs

clean-venv:
	rm -rf $(VENV)

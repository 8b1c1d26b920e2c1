#!/usr/bin/env bash
# SynthMISP recipe: stage 0 generates a synthetic corpus in the MISP2022 release layout,
# then every later stage is the misp2022 recipe itself, run on that corpus (no special-casing).
#
#   ./run.sh --preset demo                 # generate + all misp2022 stages
#   ./run.sh --preset mini --stage 1       # skip generation, run misp2022 stages from 1
#
# Options (others are passed through to ../misp2022/run.sh, e.g. --force, --stop_stage):
#   --preset tiny|demo|mini   corpus size (avsr/synthmisp/generate.py PRESETS)      [demo]
#   --seed N                  generator seed                                         [1]
#   --nj N                    parallel jobs for generation and data preparation      [2]
#   --stage N / --stop_stage M   stages to run; 0 = generate                         [0 / 100]
#   --corpus_dir DIR          where the corpus is written          [corpus/synthmisp_<preset>]
#   --exp_dir DIR             experiment dir                        [exp/synthmisp_<preset>]
#   --data_dir DIR            Kaldi-style data dirs                 [data/synthmisp_<preset>]
#   --gen_args "..."          extra generator flags, e.g. "--snr_db -5 5"
#   --train_config FILE       model/trainer YAML   [conf/micro.yaml (tiny), conf/demo.yaml (demo, mini)]
#
# The mini preset also sets the misp2022 training options chosen for it (docs/SYNTHMISP.md), before any
# given here, which win: --speed_perturb "0.9 1.0 1.1" --av_noise "0.5 -15 5" and, ahead of a given
# --train_args, --train_args "--set model.dropout_rate=0.2"
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
preset=demo; seed=1; nj=2; stage=0; stop_stage=100
corpus_dir=""; exp_dir=""; data_dir=""; gen_args=""; force=false; train_config=""
pass=()
cmdline=$0   # the command as given, for synthmisp_cmd.sh (the loop below shifts it away)
if [ $# -gt 0 ]; then cmdline+=$(printf ' %q' "$@"); fi
train_args=""
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0" | sed 's/^# \{0,1\}//'; echo; echo "misp2022 stages:";
               "$here/../misp2022/run.sh" --help | sed -n '/^Stages/,$p'; exit 0 ;;
    --preset) preset=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --nj) nj=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop_stage) stop_stage=$2; shift 2 ;;
    --corpus_dir) corpus_dir=$2; shift 2 ;;
    --exp_dir) exp_dir=$2; shift 2 ;;
    --data_dir) data_dir=$2; shift 2 ;;
    --gen_args) gen_args=$2; shift 2 ;;
    --train_config) train_config=$2; shift 2 ;;
    --train_args) train_args=$2; shift 2 ;;
    --force) force=true; pass+=("$1"); shift ;;
    *) pass+=("$1"); shift ;;
  esac
done
cd "$here"
corpus_dir=$(realpath -m "${corpus_dir:-corpus/synthmisp_${preset}}")
exp_dir=$(realpath -m "${exp_dir:-exp/synthmisp_${preset}}")
data_dir=$(realpath -m "${data_dir:-data/synthmisp_${preset}}")
if [ -z "$train_config" ]; then
  case "$preset" in tiny) train_config=$here/../../conf/micro.yaml ;; *) train_config=$here/../../conf/demo.yaml ;; esac
fi
# the mini's training options (docs/SYNTHMISP.md, "Presets and knobs"); later flags win, and a given
# --train_args is added after the mini's dropout (its own --set model.dropout_rate=... wins)
if [ "$preset" = mini ]; then
  pass=(--speed_perturb "0.9 1.0 1.1" --av_noise "0.5 -15 5" ${pass[@]+"${pass[@]}"})
  train_args="--set model.dropout_rate=0.2${train_args:+ $train_args}"
fi
if [ -n "$train_args" ]; then pass+=(--train_args "$train_args"); fi
train_config=$(realpath -m "$train_config")
if [ -x "$here/../../.venv/bin/python" ]; then PY="$here/../../.venv/bin/python"; else PY=python3; fi
export PYTHONPATH="$here/../..${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$exp_dir/stages" "$exp_dir/logs"
echo "$cmdline" > "$exp_dir/synthmisp_cmd.sh"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  marker="$exp_dir/stages/0_generate.done"
  want="preset=$preset seed=$seed gen_args=$gen_args"
  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && ! $force; then
    echo "stage 0: SynthMISP already generated ($want) in $corpus_dir; skipping"
  else
    if [ -f "$marker" ] && [ "$(cat "$marker")" != "$want" ]; then
      echo "stage 0: settings changed, regenerating $corpus_dir"; rm -rf "$corpus_dir"
    fi
    $force && rm -rf "$corpus_dir"
    rm -f "$marker"
    echo "stage 0: generating SynthMISP ($want) -> $corpus_dir"
    t0=$SECONDS
    # shellcheck disable=SC2086
    "$PY" -m avsr.bin.synthmisp --out "$corpus_dir" --preset "$preset" --seed "$seed" \
        --nj "$nj" $gen_args 2>&1 | tee "$exp_dir/logs/stage0_generate.log"
    # the corpus changed: every later (misp2022) stage must be redone
    rm -f "$exp_dir"/stages/[1-9]*.done
    echo "$want" > "$marker"
    echo "$((SECONDS - t0))" > "$exp_dir/stages/0_generate.seconds"   # read by the report's time split
  fi
fi
[ "$stop_stage" -lt 1 ] && exit 0
[ "$stage" -lt 1 ] && stage=1
exec "$here/../misp2022/run.sh" --misp_root "$corpus_dir" --exp_dir "$exp_dir" --data_dir "$data_dir" \
     --nj "$nj" --stage "$stage" --stop_stage "$stop_stage" --train_config "$train_config" "${pass[@]}"

#!/usr/bin/env bash
# Calibration run of a SynthMISP preset on a lent GPU machine (python3 with torch, no registry):
# generate, prepare, train A0 || V, AV0, pack, greedy decodes, a short sweep, report, all through
# recipes/synthmisp/run.sh; each training stage has a deadline (seconds from the start) after which
# it is cut and finished from its checkpoints (max_epochs 1 = average the best epochs so far).
#
#   bash docs/notebook/tools/device_calibration.sh PRESET CONFIG NJ WORKERS T_AV0 T_POST
#   e.g. ... mini ../../conf/demo.yaml 16 6 370 460   (GEN_ARGS="--lip_activity 0.4 0.8" in the env: knobs)
#
# What travels (carry .whl and .deb; both in .git/info/exclude):
#   .whl  the project's non-torch wheels for cp312 manylinux (pip download --no-deps --only-binary=:all:
#         --python-version 3.12 ...): espnet typeguard torch-complex librosa audioread soxr pooch decorator
#         soundfile cffi pycparser kaldiio jiwer rapidfuzz av praatio platformdirs pypinyin nara-wpe (~45 MB)
#   .deb  lib/: libespeak-ng.so.1 and its shared-library closure (ldd, without libc/libm), copied from a
#         Debian 12 machine; espeak-ng-data/: its data without the *_dict files but cmn_dict and en_dict
# Measured on an H200 machine (16 cores), mini candidate of 584 sessions: generation 144 s, stages 1-5
# 100 s, A0 and V side by side ~30 s per epoch each (368 batches of 16, loader-bound), AV0 ~72 s per epoch.
set -uo pipefail
PRESET=${1:-mini}; CONFIG=${2:-../../conf/demo.yaml}; NJ=${3:-16}; WORKERS=${4:-5}
T_AV0=${5:-400}; T_POST=${6:-490}
R=$PWD; T0=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
E=$R/recipes/synthmisp/exp/cal; D=$R/recipes/synthmisp/data/cal; C=/tmp/corpus_cal
log() { echo "[$((SECONDS - T0)) s] $*" | tee -a "$OUT/progress.txt"; }
pack_results() {
  (cd "$R/recipes/synthmisp" && tar czf "$OUT/results.tgz.tmp" --exclude='*.pth' --exclude='*.npz' \
     --exclude='tensorboard' exp/cal data/cal/*/text data/cal/*/utt2spk data/cal/token_list 2>/dev/null)
  mv -f "$OUT/results.tgz.tmp" "$OUT/results.tgz"
}
if [ -d .whl ] && ! python3 -c "import espnet2" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { log "pip install failed"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export ESPEAK_DATA_PATH=$R/.deb/espeak-ng-data
nvidia-smi -L 2>&1 | tee -a "$OUT/progress.txt"
python3 -c "import torch, espnet2.asr.encoder.conformer_encoder, av, soundfile, cv2, praatio, jiwer, kaldiio, librosa, sentencepiece, matplotlib; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'av', av.__version__, 'cv2', cv2.__version__)" 2>&1 | tee -a "$OUT/progress.txt"
nproc | tee -a "$OUT/progress.txt"
cd recipes/synthmisp
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then dev=(--ngpu 1 --decode_device cuda)
else dev=(--ngpu 0 --decode_device cpu); fi
common=(--preset "$PRESET" --corpus_dir "$C" --exp_dir "$E" --data_dir "$D" --nj "$NJ" --train_config "$CONFIG"
        --models "a0 v av0" "${dev[@]}" --beam_size 0)
tr="--set trainer.num_workers=$WORKERS"
log "generate"
LD_LIBRARY_PATH=$R/.deb/lib ./run.sh "${common[@]}" --stage 0 --stop_stage 0 ${GEN_ARGS:+--gen_args "$GEN_ARGS"} > "$OUT/gen.log" 2>&1 \
  || { log "generation failed"; tail -30 "$OUT/gen.log"; pack_results; exit 1; }
tail -3 "$OUT/gen.log"
log "stages 1-5"
./run.sh "${common[@]}" --stage 1 --stop_stage 5 --train_args "$tr" > "$OUT/prep.log" 2>&1 \
  || { log "prep failed"; tail -30 "$OUT/prep.log"; pack_results; exit 1; }
cat "$E/data_summary.json" 2>/dev/null | head -c 1500; echo
pack_results
# a training stage under a deadline; when cut, resumed with max_epochs 1 (= finish: average the best)
train_until() {  # STAGE DEADLINE EXTRA_TRAIN_ARGS
  local st=$1 dl=$2 extra=$3 left=$(( $2 - (SECONDS - T0) ))
  [ "$left" -gt 10 ] || left=10
  timeout "$left" ./run.sh "${common[@]}" --stage "$st" --stop_stage "$st" --train_args "$tr $extra" \
      > "$OUT/train$st.log" 2>&1
  local rc=$?
  if [ "$rc" -eq 124 ]; then
    log "stage $st cut at its deadline; finishing from its checkpoints"
    ./run.sh "${common[@]}" --stage "$st" --stop_stage "$st" --train_args "$tr $extra --set trainer.max_epochs=1" \
      >> "$OUT/train$st.log" 2>&1; rc=$?
  fi
  log "stage $st exit $rc"; return $rc
}
log "A0 || V"
train_until 6 "$T_AV0" "" & p6=$!
sleep 2
train_until 7 "$T_AV0" "" & p7=$!
wait $p6; r6=$?; wait $p7; r7=$?
pack_results
[ "$r6" -eq 0 ] && [ "$r7" -eq 0 ] || { log "A0/V failed"; tail -n 40 "$OUT/train6.log" "$OUT/train7.log"; exit 1; }
log "AV0"
train_until 8 "$T_POST" "--set trainer.max_epochs=10" || { tail -n 40 "$OUT/train8.log"; pack_results; exit 1; }
pack_results
log "pack"
./run.sh "${common[@]}" --stage 11 --stop_stage 11 > "$OUT/post.log" 2>&1 || { log "pack failed"; tail -30 "$OUT/post.log"; }
for m in a0 v av0; do
  [ -f "$E/packed/$m/model.pth" ] && (cd "$E/packed" && tar cf "$OUT/packed_$m.tar" "$m")
done
log "decode (greedy)"
./run.sh "${common[@]}" --stage 12 --stop_stage 12 >> "$OUT/post.log" 2>&1 || log "decode failed"
pack_results
log "sweep"
./run.sh "${common[@]}" --stage 13 --stop_stage 14 \
   --sweep_args "--ctc_greedy --rates 0 0.5 --segment_rates --snrs --similarity_rates" >> "$OUT/post.log" 2>&1 \
   || log "sweep/report failed"
pack_results
log "done"

#!/usr/bin/env bash
# MISP2022 audio-visual speech recognition recipe (ESPnet/Kaldi style).
# Run from this directory:  cd recipes/misp2022 && ./run.sh --misp_root /path/to/misp2022
set -euo pipefail

invoke_dir=$PWD
cd "$(dirname "$0")"
. ./path.sh

# ---------------------------------------------------------------- options
stage=1              # first stage to run
stop_stage=100       # last stage to run
nj=4                 # parallel jobs (stage 2: sessions in parallel)
misp_root=           # corpus root: audio/ video/ transcription/ detection/
exp_dir=exp          # done markers (stages/), logs (logs/), data_summary.json
data_dir=data        # Kaldi-style data dirs and token lists
dump_dir=            # ROI files: <dump_dir>/roi/<split>/<recording>/<utt>.npz (empty: $data_dir/dump)
channel=0            # far-field channel for wav.scp (<Session>_Far_<channel>.wav)
splits="train dev eval"
train_set=train      # split whose text builds the token lists
token_type=char      # char: character list only; bpe: also a sentencepiece model
nbpe=500             # sentencepiece vocabulary size (token_type=bpe)
bpemode=unigram      # sentencepiece model type: unigram, bpe, char, word
force=false          # redo the selected stages even when done (later stages' markers are cleared)

help_message=$(cat <<EOF
Usage: $0 [options]    (run from recipes/misp2022)

Stages (each writes \$exp_dir/stages/<N>_<name>.done and \$exp_dir/logs/stage<N>_<name>.log;
a done stage is skipped unless --force true; running a stage clears later stages' markers):
  1 data     TextGrids (tier 内容层) -> \$data_dir/<split>_all: wav.scp (far channel --channel),
             video.scp, segments, text, utt2spk, spk2utt; skipped items in <split>_all/skipped
  2 rois     96x96 lip ROIs per utterance from far mp4 + detection JSON -> <dump_dir>/roi/<split>;
             ROI-filtered data dir \$data_dir/<split> (+ roi.scp, utt2num_roi_frames, skipped)
  3 tokens   character token list \$data_dir/token_list/char/tokens.txt from \$data_dir/\$train_set/text;
             with --token_type bpe also \$data_dir/token_list/bpe_<bpemode><nbpe>/{bpe.model,tokens.txt}
  4 summary  per-split counts, hours, ROI frames -> \$exp_dir/data_summary.json
  5+         reserved for training / decoding / scoring (later)

Options (default):
  --stage N          first stage ($stage)
  --stop_stage N     last stage ($stop_stage)
  --nj N             parallel jobs ($nj)
  --misp_root DIR    MISP2022 corpus root (required for stages 1-2; relative to the caller's dir)
  --exp_dir DIR      experiment dir ($exp_dir; this and the next two relative to the recipe dir)
  --data_dir DIR     data dir base ($data_dir)
  --dump_dir DIR     ROI file base (empty: \$data_dir/dump)
  --channel N        far-field channel ($channel)
  --splits "..."     splits to prepare ("$splits")
  --train_set NAME   split for token lists ($train_set)
  --token_type T     char or bpe ($token_type)
  --nbpe N           sentencepiece vocabulary size ($nbpe)
  --bpemode M        sentencepiece model type ($bpemode)
  --force BOOL       redo selected stages even if done ($force; "--force" alone means true)
  --config FILE      file of name=value lines setting the options above
  --help             this message
EOF
)

. ../../scripts/parse_options.sh
. ../../scripts/stage_utils.sh

if [ $# -gt 0 ]; then
  echo "$0: unexpected arguments: $*" >&2
  echo "$help_message" >&2
  exit 1
fi
for v in stage stop_stage nj channel nbpe; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "$0: --$v must be a non-negative integer, got '${!v}'" >&2; exit 1; }
done
[ "$nj" -ge 1 ] || { echo "$0: --nj must be >= 1" >&2; exit 1; }
[ -n "$dump_dir" ] || dump_dir="$data_dir/dump"
# a relative --misp_root is relative to where run.sh was called from; the output
# dirs (--exp_dir, --data_dir, --dump_dir) are relative to this recipe directory.
case "$misp_root" in ""|/*) ;; *) misp_root="$invoke_dir/$misp_root" ;; esac
case "$token_type" in char|bpe) ;; *) echo "$0: --token_type must be char or bpe" >&2; exit 1 ;; esac

need_misp_root() {
  if [ -z "$misp_root" ]; then
    echo "ERROR: --misp_root is required for this stage" >&2; return 1
  fi
  if [ ! -d "$misp_root" ]; then
    echo "ERROR: $misp_root: corpus root not found" >&2; return 1
  fi
}

# ---------------------------------------------------------------- stages
stage_data() {
  need_misp_root
  # shellcheck disable=SC2086
  "$PYTHON" local/prepare_data.py --misp_root "$misp_root" --splits $splits \
    --data_dir "$data_dir" --suffix _all --channel "$channel"
}

stage_rois() {
  need_misp_root
  local split
  for split in $splits; do
    log "ROIs for $split"
    "$PYTHON" -m avsr.data.rois --data_dir "$data_dir/${split}_all" \
      --detection_dir "$misp_root/detection/$split/far" \
      --out_dir "$dump_dir/roi/$split" --filtered_dir "$data_dir/$split" \
      --nj "$nj" --spk_prefix S
  done
}

stage_tokens() {
  local text="$data_dir/$train_set/text" final tmp
  [ -f "$text" ] || { echo "ERROR: $text not found (run stages 1-2 first)" >&2; return 1; }
  mkdir -p "$data_dir/token_list"
  rm -rf "$data_dir"/token_list/*.tmp.*  # leftovers of an interrupted run
  final="$data_dir/token_list/char"
  tmp="$final.tmp.$$"; rm -rf "$tmp"
  "$PYTHON" -m avsr.text.tokens --text "$text" --token_type char --output_dir "$tmp"
  atomic_replace_dir "$tmp" "$final"
  log "wrote $final/tokens.txt"
  if [ "$token_type" = bpe ]; then
    final="$data_dir/token_list/bpe_${bpemode}${nbpe}"
    tmp="$final.tmp.$$"; rm -rf "$tmp"
    "$PYTHON" -m avsr.text.tokens --text "$text" --token_type bpe --vocab_size "$nbpe" \
      --bpemode "$bpemode" --output_dir "$tmp"
    atomic_replace_dir "$tmp" "$final"
    log "wrote $final/{bpe.model,tokens.txt}"
  fi
}

stage_summary() {
  # shellcheck disable=SC2086
  "$PYTHON" local/data_summary.py --data_dir "$data_dir" --roi_dir "$dump_dir/roi" \
    --splits $splits --output "$exp_dir/data_summary.json"
}

# fingerprint of the corpus files (names, sizes, mtimes): a regenerated or edited corpus
# makes a done stage 1/2 print a warning (see run_stage) instead of silently passing
corpus_fp=none
if [ -n "$misp_root" ] && [ -d "$misp_root" ] && { stage_selected 1 || stage_selected 2; }; then
  corpus_fp=$(cd "$misp_root" && find . -type f \( -name '*.wav' -o -name '*.mp4' -o -name '*.TextGrid' \
      -o -name '*.json' \) -printf '%P %s %T@\n' 2>/dev/null | LC_ALL=C sort | md5sum | cut -c1-12)
fi
run_stage 1 data    stage_data    "misp_root=$misp_root corpus=$corpus_fp channel=$channel splits=$splits data_dir=$data_dir"
run_stage 2 rois    stage_rois    "misp_root=$misp_root corpus=$corpus_fp splits=$splits dump_dir=$dump_dir data_dir=$data_dir"
run_stage 3 tokens  stage_tokens  "train_set=$train_set token_type=$token_type nbpe=$nbpe bpemode=$bpemode"
run_stage 4 summary stage_summary "splits=$splits"

# Stages 5+ (training, decoding, scoring) are added here by later work.

log "finished stages $stage..$stop_stage"

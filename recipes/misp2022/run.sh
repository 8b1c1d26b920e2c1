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
misp_root=           # corpus root: audio/ video/ transcription/ detection/ (or roi_coordinates/)
exp_dir=exp          # done markers (stages/), logs (logs/), data_summary.json
data_dir=data        # Kaldi-style data dirs and token lists
dump_dir=            # ROI files: <dump_dir>/roi/<split>/<recording>/<utt>.npz (empty: $data_dir/dump)
far_frontend=ch0     # far-field audio: ch<N> (channel N of <Session>_Far_<N>.wav), mean (channel average) or wpe (nara-wpe)
channel=0            # old name: --channel N is --far_frontend chN
text_norm=official   # stage 1 text rules, ids and boundaries: official (MISP2022 baseline) or toolkit
eval_segments=       # official segment file of an evaluation set (no transcriptions needed; relative to the caller's dir)
eval_set=eval        # the split --eval_segments describes
crop=official        # lip crop: official (MISP2022 baseline: max(w,h,96) native pixels) or toolkit (1.6x box, resized)
lip_detector=haar    # offline face detector for a set without lip boxes (stage 2)
splits="train dev eval"
train_set=train      # split whose text builds the token lists
token_type=char      # char: character list only; bpe: also a sentencepiece model
nbpe=500             # sentencepiece vocabulary size (token_type=bpe)
bpemode=unigram      # sentencepiece model type: unigram, bpe, char, word
force=false          # redo the selected stages even when done (later stages' markers are cleared)
train_config=../../conf/full.yaml   # model + trainer YAML (conf/{micro,demo,mini,full}.yaml)
train_args=          # extra arguments for every avsr.bin.train call, e.g. "--set trainer.max_epochs=5"
a0_args=             # extra arguments for the A0 training only
v_args=              # extra arguments for the V training only
av0_args=            # extra arguments for the AV0 training only (e.g. fewer epochs)
av0_visual_init=auto # AV0's visual branch: auto = from V (stage 7) when v is in --models, none = scratch
speed_perturb=none  # speed perturbation of every training (stages 6-10): "F1 F2 ..." factors, e.g. "0.9 1.0 1.1"; none = off
av_noise="0.8 -20 5"    # babble augmentation of the AV trainings (AV0, AV5): "PROB SNR_LO SNR_HI" (dB); none = off
ngpu=0               # >1: training through torchrun --nproc_per_node=$ngpu (DDP); 1: one GPU
decode_device=       # device of the decode and sweep stages: cpu, cuda or cuda:N (empty: cuda when --ngpu >= 1)
models="a0 v av0 av5 av6"   # models to train (7, 9, 10 only when listed), pack, decode and sweep
robust_args=         # extra avsr.bin.train arguments for the robust student (stage 9)
d_prob=0.5           # robust student: share of samples with frame dropout (rate ~ U(0, 1], random pattern)
robust_freeze=none   # robust student: parts of AV0 kept frozen (none: every parameter trains, the paper's;
                     # "audio_encoder shared_encoder ctc decoder" is the ablation row AV3-frozen, docs/ROBUSTNESS.md)
kd_distance=mse      # MDA-KD distance: mse | cosine | gauss_kl | mmd (chosen on mini dev, docs/ROBUSTNESS.md)
kd_tap=visual_bundle # MDA-KD tap: visual_bundle (the paper: the visual input of the merge FFN) | fused | fusion<i>.audio | fusion<i>.visual | shared_out | fusion (all per-layer); "+" joins
kd_weight=100        # MDA-KD loss weight λ_KD (chosen on mini dev; 0: dropout only, i.e. the AV3 row)
adapter_rank=8       # MS-Adapter LoRA rank (stage 10)
adapter_args=        # extra avsr.bin.train arguments for the adapter training (stage 10)
adapter_threshold=0  # MS-Adapter routing: present-frame share at or below which adapters switch on
sweep_set=eval       # data set of the CER-vs-frame-loss sweep (stage 13)
sweep_args=          # extra avsr eval arguments (e.g. "--ctc_greedy", "--limit 100")
decode_sets="dev eval"
beam_size=10         # 0: CTC greedy
decode_batch=16      # utterances per batched decode
decode_args=         # extra arguments for avsr.bin.decode
use_lm=false         # true: token LM for shallow fusion (stage 5 lm), its weight chosen on dev (stage 11 lm_weight),
                     # packed with every model (stage 11) and used by stage 12; sweeps and rows decode without it
lm_config=../../conf/lm.yaml   # LM model + training YAML (avsr train_lm)
use_aligner=true     # true: the local CTC aligner (stage 5 aligner), packed with every model (stage 11): token times
aligner_config=../../conf/aligner.yaml   # aligner network + training YAML (avsr train_aligner)
aligner_args=        # extra avsr.bin.train_aligner arguments (e.g. "--set trainer.max_epochs=4")
lm_args=             # extra avsr.bin.train_lm arguments (e.g. "--set train.max_epochs=5")
lm_weights="0 0.1 0.2 0.3"     # dev grid of the LM weight (stage 11 lm_weight)
lm_weight=           # a fixed LM weight instead of the dev choice (empty: chosen on dev from --lm_weights)
lm_select_model=     # model whose dev CER chooses the weight (empty: av0 when in --models, else a0)
rows=                # row spec of stages 15-18, e.g. ../../conf/rows/dai2024.yaml (empty: those stages are skipped)
rows_table=core      # table of the row spec: core (AV3, AV5, AV6; beam 10) or full (every row; CTC greedy)
rows_dir=            # where the rows' runs, packs and sweeps go (empty: \$exp_dir/rows)
rows_out=            # the table JSON of stage 18 (empty: \$exp_dir/rows_<table>.json)
rows_leaderboard=    # also write the leaderboard JSON (schema: avsr/eval/leaderboard.py) here (empty: none)
bootstrap_unit=utterance   # what the intervals of stages 13 and 18 resample: utterance, or recording (whole sessions)

help_message=$(cat <<EOF
Usage: $0 [options]    (run from recipes/misp2022)

Stages (each writes \$exp_dir/stages/<N>_<name>.done and \$exp_dir/logs/stage<N>_<name>.log;
a done stage is skipped unless --force true; running a stage clears later stages' markers):
  1 data     TextGrids (tier 内容层) -> \$data_dir/<split>_all: wav.scp, video.scp, segments, text,
             utt2spk, spk2utt (official text rules and ids, --text_norm); skipped items in <split>_all/skipped;
             --eval_set from --eval_segments when given (exactly its ids; text only if every id has one);
             far audio by --far_frontend (mean/wpe write <dump_dir>/far_<mode>/<split>/<rec>.wav)
  2 rois     96x96 lip ROIs per utterance from far mp4 + lip boxes (the release's roi_coordinates/<split>/far/lip,
             or detection/<split>/far; neither: avsr detect_lips with --lip_detector -> \$data_dir/lip_detect/<split>)
             -> <dump_dir>/roi/<split>; data dir \$data_dir/<split> (+ roi.scp, utt2num_roi_frames, skipped);
             segments with < 50 % detected frames are dropped, except in the --eval_segments set, where they
             stay and are decoded audio-only (utt2audio_only)
  3 tokens   character token list \$data_dir/token_list/char/tokens.txt from \$data_dir/\$train_set/text;
             with --token_type bpe also \$data_dir/token_list/bpe_<bpemode><nbpe>/{bpe.model,tokens.txt}
  4 summary  per-split counts, hours, ROI frames -> \$exp_dir/data_summary.json
  5 stats      global fbank mean/std of \$train_set -> \$exp_dir/stats/feats_stats.json
  5 lm         (only with --use_lm true) token LM (avsr train_lm, --lm_config) on \$data_dir/\$train_set/text,
               dev perplexity on \$data_dir/dev/text -> \$exp_dir/lm (lm.pth, lm_config.yaml, train_result.json);
               marker 5_lm.done.  To add the LM to an exp whose models are trained: --stage 5 --stop_stage 5
               --use_lm true, then --stage 11 --use_lm true (like any stage, it clears later stages' markers;
               the trainings are redone only when their stages are selected again, and then resume)
  5 aligner    (with --use_aligner true, the default) the local CTC aligner that times tokens for transcribe
               and decode (avsr train_aligner, --aligner_config; audio and text of \$train_set, dev by CTC
               loss) -> \$exp_dir/aligner; marker 5_aligner.done
  6 train_a0   audio-only model A0 (scratch) -> \$exp_dir/train_a0 (model.pth = best-N average on dev)
  7 train_v    video-only model V (scratch) -> \$exp_dir/train_v (only when --models has v)
  8 train_av0  audio-visual AV0, --init from A0 (full video, no dropout) -> \$exp_dir/train_av0;
             its visual branch (visual_*) from V when v is in --models (--av0_visual_init);
             only when --models has av0, av5 or av6
  9 train_av5  robust student AV5: init AV0, frame dropout (D_prob --d_prob, rate ~ U(0,1], random)
               + MDA-KD from the frozen AV0 teacher (--kd_distance, --kd_tap, --kd_weight);
               every parameter trains (--robust_freeze: prefixes to keep frozen instead)
  10 train_av6 MS-Adapter: LoRA (--adapter_rank) on AV5's audio/shared Conformers and decoder,
               base frozen, audio-only input -> \$exp_dir/train_av6
  11 lm_weight (only with --use_lm true) the LM weight: --lm_select_model packed with the LM
               (\$exp_dir/lm/select/packed_<model>), dev decoded once per weight of --lm_weights, lowest
               dev CER wins (a tie: the smaller weight) -> \$exp_dir/lm/lm_weight_dev.json (--lm_weight W: fixed)
  11 pack      packed model dirs \$exp_dir/packed/<model> for --models (with --use_lm true each carries the
               LM and the chosen weight as its decoding default; with --use_aligner true, the aligner)
  12 decode    decode --decode_sets with each packed model -> \$exp_dir/decode/<model>_<set>
               (beam search, or CTC greedy with --beam_size 0; text, result.json with CER + 95 % CI;
               with --use_lm true at the packs' LM weight, recorded as lm_weight in result.json);
               a set from --eval_segments also gets \$exp_dir/submission/<model>_<set>.txt (exactly its ids)
  13 sweep     avsr eval on --sweep_set: CER vs frame-loss rate (random 0..1, segment 0.5, whole) and
               babble 0/-2.5/-5 dB, degradation area, relative CER vs A0, representation similarity
               (never with the LM: --lm_weight 0 with --use_lm true)
               -> \$exp_dir/sweep/\$sweep_set/{sweep.json,sweep.md,cer_vs_frame_loss.png}
  14 report    CER and cpCER (per session and overall) with bootstrap intervals and paired comparisons
               (sets without references are skipped with a message) and each finished stage's wall time
               -> \$exp_dir/report.{json,md}, printed, then the sweep table and the plot's path
  15 rows_train   (only with --rows FILE, e.g. ../../conf/rows/dai2024.yaml)
               train every run of the row spec's table (--rows, --rows_table) with avsr.bin.train
               into \$rows_dir/<RUN> (finished runs skipped, interrupted ones resumed); a row that starts
               from another row waits for that row's dev choice
  16 rows_select  dev choices: each row's grid (lowest mean greedy dev CER), probes, the MS-Adapter
               threshold, the best dropout-only row -> \$rows_dir/sweep/dev_*
  17 rows_sweep   avsr eval of the table's models on eval -> \$rows_dir/sweep/eval_<table>
  18 rows_table   claims (paired bootstrap, trend) and the table JSON -> --rows_out
               (stages 15-18 run python -m avsr.bin.rows train|select|sweep|table; each is resumable)
  Training stages resume from \$exp_dir/train_*/checkpoint.pth when re-run after an interruption;
  with --force true they start from scratch.  Each train dir holds cmd.sh (the exact command).

Options (default):
  --stage N          first stage ($stage)
  --stop_stage N     last stage ($stop_stage)
  --nj N             parallel jobs ($nj)
  --misp_root DIR    MISP2022 corpus root (required for stages 1-2; relative to the caller's dir)
  --exp_dir DIR      experiment dir ($exp_dir; this and the next two relative to the recipe dir)
  --data_dir DIR     data dir base ($data_dir)
  --dump_dir DIR     ROI file base (empty: \$data_dir/dump)
  --far_frontend F   far-field audio: ch<N>, mean or wpe ($far_frontend; --channel N = chN)
  --text_norm T      official or toolkit text rules / ids / boundaries ($text_norm)
  --eval_segments F  official segment file of --eval_set (evaluation release without transcriptions)
  --eval_set S       the split of --eval_segments ($eval_set)
  --crop C           lip crop: official or toolkit ($crop)
  --lip_detector D   face detector for sets without lip boxes ($lip_detector)
  --splits "..."     splits to prepare ("$splits")
  --train_set NAME   split for token lists ($train_set)
  --token_type T     char or bpe ($token_type)
  --nbpe N           sentencepiece vocabulary size ($nbpe)
  --bpemode M        sentencepiece model type ($bpemode)
  --force BOOL       redo selected stages even if done ($force; "--force" alone means true)
  --train_config F   model/trainer YAML ($train_config; relative to the recipe dir)
  --train_args "..." extra avsr.bin.train arguments for every model ($train_args)
  --a0_args "..."    extra avsr.bin.train arguments for A0 only ($a0_args)
  --v_args "..."     extra avsr.bin.train arguments for V only ($v_args)
  --av0_args "..."   extra avsr.bin.train arguments for AV0 only ($av0_args)
  --av0_visual_init M  auto: AV0's visual branch from V when v is in --models; none: scratch ($av0_visual_init)
  --speed_perturb "F ..." every training (stages 6-10) resamples each utterance's audio and retimes its video
                     by a factor drawn from F ... (Kaldi-style, e.g. "0.9 1.0 1.1"; avsr.robust.speed_perturb);
                     none: off ($speed_perturb)
  --av_noise "P LO HI" AV0 and AV5 train on audio mixed, with probability P, with babble from 3 other
                     utterances of the batch at an SNR ~ U(LO, HI) dB (avsr.robust.audio_noise); none: off
                     ($av_noise)
  --ngpu N           GPUs for training (stages 6-10 and the rows' runs of 15): 0 = CPU, >1 = torchrun DDP
                     ($ngpu); decoding then runs on cuda
  --decode_device D  device of stages 12-13 and of the rows' sweeps (16-17): cpu, cuda or cuda:N
                     (default: cuda when --ngpu >= 1, else cpu)
  --models "..."     models to pack/decode/report ("$models")
  --decode_sets "..." data sets to decode ("$decode_sets")
  --beam_size N      beam size, 0 = CTC greedy ($beam_size)
  --decode_batch N   utterances per batched decode ($decode_batch)
  --decode_args "..." extra avsr.bin.decode arguments ($decode_args)
  --use_lm BOOL      LM shallow fusion: stages 5 lm and 11 lm_weight, packs and stage 12 with the LM ($use_lm)
  --lm_config F, --lm_args "...", --lm_weights "...", --lm_weight W, --lm_select_model M   the LM
  --use_aligner BOOL the local CTC aligner for token times: stage 5 aligner, packed by stage 11 ($use_aligner)
  --aligner_config F, --aligner_args "..."   the aligner's YAML and extra avsr train_aligner arguments
                     (config $lm_config; grid "$lm_weights"; select on ${lm_select_model:-av0, else a0})
  --d_prob P, --kd_distance D, --kd_tap T, --kd_weight W, --robust_args "..."   robust student (stage 9)
  --robust_freeze "PREFIX ..."  parameter prefixes AV5 does not train ("$robust_freeze"; none = train all)
  --adapter_rank R, --adapter_args "...", --adapter_threshold T                  MS-Adapter (stage 10)
  --sweep_set S, --sweep_args "..."                                              sweep (stage 13)
  --rows FILE, --rows_table T, --rows_dir DIR, --rows_out FILE   rows (stages 15-18, only with --rows; table $rows_table)
  --rows_leaderboard FILE   stage 18 also writes the leaderboard JSON (rows x conditions, intervals, claims)
  --bootstrap_unit U        the intervals of stages 13 and 18 resample utterances or whole recordings ($bootstrap_unit)
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
for v in stage stop_stage nj channel nbpe ngpu beam_size decode_batch adapter_rank; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "$0: --$v must be a non-negative integer, got '${!v}'" >&2; exit 1; }
done
if [ "$channel" != 0 ]; then
  [ "$far_frontend" = ch0 ] || { echo "$0: give --far_frontend or --channel, not both" >&2; exit 1; }
  far_frontend="ch$channel"
fi
case "$far_frontend" in
  ch[0-9]*) [[ "$far_frontend" =~ ^ch[0-9]+$ ]] || { echo "$0: --far_frontend must be chN, mean or wpe, got '$far_frontend'" >&2; exit 1; }
            channel=${far_frontend#ch} ;;
  mean|wpe) channel=0 ;;
  *) echo "$0: --far_frontend must be chN, mean or wpe, got '$far_frontend'" >&2; exit 1 ;;
esac
case "$text_norm" in official|toolkit) ;; *) echo "$0: --text_norm must be official or toolkit" >&2; exit 1 ;; esac
case "$crop" in official|toolkit) ;; *) echo "$0: --crop must be official or toolkit" >&2; exit 1 ;; esac
case "$av0_visual_init" in auto|none) ;; *) echo "$0: --av0_visual_init must be auto or none, got '$av0_visual_init'" >&2; exit 1 ;; esac
case "$use_lm" in true|false) ;; *) echo "$0: --use_lm must be true or false, got '$use_lm'" >&2; exit 1 ;; esac
case "$use_aligner" in true|false) ;; *) echo "$0: --use_aligner must be true or false, got '$use_aligner'" >&2; exit 1 ;; esac
case "$bootstrap_unit" in utterance|recording) ;; *) echo "$0: --bootstrap_unit must be utterance or recording, got '$bootstrap_unit'" >&2; exit 1 ;; esac
_w='^[0-9]+([.][0-9]+)?$'
for _x in $lm_weights $lm_weight; do
  [[ "$_x" =~ $_w ]] || { echo "$0: LM weights must be non-negative numbers, got '$_x'" >&2; exit 1; }
done
if [ "$use_lm" = true ] && [ "$beam_size" -eq 0 ]; then
  echo "$0: --use_lm true needs the beam search (--beam_size > 0); CTC greedy does not use the LM" >&2; exit 1
fi
lm_config=$(realpath -m "$lm_config")   # relative paths: to this recipe dir
aligner_config=$(realpath -m "$aligner_config")
noise_args=()        # the --method argument of the babble augmentation (--av_noise) for AV0 and AV5
if [ "$av_noise" != none ]; then
  read -r -a _n <<< "$av_noise"
  _num='^-?[0-9]+([.][0-9]+)?$'
  if [ "${#_n[@]}" -ne 3 ] || ! [[ "${_n[0]}" =~ $_num && "${_n[1]}" =~ $_num && "${_n[2]}" =~ $_num ]]; then
    echo "$0: --av_noise must be 'PROB SNR_LO SNR_HI' (numbers) or none, got '$av_noise'" >&2; exit 1
  fi
  noise_args=(--method "audio_noise:{\"prob\": ${_n[0]}, \"snr\": [${_n[1]}, ${_n[2]}]}")
fi
sp_args=() sp_sig=   # the --method argument of --speed_perturb for every training, and its stage signature
if [ "$speed_perturb" != none ]; then
  sp_sig=" speed_perturb=$speed_perturb"
  read -r -a _f <<< "$speed_perturb"
  for x in "${_f[@]}"; do
    [[ "$x" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "$0: --speed_perturb must be factors such as '0.9 1.0 1.1' or none, got '$speed_perturb'" >&2; exit 1; }
  done
  [ "${#_f[@]}" -ge 1 ] || { echo "$0: --speed_perturb: no factor given (none = off)" >&2; exit 1; }
  sp_args=(--method "speed_perturb:{\"factors\": [$(IFS=,; echo "${_f[*]}")]}")
fi
[ "$nj" -ge 1 ] || { echo "$0: --nj must be >= 1" >&2; exit 1; }
[ -n "$dump_dir" ] || dump_dir="$data_dir/dump"
# a relative --misp_root is relative to where run.sh was called from; the output
# dirs (--exp_dir, --data_dir, --dump_dir) are relative to this recipe directory.
case "$misp_root" in ""|/*) ;; *) misp_root="$invoke_dir/$misp_root" ;; esac
case "$eval_segments" in ""|/*) ;; *) eval_segments="$invoke_dir/$eval_segments" ;; esac
if [ -n "$eval_segments" ] && [ ! -f "$eval_segments" ]; then
  echo "$0: --eval_segments $eval_segments: file not found" >&2; exit 1
fi
train_config=$(realpath -m "$train_config")   # relative paths: to this recipe dir
[ -z "$rows" ] || rows=$(realpath -m "$rows")   # relative paths: to this recipe dir
[ -n "$rows_dir" ] || rows_dir="$exp_dir/rows"
[ -n "$rows_out" ] || rows_out="$exp_dir/rows_${rows_table}.json"
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
  local seg=() split
  [ -n "$eval_segments" ] && seg=(--eval_segments "$eval_segments" --eval_split "$eval_set")
  # shellcheck disable=SC2086
  "$PYTHON" local/prepare_data.py --misp_root "$misp_root" --splits $splits \
    --data_dir "$data_dir" --suffix _all --channel "$channel" --text_norm "$text_norm" "${seg[@]}"
  case "$far_frontend" in
    mean|wpe)
      for split in $splits; do
        log "far front-end $far_frontend for $split"
        "$PYTHON" -m avsr.bin.far_frontend --data_dir "$data_dir/${split}_all" --mode "$far_frontend" \
          --out_dir "$dump_dir/far_$far_frontend/$split" --nj "$nj"
      done ;;
  esac
}

stage_rois() {
  need_misp_root
  local split det keep
  for split in $splits; do
    # lip boxes: the release's roi_coordinates/<split>/far/lip, else the toolkit's detection/<split>/far,
    # else an offline face detector (avsr detect_lips)
    det="$misp_root/roi_coordinates/$split/far/lip"
    [ -d "$det" ] || det="$misp_root/detection/$split/far"
    if [ ! -d "$det" ]; then
      det="$data_dir/lip_detect/$split"
      log "no lip boxes for $split in the corpus: running the $lip_detector face detector -> $det"
      "$PYTHON" -m avsr.bin.detect_lips --data_dir "$data_dir/${split}_all" --out_dir "$det" --detector "$lip_detector"
    fi
    keep=()
    [ -n "$eval_segments" ] && [ "$split" = "$eval_set" ] && keep=(--keep_all)
    log "ROIs for $split (lip boxes from $det, $crop crop${keep:+, every segment kept})"
    "$PYTHON" -m avsr.bin.prepare_rois --data_dir "$data_dir/${split}_all" \
      --detection_dir "$det" --crop "$crop" "${keep[@]}" \
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
  "$PYTHON" -m avsr.bin.tokens --text "$text" --token_type char --output_dir "$tmp"
  atomic_replace_dir "$tmp" "$final"
  log "wrote $final/tokens.txt"
  if [ "$token_type" = bpe ]; then
    final="$data_dir/token_list/bpe_${bpemode}${nbpe}"
    tmp="$final.tmp.$$"; rm -rf "$tmp"
    "$PYTHON" -m avsr.bin.tokens --text "$text" --token_type bpe --vocab_size "$nbpe" \
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
run_stage 1 data    stage_data    "misp_root=$misp_root corpus=$corpus_fp far=$far_frontend splits=$splits data_dir=$data_dir text_norm=$text_norm eval_segments=$eval_segments eval_set=$eval_set"
run_stage 2 rois    stage_rois    "misp_root=$misp_root corpus=$corpus_fp splits=$splits dump_dir=$dump_dir data_dir=$data_dir crop=$crop detector=$lip_detector eval_segments=$eval_segments"
run_stage 3 tokens  stage_tokens  "train_set=$train_set token_type=$token_type nbpe=$nbpe bpemode=$bpemode"
run_stage 4 summary stage_summary "splits=$splits"

tokens_txt() {
  if [ "$token_type" = bpe ]; then echo "$data_dir/token_list/bpe_${bpemode}${nbpe}/tokens.txt"
  else echo "$data_dir/token_list/char/tokens.txt"; fi
}
bpe_args() {
  [ "$token_type" = bpe ] && echo "--bpemodel $data_dir/token_list/bpe_${bpemode}${nbpe}/bpe.model" || true
}

stage_stats() {
  "$PYTHON" -m avsr.bin.collect_stats --config "$train_config" --data_dir "$data_dir/$train_set" \
    --out "$exp_dir/stats/feats_stats.json"
}

# train NAME MODE [extra args...]: runs avsr.bin.train into $exp_dir/train_NAME (resumes if interrupted)
train() {
  local name=$1 mode=$2; shift 2
  local dir="$exp_dir/train_$name" launcher=("$PYTHON")
  if [ "$force" = true ]; then rm -rf "$dir"; fi
  if [ "$ngpu" -gt 1 ]; then
    launcher=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$ngpu")
  fi
  local dev=()
  [ "$ngpu" -ge 1 ] && dev=(--device cuda)
  # shellcheck disable=SC2046,SC2086
  "${launcher[@]}" -m avsr.bin.train --config "$train_config" --mode "$mode" \
    --train_data "$data_dir/$train_set" --valid_data "$data_dir/dev" --token_list "$(tokens_txt)" $(bpe_args) \
    --stats "$exp_dir/stats/feats_stats.json" --exp_dir "$dir" "${dev[@]}" "${sp_args[@]}" "$@" $train_args
  [ -f "$dir/model.pth" ] || { echo "ERROR: $dir/model.pth was not written" >&2; return 1; }
}
has_model() { case " $models " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
stage_train_a0()  { train a0 audio $a0_args; }
stage_train_v() {
  case " $models " in *" v "*) train v video $v_args ;; *) log "stage 7: v not in --models ($models); not trained" ;; esac
}
av0_init() {  # the --init specs of AV0: A0 for everything, then V's visual branch (auto)
  local specs="$exp_dir/train_a0/model.pth"
  if [ "$av0_visual_init" = auto ] && has_model v; then specs+=" $exp_dir/train_v/model.pth::visual_"; fi
  echo "$specs"
}
stage_train_av0() {
  local f
  for f in $(av0_init); do
    f=${f%%::*}
    [ -f "$f" ] || { echo "ERROR: $f not found (stage 6 / 7)" >&2; return 1; }
  done
  # shellcheck disable=SC2046,SC2086
  train av0 audiovisual --init $(av0_init) "${noise_args[@]}" $av0_args
}

stage_train_av5() {
  has_model av5 || { log "stage 9: av5 not in --models ($models); not trained"; return 0; }
  local teacher="$exp_dir/train_av0/model.pth"
  [ -f "$teacher" ] || { echo "ERROR: $teacher not found (stage 8)" >&2; return 1; }
  local kd=()
  if [ "$kd_weight" != 0 ]; then
    kd=(--method "mda_kd:{\"teacher\": \"$teacher\", \"distance\": \"$kd_distance\", \"tap\": \"$kd_tap\", \"weight\": $kd_weight}")
  fi
  local freeze=()
  # shellcheck disable=SC2206
  [ "$robust_freeze" != none ] && [ -n "$robust_freeze" ] && freeze=(--freeze_param $robust_freeze)
  # shellcheck disable=SC2086
  train av5 audiovisual --init "$teacher" --d_prob "$d_prob" --drop_rate 0 1 --drop_pattern random \
    "${noise_args[@]}" "${kd[@]}" "${freeze[@]}" $robust_args
}

stage_train_av6() {
  has_model av6 || { log "stage 10: av6 not in --models ($models); not trained"; return 0; }
  local base="$exp_dir/train_av5/model.pth"
  [ -f "$base" ] || { echo "ERROR: $base not found (stage 9)" >&2; return 1; }
  # shellcheck disable=SC2086
  train av6 audiovisual --init "$base" --method ms_adapter --set "model.adapter_rank=$adapter_rank" $adapter_args
}

stage_lm() {   # stage 5 lm (--use_lm true): the token LM for shallow fusion
  local text="$data_dir/$train_set/text" f=()
  [ -f "$text" ] || { echo "ERROR: $text not found (run stages 1-3 first)" >&2; return 1; }
  [ "$force" = true ] && f=(--force)
  # shellcheck disable=SC2046,SC2086
  "$PYTHON" -m avsr.bin.train_lm --text "$text" --valid_text "$data_dir/dev/text" --token_list "$(tokens_txt)" \
    $(bpe_args) --config "$lm_config" --out_dir "$exp_dir/lm" "${f[@]}" $lm_args
  [ -f "$exp_dir/lm/lm.pth" ] || { echo "ERROR: $exp_dir/lm/lm.pth was not written" >&2; return 1; }
}

stage_aligner() {   # stage 5 aligner (--use_aligner true): the local CTC aligner for token times
  local dev=()
  [ -f "$data_dir/$train_set/text" ] || { echo "ERROR: $data_dir/$train_set/text not found (run stages 1-3 first)" >&2; return 1; }
  [ "$force" = true ] && rm -rf "$exp_dir/aligner"
  [ "$ngpu" -ge 1 ] && dev=(--device cuda)
  # shellcheck disable=SC2086
  "$PYTHON" -m avsr.bin.train_aligner --train_data "$data_dir/$train_set" --valid_data "$data_dir/dev" \
    --token_list "$(tokens_txt)" --stats "$exp_dir/stats/feats_stats.json" --config "$aligner_config" \
    --exp_dir "$exp_dir/aligner" "${dev[@]}" $(bpe_args) $aligner_args
  [ -f "$exp_dir/aligner/aligner.pth" ] || { echo "ERROR: $exp_dir/aligner/aligner.pth was not written" >&2; return 1; }
}

lm_model() {  # the model whose dev CER chooses the LM weight
  if [ -n "$lm_select_model" ]; then echo "$lm_select_model"; elif has_model av0; then echo av0; else echo a0; fi
}

stage_lm_weight() {   # stage 11 lm_weight (--use_lm true): the LM weight by dev CER, one decode per weight
  local m w dirs=() sel="$exp_dir/lm/select"
  [ -f "$exp_dir/lm/lm.pth" ] || { echo "ERROR: $exp_dir/lm/lm.pth not found (run stage 5 with --use_lm true)" >&2; return 1; }
  if [ -n "$lm_weight" ]; then
    log "stage 11: fixed --lm_weight $lm_weight (no dev choice)"; return 0
  fi
  m=$(lm_model)
  [ -f "$exp_dir/train_$m/model.pth" ] || { echo "ERROR: $exp_dir/train_$m/model.pth not found (--lm_select_model)" >&2; return 1; }
  # shellcheck disable=SC2046
  "$PYTHON" -m avsr.cli pack --exp_dir "$exp_dir/train_$m" --out "$sel/packed_$m" --beam_size "$beam_size" \
    --adapter_threshold "$adapter_threshold" --lm_dir "$exp_dir/lm" --lm_weight 0 $(bpe_args)
  for w in $lm_weights; do
    # shellcheck disable=SC2086
    "$PYTHON" -m avsr.bin.decode --model "$sel/packed_$m" --data_dir "$data_dir/dev" --out_dir "$sel/${m}_dev_lm$w" \
      --beam_size "$beam_size" --lm_weight "$w" --batch_size "$decode_batch" --device "$(decode_dev)" $decode_args
    dirs+=("$w=$sel/${m}_dev_lm$w")
  done
  "$PYTHON" -m avsr.bin.select_lm_weight --decode_dirs "${dirs[@]}" --model "$m" --set dev \
    --out "$exp_dir/lm/lm_weight_dev.json"
}

lm_weight_chosen() {  # the LM weight the packs get: --lm_weight, else the dev choice of stage 11
  if [ -n "$lm_weight" ]; then echo "$lm_weight"; return 0; fi
  local j="$exp_dir/lm/lm_weight_dev.json"
  [ -f "$j" ] || { echo "ERROR: $j not found (stage 11 lm_weight)" >&2; return 1; }
  "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["chosen"])' "$j"
}

stage_pack() {
  local m w lm=() al=()
  if [ "$use_aligner" = true ]; then
    [ -f "$exp_dir/aligner/aligner.pth" ] || { echo "ERROR: $exp_dir/aligner/aligner.pth not found (stage 5 aligner)" >&2; return 1; }
    al=(--aligner_dir "$exp_dir/aligner")
  fi
  if [ "$use_lm" = true ]; then
    w=$(lm_weight_chosen)
    lm=(--lm_dir "$exp_dir/lm" --lm_weight "$w")
    log "packing with the LM $exp_dir/lm at weight $w"
  fi
  for m in $models; do
    [ -f "$exp_dir/train_$m/model.pth" ] || { echo "ERROR: $exp_dir/train_$m/model.pth not found" >&2; return 1; }
    # shellcheck disable=SC2046
    "$PYTHON" -m avsr.cli pack --exp_dir "$exp_dir/train_$m" --out "$exp_dir/packed/$m" \
      --beam_size "$beam_size" --adapter_threshold "$adapter_threshold" "${lm[@]}" "${al[@]}" $(bpe_args)
  done
}

decode_dev() {   # the device of the decode and sweep stages
  if [ -n "$decode_device" ]; then echo "$decode_device"; elif [ "$ngpu" -ge 1 ]; then echo cuda; else echo cpu; fi
}

stage_decode() {
  local m s search=()
  [ "$beam_size" -gt 0 ] && search=(--beam_size "$beam_size") || search=(--ctc_greedy)
  for m in $models; do
    for s in $decode_sets; do
      # shellcheck disable=SC2086
      "$PYTHON" -m avsr.bin.decode --model "$exp_dir/packed/$m" --data_dir "$data_dir/$s" \
        --out_dir "$exp_dir/decode/${m}_${s}" "${search[@]}" --batch_size "$decode_batch" \
        --device "$(decode_dev)" $decode_args
      if [ -f "$data_dir/${s}_all/eval_segment_ids" ]; then   # a set from an official segment file
        "$PYTHON" -m avsr.cli submission --hyp "$exp_dir/decode/${m}_${s}/text" \
          --ids "$data_dir/${s}_all/eval_segment_ids" --out "$exp_dir/submission/${m}_${s}.txt"
      fi
    done
  done
}

stage_sweep() {
  local m spec=() search=()
  if [ ! -f "$data_dir/$sweep_set/text" ]; then
    log "stage 13: $data_dir/$sweep_set has no reference text (an evaluation release); sweep skipped"
    return 0
  fi
  [ "$beam_size" -gt 0 ] && search=(--beam_size "$beam_size") || search=(--ctc_greedy)
  for m in $models; do
    [ "$m" = v ] && continue
    spec+=("${m^^}=$exp_dir/packed/$m")     # (AV6's routing threshold is stored in its pack, stage 11)
  done
  local base=() ref=()
  has_model a0 && base=(--baseline A0 --similarity_rates 0 0.5 1.0)
  has_model av0 && ref=(--reference AV0)
  local lm_off=()     # robustness tables are decoded without the LM the packs carry
  [ "$use_lm" = true ] && lm_off=(--lm_weight 0)
  # shellcheck disable=SC2086
  "$PYTHON" -m avsr.cli eval --models "${spec[@]}" --data_dir "$data_dir/$sweep_set" \
    --out_dir "$exp_dir/sweep/$sweep_set" "${search[@]}" --batch_size "$decode_batch" "${base[@]}" "${ref[@]}" \
    --device "$(decode_dev)" "${lm_off[@]}" --bootstrap_unit "$bootstrap_unit" $sweep_args
}

stage_report() {
  # shellcheck disable=SC2086
  "$PYTHON" -m avsr.bin.report --decode_dir "$exp_dir/decode" --models $models --sets $decode_sets \
    --baseline a0 --out "$exp_dir/report" --stages_dir "$exp_dir/stages"
  if [ -f "$exp_dir/sweep/$sweep_set/sweep.md" ]; then
    echo; cat "$exp_dir/sweep/$sweep_set/sweep.md"
    echo "CER-vs-frame-loss plot: $exp_dir/sweep/$sweep_set/cer_vs_frame_loss.png"
  fi
}

run_stage 5 stats      stage_stats      "train_set=$train_set config=$train_config"
if [ "$use_lm" = true ]; then
  run_stage 5 lm       stage_lm         "train_set=$train_set token_type=$token_type lm_config=$lm_config lm_args=$lm_args"
fi
if [ "$use_aligner" = true ]; then
  run_stage 5 aligner  stage_aligner    "train_set=$train_set token_type=$token_type aligner_config=$aligner_config aligner_args=$aligner_args"
fi
run_stage 6 train_a0   stage_train_a0   "config=$train_config train_args=$train_args$sp_sig${a0_args:+ a0_args=$a0_args}"
run_stage 7 train_v    stage_train_v    "config=$train_config train_args=$train_args$sp_sig v_args=$v_args models=$models"
# AV0 only when a model needs it (AV5 and AV6 start from it); skipped without a done marker, so that
# adding av0 to --models later trains it
if has_model av0 || has_model av5 || has_model av6; then
  run_stage 8 train_av0  stage_train_av0  "config=$train_config train_args=$train_args$sp_sig av0_args=$av0_args av_noise=$av_noise init=$(av0_init)"
elif stage_selected 8; then
  log "stage 8: av0 not in --models ($models); not trained"
fi
run_stage 9 train_av5  stage_train_av5  "config=$train_config train_args=$train_args$sp_sig d_prob=$d_prob av_noise=$av_noise kd=$kd_distance/$kd_tap/$kd_weight robust_freeze=$robust_freeze robust_args=$robust_args models=$models"
run_stage 10 train_av6 stage_train_av6  "config=$train_config train_args=$train_args$sp_sig rank=$adapter_rank adapter_args=$adapter_args models=$models"
if [ "$use_lm" = true ]; then
  run_stage 11 lm_weight stage_lm_weight "model=$(lm_model) weights=$lm_weights fixed=$lm_weight beam=$beam_size args=$decode_args"
fi
al_sig=; [ "$use_aligner" = true ] && al_sig=" aligner=$aligner_config $aligner_args"
run_stage 11 pack      stage_pack       "models=$models beam_size=$beam_size threshold=$adapter_threshold use_lm=$use_lm lm_weight=$lm_weight lm_weights=$lm_weights$al_sig"
run_stage 12 decode    stage_decode     "models=$models sets=$decode_sets beam=$beam_size args=$decode_args use_lm=$use_lm"
bs_sig=; [ "$bootstrap_unit" = utterance ] || bs_sig=" bootstrap=$bootstrap_unit"   # (the default keeps older signatures)
run_stage 13 sweep     stage_sweep      "models=$models set=$sweep_set beam=$beam_size threshold=$adapter_threshold args=$sweep_args use_lm=$use_lm$bs_sig"
run_stage 14 report    stage_report     "models=$models sets=$decode_sets"

# rows of a row spec (conf/rows/*.yaml) on this exp dir: train, choose on dev, sweep eval, table
stage_rows() {  # stage_rows COMMAND [args]
  local cmd=$1; shift
  "$PYTHON" -m avsr.bin.rows "$cmd" --rows "$rows" --table "$rows_table" --exp_dir "$exp_dir" \
    --data_dir "$data_dir" --config "$train_config" --rows_dir "$rows_dir" --train_args="$train_args" \
    --ngpu "$ngpu" --device "$(decode_dev)" "$@"
}
stage_rows_train()  { stage_rows train; }
stage_rows_select() { stage_rows select; }
stage_rows_sweep()  { stage_rows sweep; }
stage_rows_table()  { stage_rows table --out "$rows_out" --bootstrap_unit "$bootstrap_unit" \
                        ${rows_leaderboard:+--leaderboard "$rows_leaderboard" --corpus_dir "$misp_root"}; }
rows_sig="rows=$rows table=$rows_table rows_dir=$rows_dir config=$train_config train_args=$train_args"
if [ -n "$rows" ]; then
  run_stage 15 "rows_train_$rows_table"  stage_rows_train  "$rows_sig"
  run_stage 16 "rows_select_$rows_table" stage_rows_select "$rows_sig"
  run_stage 17 "rows_sweep_$rows_table"  stage_rows_sweep  "$rows_sig"
  run_stage 18 "rows_table_$rows_table"  stage_rows_table  "$rows_sig out=$rows_out leaderboard=$rows_leaderboard bootstrap=$bootstrap_unit"
elif [ "$stop_stage" -ge 15 ] && [ "$stop_stage" -lt 100 ]; then
  log "stages 15-18 (rows) need --rows FILE (e.g. ../../conf/rows/dai2024.yaml); skipped"
fi

log "finished stages $stage..$stop_stage"

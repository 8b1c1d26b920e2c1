#!/usr/bin/env bash
# bias probe on the mini candidate DE: AV0 as recipe stage 8 trains it, with the babble dose given (or none),
# then pack, beam-10 decodes of dev and eval with and without video, and the paired JSONs; resumes.
#   mini_candidate_av0_babble.sh nn                                          # no babble (--av_noise none)
#   mini_candidate_av0_babble.sh mild 'audio_noise:{"prob": 0.5, "snr": [-5, 10]}'   # --av_noise "0.5 -5 10"
N=${1:?usage: $0 NAME [AUDIO_NOISE_METHOD_SPEC]}; noise=(); [ -n "${2:-}" ] && noise=(--method "$2")
C=/work/cal/m_DE; E=$C/exp/train_av0_$N; PY=/work/main/.venv/bin/python; D=$C/exp/decode
[ "$N" = nn ] && E=$C/exp/train_av0_nonoise    # the dir the no-babble run used
cd /work/main/recipes/misp2022
date
$PY -m avsr.bin.train --config /work/main/conf/demo.yaml --mode audiovisual --train_data $C/data/train --valid_data $C/data/dev \
  --token_list $C/data/token_list/char/tokens.txt --stats $C/exp/stats/feats_stats.json --exp_dir $E \
  --init $C/exp/train_a0/model.pth $C/exp/train_v/model.pth::visual_ \
  "${noise[@]}" --set trainer.max_epochs=8 trainer.lr=0.001 trainer.warmup_steps=60 trainer.progress=false || exit 1
cd /work/main
[ -d $C/exp/packed/av0$N ] || $PY -m avsr.cli pack --exp_dir $E --out $C/exp/packed/av0$N --beam_size 10
for s in dev eval; do
  for v in "" nov; do
    fl=(); [ "$v" = nov ] && fl=(--frame_loss_rate 1.0 --frame_loss_pattern whole)
    [ -f $D/av0$N${v}_$s/result.json ] || $PY -m avsr.cli decode --model $C/exp/packed/av0$N --data_dir $C/data/$s \
       --out_dir $D/av0$N${v}_$s --beam_size 10 --batch_size 16 "${fl[@]}"
  done
  $PY docs/notebook/tools/decode_dirs_paired.py $C/data/$s /work/cal/mDE_${N}_paired_$s.json A0=$D/a0_$s \
     AV0=$D/av0_$s AV0nov=$D/av0nov_$s AV0$N=$D/av0${N}_$s AV0${N}nov=$D/av0${N}nov_$s \
     -- AV0$N:A0 AV0${N}nov:A0 AV0${N}nov:AV0$N AV0$N:AV0
done
date; echo "$N-done"

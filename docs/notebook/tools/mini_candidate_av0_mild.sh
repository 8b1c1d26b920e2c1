#!/usr/bin/env bash
# bias probe on the mini candidate DE: AV0 as stage 8 trains it but with milder babble (--av_noise "0.5 -5 10"); resumes
cd /work/main/recipes/misp2022
C=/work/cal/m_DE; E=$C/exp/train_av0_mild; PY=/work/main/.venv/bin/python
date
$PY -m avsr.bin.train --config /work/main/conf/demo.yaml --mode audiovisual --train_data $C/data/train --valid_data $C/data/dev \
  --token_list $C/data/token_list/char/tokens.txt --stats $C/exp/stats/feats_stats.json --exp_dir $E \
  --init $C/exp/train_a0/model.pth $C/exp/train_v/model.pth::visual_ \
  --method 'audio_noise:{"prob": 0.5, "snr": [-5, 10]}' --set trainer.max_epochs=8 trainer.lr=0.001 trainer.warmup_steps=60 trainer.progress=false || exit 1
cd /work/main
[ -d $C/exp/packed/av0mild ] || $PY -m avsr.cli pack --exp_dir $E --out $C/exp/packed/av0mild --beam_size 10
for s in dev eval; do
  [ -f $C/exp/decode/av0mild_$s/result.json ] || $PY -m avsr.cli decode --model $C/exp/packed/av0mild --data_dir $C/data/$s \
     --out_dir $C/exp/decode/av0mild_$s --beam_size 10 --batch_size 16
  [ -f $C/exp/decode/av0mildnov_$s/result.json ] || $PY -m avsr.cli decode --model $C/exp/packed/av0mild --data_dir $C/data/$s \
     --out_dir $C/exp/decode/av0mildnov_$s --beam_size 10 --batch_size 16 --frame_loss_rate 1.0 --frame_loss_pattern whole
  $PY docs/notebook/tools/decode_dirs_paired.py $C/data/$s /work/cal/mDE_mild_paired_$s.json A0=$C/exp/decode/a0_$s \
     AV0=$C/exp/decode/av0_$s AV0nov=$C/exp/decode/av0nov_$s AV0mild=$C/exp/decode/av0mild_$s AV0mildnov=$C/exp/decode/av0mildnov_$s \
     -- AV0mild:A0 AV0mildnov:A0 AV0mildnov:AV0mild AV0mild:AV0
done
date; echo mild-done

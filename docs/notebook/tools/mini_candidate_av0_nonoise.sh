#!/usr/bin/env bash
# bias probe on the mini candidate DE: AV0 as stage 8 trains it but without the babble augmentation (--av_noise none); resumes
cd /work/main/recipes/misp2022
C=/work/cal/m_DE; E=$C/exp/train_av0_nonoise; PY=/work/main/.venv/bin/python
date
$PY -m avsr.bin.train --config /work/main/conf/demo.yaml --mode audiovisual --train_data $C/data/train --valid_data $C/data/dev \
  --token_list $C/data/token_list/char/tokens.txt --stats $C/exp/stats/feats_stats.json --exp_dir $E \
  --init $C/exp/train_a0/model.pth $C/exp/train_v/model.pth::visual_ \
  --set trainer.max_epochs=8 trainer.lr=0.001 trainer.warmup_steps=60 trainer.progress=false || exit 1
cd /work/main
[ -d $C/exp/packed/av0nn ] || $PY -m avsr.cli pack --exp_dir $E --out $C/exp/packed/av0nn --beam_size 10
for s in dev eval; do
  [ -f $C/exp/decode/av0nn_$s/result.json ] || $PY -m avsr.cli decode --model $C/exp/packed/av0nn --data_dir $C/data/$s \
     --out_dir $C/exp/decode/av0nn_$s --beam_size 10 --batch_size 16
  [ -f $C/exp/decode/av0nnnov_$s/result.json ] || $PY -m avsr.cli decode --model $C/exp/packed/av0nn --data_dir $C/data/$s \
     --out_dir $C/exp/decode/av0nnnov_$s --beam_size 10 --batch_size 16 --frame_loss_rate 1.0 --frame_loss_pattern whole
  $PY docs/notebook/tools/decode_dirs_paired.py $C/data/$s /work/cal/mDE_nonoise_paired_$s.json A0=$C/exp/decode/a0_$s \
     AV0=$C/exp/decode/av0_$s AV0nov=$C/exp/decode/av0nov_$s AV0nn=$C/exp/decode/av0nn_$s AV0nnnov=$C/exp/decode/av0nnnov_$s \
     -- AV0nn:A0 AV0nnnov:A0 AV0nnnov:AV0nn AV0nn:AV0
done
date; echo nonoise-done

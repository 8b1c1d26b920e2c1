#!/usr/bin/env bash
# The regime checks of the mini preset after `make bench-train` (recipe stages 1-14 done): A0's train-dev
# gap (CTC greedy, 300 training segments against dev), AV0 with no video (beam 10, the whole video
# missing) on dev and eval, and the paired differences of V, AV0 and AV0 with no video against A0 over
# the recipe's own beam-10 decodes (stage 12).  Resumes: finished outputs are kept.
#   docs/notebook/tools/mini_regime_check.sh        (from the project root)
set -euo pipefail
E=recipes/synthmisp/exp/synthmisp_mini
D=recipes/synthmisp/data/synthmisp_mini
R=docs/notebook/results
PY=.venv/bin/python
date
[ -f $R/mini_a0_d02_train_dev_gap_greedy.json ] || \
  $PY docs/notebook/tools/train_dev_gap.py $E/packed/a0 $R/mini_a0_d02_train_dev_gap_greedy.json train:$D/train:300 dev:$D/dev:300
for s in dev eval; do
  [ -f $E/decode/av0nov_$s/result.json ] || \
    $PY -m avsr.cli decode --model $E/packed/av0 --data_dir $D/$s --out_dir $E/decode/av0nov_$s \
      --beam_size 10 --batch_size 16 --frame_loss_rate 1.0 --frame_loss_pattern whole
  $PY docs/notebook/tools/decode_dirs_paired.py $D/$s $R/mini_regime_$s.json A0=$E/decode/a0_$s \
    V=$E/decode/v_$s AV0=$E/decode/av0_$s AV0nov=$E/decode/av0nov_$s -- AV0:A0 AV0nov:A0 AV0nov:AV0 V:A0
done
date

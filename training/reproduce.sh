#!/usr/bin/env bash
# The exact commands that produced annotator/weights/landmarks68.pt (2 cores, no GPU: about 2 + 15 + 10 minutes; see annotator/weights/README.md).
# Usage: training/reproduce.sh [DATA_DIR]   (default ../shared/data). 300w/afw is held out for evaluation.
set -euo pipefail
DATA=${1:-../shared/data}
for set in 300w/afw 300w/helen_trainset ytf/train ytf/test; do
  annotate train prepare "$DATA/$set" --out "cache/${set//\//_}.npz" --size 62 -j 2
done
H=cache/300w_helen_trainset.npz Y=cache/ytf_train.npz
# Stage 1 (box frame) and stage 2 (shape frame) are independent (stage 2 is trained on ground-truth
# alignment). HELEN is given three times (oversampled); YTF trains a second head (its jaw and brows
# differ). --threads is part of what makes a run repeatable: keep it.
annotate train fit $H $H $H $Y --other-convention $Y --val cache/300w_afw.npz --arch cnn8 --width 16 \
  --loss l1 --epochs 120 --threads 1 --frame box --out runs/ship2_box
annotate train fit $H $H $H $Y --other-convention $Y --val cache/300w_afw.npz --arch cnn8 --width 24 \
  --loss l1 --epochs 100 --threads 2 --frame shape --occlude 0.3 --weight-decay 0.05 --out runs/ship3_shape24
annotate train export runs/ship2_box runs/ship3_shape24 --no-flip
annotate train evaluate annotator/weights/landmarks68.pt "$DATA/ytf/test" "$DATA/300w/afw" --out reports/shipped

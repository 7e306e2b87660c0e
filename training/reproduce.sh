#!/usr/bin/env bash
# The exact commands that produced annotator/weights/landmarks68.pt (2 cores, no GPU, about 70 minutes).
# Usage: training/reproduce.sh [DATA_DIR]   (default ../shared/data). 300w/afw is held out for evaluation.
set -euo pipefail
DATA=${1:-../shared/data}
for set in 300w/afw 300w/helen_trainset ytf/train ytf/test; do
  annotate train prepare "$DATA/$set" --out "cache/${set//\//_}.npz" --size 62 -j 2
done
H=cache/300w_helen_trainset.npz Y=cache/ytf_train.npz
# Stage 1 (box frame) and stage 2 (shape frame) are independent: one thread each, side by side.
# HELEN is given three times (oversampled); YTF trains a second head (its jaw and brows differ).
annotate train fit $H $H $H $Y --other-convention $Y --val cache/300w_afw.npz --arch cnn8 --width 16 \
  --loss l1 --epochs 120 --threads 1 --frame box --out runs/ship2_box &
annotate train fit $H $H $H $Y --other-convention $Y --val cache/300w_afw.npz --arch cnn8 --width 32 \
  --loss l1 --epochs 100 --threads 1 --frame shape --occlude 0.3 --weight-decay 0.05 --out runs/ship2_shape &
wait
annotate train export runs/ship2_box runs/ship2_shape --no-flip
annotate train evaluate annotator/weights/landmarks68.pt "$DATA/ytf/test" "$DATA/300w/afw" --out reports/shipped

#!/usr/bin/env bash
# The exact commands that produced annotator/weights/landmarks68.pt (2 cores, no GPU; see annotator/weights/README.md).
# Usage: training/reproduce.sh [DATA_DIR]   (default ../shared/data).
# Held out from training: 300w/afw, the fixed 15% slice of HELEN and LFPW photos (prepare --part holdout), ytf/test.
set -euo pipefail
DATA=${1:-../shared/data}
SIZES="--size 62"
for set in helen_trainset lfpw_trainset; do
  for part in train holdout; do
    annotate train prepare "$DATA/300w/$set" --part $part --out "cache/${set%_trainset}_${part}_{size}.npz" $SIZES -j 2
  done
done
annotate train prepare "$DATA/300w/afw" --out 'cache/afw_{size}.npz' $SIZES -j 2
annotate train prepare "$DATA/ytf/train" --out 'cache/ytf_train_{size}.npz' $SIZES -j 2
C=cache
# Stage 1 (box frame, 62 px): HELEN and LFPW twice (oversampled), YTF trains a second head (its jaw and brows differ).
# Stage 2 (shape frame, 62 px): the face re-cropped upright on stage 1's points; trained on ground-truth alignment
# with jitter, same data. The stages are independent: run them side by side, one thread each.
# --threads is part of what makes a run repeatable: keep it.
annotate train fit $C/helen_train_62.npz $C/helen_train_62.npz $C/lfpw_train_62.npz $C/lfpw_train_62.npz \
  $C/ytf_train_62.npz --other-convention $C/ytf_train_62.npz \
  --val $C/helen_holdout_62.npz --val $C/lfpw_holdout_62.npz --val $C/afw_62.npz \
  --arch cnn8 --width 16 --loss l1 --epochs 120 --threads 1 --frame box --out runs/s1_box62 &
annotate train fit $C/helen_train_62.npz $C/helen_train_62.npz $C/lfpw_train_62.npz $C/lfpw_train_62.npz \
  $C/ytf_train_62.npz --other-convention $C/ytf_train_62.npz \
  --val $C/helen_holdout_62.npz --val $C/lfpw_holdout_62.npz --val $C/afw_62.npz \
  --arch cnn8 --width 24 --loss l1 --epochs 200 --threads 1 --frame shape --occlude 0.5 --weight-decay 0.1 \
  --out runs/s2_shape62_e200r &
wait
annotate train export runs/s1_box62 runs/s2_shape62_e200r --dest annotator/weights/landmarks68.pt
# The per-face expected error is fitted on the held-out HELEN and LFPW slices (AFW and ytf/test stay unseen).
annotate train calibrate annotator/weights/landmarks68.pt --holdout-of "$DATA/300w/helen_trainset" \
  --holdout-of "$DATA/300w/lfpw_trainset" -j 2
annotate train evaluate annotator/weights/landmarks68.pt "$DATA/ytf/test" "$DATA/300w/afw" \
  --holdout-of "$DATA/300w/helen_trainset" --holdout-of "$DATA/300w/lfpw_trainset" \
  --train-dlib "$DATA/300w/helen_trainset" --train-dlib "$DATA/300w/lfpw_trainset" --out reports/shipped -j 2

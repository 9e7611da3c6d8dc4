#!/usr/bin/env bash
# The vipdl demo on the built-in synthetic videos, on CPU, end to end:
#   1. set up .venv            2. generate synthetic videos (Cityscapes-VPS / KITTI-STEP / DVPS layouts)
#   3. convert them to TFDS    4. train the small ViP-DeepLab (configs/synthetic.py, ~10 min on 2 cores)
#   5. score VPQ and STQ on held-out videos with the bundled evaluation
#   6. predict one held-out video and write an overlay GIF with tracked ids
# Everything lands in $DEMO_OUT (default demo_out/). Rerunning resumes training from its checkpoint.
# Extra arguments are passed to the trainer, e.g. `bash scripts/demo.sh --config.train.num_steps=200`.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
OUT="${DEMO_OUT:-demo_out}"
PY=.venv/bin/python
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
mkdir -p "$OUT"

RAW="$OUT/synthetic_raw"
TFDS="$OUT/tfds"
WORK="$OUT/workdir"

# The dataset is the one configs/synthetic.py describes (sizes, counts, seed, object scale), so
# the prepared copy holds exactly the videos an in-memory run of that config trains on.
read -r HEIGHT WIDTH FRAMES STRIDE TRAIN_VIDEOS VAL_VIDEOS OBJECT_SCALE SEED < <($PY -c '
from configs import synthetic
s = synthetic.get_config().data.synthetic
print(s.height, s.width, s.num_frames, s.annotation_stride, s.num_train_videos, s.num_eval_videos,
      s.object_scale, s.seed)')
SYNTH_ARGS=(--train-videos "$TRAIN_VIDEOS" --val-videos "$VAL_VIDEOS" --test-videos 0
  --height "$HEIGHT" --width "$WIDTH" --frames "$FRAMES" --annotation-stride "$STRIDE"
  --object-scale "$OBJECT_SCALE" --seed "$SEED")

echo "== 1/5 synthetic videos -> $RAW"
# Regenerate when the config's dataset changed since the last run.
if [ ! -f "$RAW/.complete" ] || [ "$(cat "$RAW/.complete")" != "${SYNTH_ARGS[*]}" ]; then
  $PY scripts/make_synthetic.py --out "$RAW" "${SYNTH_ARGS[@]}" --overwrite
  echo "${SYNTH_ARGS[*]}" > "$RAW/.complete"
  rm -rf "$TFDS"
  if [ -d "$WORK" ]; then  # Trained on other videos: keep it aside, start a new run.
    rm -rf "$WORK.old"; mv "$WORK" "$WORK.old"
    echo "   (the dataset changed: previous run moved to $WORK.old)"
  fi
else
  echo "   (already generated)"
fi

echo "== 2/5 convert to TFDS / ArrayRecord -> $TFDS"
if $PY -c 'import sys; from vipdl.data import builders
sys.exit(0 if builders.is_prepared("synthetic", sys.argv[1]) else 1)' "$TFDS"; then
  echo "   (already prepared)"
else
  $PY scripts/prepare_data.py --dataset synthetic --manual_dir "$RAW" --data_dir "$TFDS"
fi

echo "== 3/5 train configs/synthetic.py -> $WORK"
$PY scripts/train.py --config=configs/synthetic.py --workdir="$WORK" \
    --config.data.data_dir="$TFDS" "$@"

echo "== 4/5 evaluate VPQ / STQ on the held-out videos"
$PY scripts/evaluate.py --workdir "$WORK" --split val --out "$OUT/eval.json" \
    --pred-dir "$OUT/eval_predictions" --overwrite --no-progress

echo "== 5/5 predict one held-out video -> $OUT/overlay.gif"
FIRST_VIDEO_DIR="$OUT/one_video"
rm -rf "$FIRST_VIDEO_DIR"; mkdir -p "$FIRST_VIDEO_DIR"
first=$(ls "$RAW/val/img" | head -1 | cut -d_ -f1)
cp "$RAW"/val/img/"${first}"_*_leftImg8bit.png "$FIRST_VIDEO_DIR/"
$PY scripts/predict_video.py --workdir "$WORK" --input "$FIRST_VIDEO_DIR" \
    --output "$OUT/prediction" --overlay "$OUT/overlay.gif" --masks --vps --sheet 6 \
    --overwrite --fps 3

cat <<MSG

== done
  workdir (checkpoints, config.json, TensorBoard events): $WORK
  TensorBoard:      .venv/bin/tensorboard --logdir $WORK
  metrics (JSON):   $OUT/eval.json
  overlay:          $OUT/overlay.gif (frames as one picture: $OUT/prediction/overlay_frames.png)
  per-track masks:  $OUT/prediction/masks

Held-out synthetic videos, bundled evaluation (VPQ per window k, then STQ):
MSG
$PY - "$OUT/eval.json" <<'PYEOF'
import json, sys
from vipdl.evaluation import report
r = json.load(open(sys.argv[1]))
print(report.vpq_report(r))
s = r["STQ"]
print(f"STQ = {100 * s['STQ']:.2f}  AQ = {100 * s['AQ']:.2f}  SQ = {100 * s['SQ']:.2f}")
PYEOF

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

echo "== 1/5 synthetic videos -> $RAW"
if [ ! -f "$RAW/.complete" ]; then
  $PY scripts/make_synthetic.py --out "$RAW" --train-videos 96 --val-videos 8 --test-videos 0 \
      --height 128 --width 256 --frames 6 --seed 0 --overwrite
  touch "$RAW/.complete"
else
  echo "   (already generated)"
fi

echo "== 2/5 convert to TFDS / ArrayRecord -> $TFDS"
$PY scripts/prepare_data.py --dataset synthetic --manual_dir "$RAW" --data_dir "$TFDS" || {
  echo "   (already prepared)"; }

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
    --output "$OUT/prediction" --overlay "$OUT/overlay.gif" --masks --vps --overwrite --fps 3

cat <<MSG

== done
  workdir (checkpoints, config.json, TensorBoard events): $WORK
  TensorBoard:      .venv/bin/tensorboard --logdir $WORK
  metrics (JSON):   $OUT/eval.json
  overlay:          $OUT/overlay.gif
  per-track masks:  $OUT/prediction
MSG
$PY - "$OUT/eval.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({k: v for k, v in r.items() if not isinstance(v, (dict, list))}, indent=2))
PYEOF

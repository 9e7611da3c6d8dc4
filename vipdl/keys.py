"""String keys of the dicts that flow through vipdl.

Examples (one decoded record of a prepared dataset), batches (after the input
pipeline) and predictions (model outputs) are plain dicts keyed by these
constants, so every module agrees on names without importing each other.
"""

# --- Decoded dataset example: one annotated pair (t, t+1) --------------------
IMAGE = "image"  # uint8 [height, width, 3], frame t.
NEXT_IMAGE = "next_image"  # uint8 [height, width, 3], frame t+1.
PANOPTIC = "panoptic"  # int32 [height, width], semantic * label_divisor + instance.
NEXT_PANOPTIC = "next_panoptic"  # int32 [height, width], label of frame t+1.
DEPTH = "depth"  # float32 [height, width], metres; 0 = no ground truth.
SEQUENCE_ID = "sequence_id"  # str, identifies the video.
FRAME_INDEX = "frame_index"  # int, annotated-frame index of frame t in its video.
NEXT_FRAME_INDEX = "next_frame_index"  # int, index of frame t+1.
# Custom datasets only: raw video frame numbers of t and t+1 (their real distance is the
# difference; the frames in between are not labelled).
RAW_FRAME = "raw_frame"  # int.
NEXT_RAW_FRAME = "next_raw_frame"  # int.

# --- Training / evaluation batch (input pipeline output) ---------------------
# Images of the pair concatenated on channels: float32 [batch, height, width, 6],
# raw 0..255 values (padding = 127.5), frame t in channels 0-2, t+1 in 3-5.
# Single-frame (Panoptic-DeepLab) batches have 3 channels.
GT_IMAGE = "image"
GT_PANOPTIC = "panoptic"  # int32 [batch, height, width], frame t (after augmentation).
GT_NEXT_PANOPTIC = "next_panoptic"  # int32 [batch, height, width], frame t+1.
GT_SEMANTIC = "semantic"  # int32 [batch, height, width]; ignore_label on void/padding.
GT_SEMANTIC_WEIGHTS = "semantic_weights"  # float32 [batch, height, width].
GT_CENTER_HEATMAP = "center_heatmap"  # float32 [batch, height, width].
GT_CENTER_WEIGHTS = "center_weights"  # float32 [batch, height, width].
GT_OFFSET = "offset"  # float32 [batch, height, width, 2], (dy, dx).
GT_OFFSET_WEIGHTS = "offset_weights"  # float32 [batch, height, width].
GT_NEXT_OFFSET = "next_offset"  # float32 [batch, height, width, 2], t+1 pixels -> t centers.
GT_NEXT_OFFSET_WEIGHTS = "next_offset_weights"  # float32 [batch, height, width].
GT_DEPTH = "depth"  # float32 [batch, height, width], metres, 0 = ignore.

# --- Model predictions (all at input resolution) ------------------------------
PRED_SEMANTIC_LOGITS = "semantic_logits"  # float32 [batch, height, width, num_classes].
PRED_CENTER_HEATMAP = "center_heatmap"  # float32 [batch, height, width] (no sigmoid).
PRED_OFFSET_MAP = "offset_map"  # float32 [batch, height, width, 2], (dy, dx).
PRED_NEXT_OFFSET_MAP = "next_offset_map"  # float32 [batch, height, width, 2].
PRED_DEPTH = "depth"  # float32 [batch, height, width], metres.

# --- Loss names (per-example vectors [batch]) ----------------------------------
LOSS_TOTAL = "total"
LOSS_SEMANTIC = "semantic"
LOSS_CENTER = "center"
LOSS_OFFSET = "offset"
LOSS_NEXT_OFFSET = "next_offset"
LOSS_DEPTH = "depth"

"""IoU tracker for per-frame panoptic predictions: the tracking-free baseline (docs/postprocessing.md#iou-tracker).

Run Panoptic-DeepLab (or ViP-DeepLab's frame-t output) frame by frame and give instances
track ids by mask IoU with the previous frames, as deeplab2's `tracker/iou_tracker.py` does.
Comparing VPQ/STQ of this baseline with `VideoStitcher` shows what the next-frame offset
branch buys.

Per thing class: Hungarian assignment (`scipy.optimize.linear_sum_assignment` on -IoU)
between the current instance masks and the last masks of the class's active tracks; a match
needs IoU > `iou_threshold`. Matched tracks take the current mask; unmatched instances start
new tracks (one global id counter from 1); unmatched tracks age by one frame and are deleted
once inactive for more than `max_inactive_frames` frames. Stuff, crowd and void pass through.

Usage::

    tracker = IoUTracker(thing_ids=(11, 13), label_divisor=1000)
    tracked = [tracker.update(p) for p in per_frame_panoptic]  # int [h, w] each
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import optimize

from vipdl.postprocess.stitching import TrackIdOverflowError


class IoUTracker:
    """Stateful numpy IoU tracker; call `update` once per frame, `reset` between videos.

    Args:
      thing_ids: classes to track.
      label_divisor: D of `class * D + instance`; track ids stay < D.
      iou_threshold: a match needs IoU strictly greater than this.
      max_inactive_frames: a track unmatched for more than this many frames is deleted.
    """

    def __init__(
        self,
        *,
        thing_ids: Sequence[int],
        label_divisor: int,
        iou_threshold: float = 0.3,
        max_inactive_frames: int = 10,
    ):
        if label_divisor < 2:
            raise ValueError(f"label_divisor must be >= 2, got {label_divisor}")
        if not 0.0 <= iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
        if max_inactive_frames < 0:
            raise ValueError(f"max_inactive_frames must be >= 0, got {max_inactive_frames}")
        self.thing_ids = tuple(sorted({int(t) for t in thing_ids}))
        self.label_divisor = int(label_divisor)
        self.iou_threshold = float(iou_threshold)
        self.max_inactive_frames = int(max_inactive_frames)
        self.reset()

    def reset(self) -> None:
        # Per class: {track id: (last mask as flat pixel indices, frames since last update)}.
        self._tracks: dict[int, dict[int, tuple[np.ndarray, int]]] = {c: {} for c in self.thing_ids}
        self._next_id = 1
        self._shape: tuple[int, ...] | None = None

    @property
    def active_tracks(self) -> dict[int, list[int]]:
        """Track ids currently kept, per class."""
        return {c: sorted(t) for c, t in self._tracks.items()}

    def update(self, panoptic: np.ndarray) -> np.ndarray:
        """Tracks one frame.

        Args:
          panoptic: int [height, width] per-frame panoptic prediction.

        Returns:
          int32 [height, width] with instance ids replaced by track ids.

        Raises:
          TrackIdOverflowError: if a new track id would reach the label divisor (the state is
            left as before the call).
        """
        panoptic = np.asarray(panoptic)
        if panoptic.ndim != 2:
            raise ValueError(f"panoptic must be [height, width], got shape {panoptic.shape}")
        if self._shape is not None and panoptic.shape != self._shape:
            raise ValueError(
                f"frame size changed from {self._shape} to {panoptic.shape}; call reset() "
                "between videos"
            )
        d = self.label_divisor
        labels, inverse = np.unique(panoptic.reshape(-1).astype(np.int64), return_inverse=True)
        inverse = inverse.reshape(-1)
        areas = np.bincount(inverse, minlength=len(labels))
        is_instance = (labels % d > 0) & np.isin(labels // d, self.thing_ids)
        # Pixel lists (sorted flat indices) of the instances only: one stable sort of their
        # pixels instead of one full-image scan per instance.
        instance_pixels = np.flatnonzero(is_instance[inverse])
        order = instance_pixels[np.argsort(inverse[instance_pixels], kind="stable")]
        bounds = np.searchsorted(inverse[order], np.arange(len(labels) + 1))

        new_tracks = {c: dict(t) for c, t in self._tracks.items()}
        mapping: dict[int, int] = {}
        next_id = self._next_id
        for cls in self.thing_ids:
            instances = np.flatnonzero(is_instance & (labels // d == cls))
            tracks = new_tracks[cls]
            track_ids = list(tracks)
            iou = np.zeros((len(instances), len(track_ids)))
            for j, tid in enumerate(track_ids):
                # Intersections of this track's last mask with every current label at once.
                inter = np.bincount(inverse[tracks[tid][0]], minlength=len(labels))[instances]
                iou[:, j] = inter / (areas[instances] + len(tracks[tid][0]) - inter)
            matched_instances, matched_tracks = set(), set()
            if iou.size:
                rows, cols = optimize.linear_sum_assignment(-iou)
                for i, j in zip(rows.tolist(), cols.tolist()):
                    if iou[i, j] > self.iou_threshold:
                        matched_instances.add(i)
                        matched_tracks.add(j)
                        k = instances[i]
                        tracks[track_ids[j]] = (order[bounds[k] : bounds[k + 1]], 0)
                        mapping[int(labels[k])] = cls * d + track_ids[j]
            for i, k in enumerate(instances.tolist()):
                if i in matched_instances:
                    continue
                if next_id >= d:
                    raise TrackIdOverflowError(
                        f"new track id {next_id} would reach label_divisor={d}; use a larger "
                        "label divisor or split the video"
                    )
                tracks[next_id] = (order[bounds[k] : bounds[k + 1]], 0)
                mapping[int(labels[k])] = cls * d + next_id
                next_id += 1
            for j, tid in enumerate(track_ids):
                if j in matched_tracks:
                    continue
                mask, inactive = tracks[tid]
                if inactive + 1 > self.max_inactive_frames:
                    del tracks[tid]
                else:
                    tracks[tid] = (mask, inactive + 1)

        self._tracks, self._next_id, self._shape = new_tracks, next_id, panoptic.shape
        new_labels = np.array([mapping.get(int(v), int(v)) for v in labels], np.int64)
        return new_labels[inverse].reshape(panoptic.shape).astype(np.int32)

"""IoU tracker for per-frame panoptic predictions: the tracking-free baseline.

Run Panoptic-DeepLab (or ViP-DeepLab's frame-t output) frame by frame and give instances
track ids by mask IoU with the previous frames, as deeplab2's `tracker/iou_tracker.py` does.
Comparing VPQ/STQ of this baseline with `VideoStitcher` shows what the next-frame offset
branch buys.

Per thing class: Hungarian assignment (`scipy.optimize.linear_sum_assignment` on -IoU)
between the current instance masks and the last masks of the class's active tracks; a match
needs IoU > `iou_threshold`. Matched tracks take the current mask; unmatched instances start
new tracks (one global id counter from 1); unmatched tracks age by one frame and are deleted
once inactive for more than `max_inactive_frames` frames. Stuff, crowd and void pass through.

`update_wide` returns wide ids (`class << 32 | track`, `vipdl.postprocess.labels`), so a video
may have any number of tracks; `update` returns `class * D + track` and raises
`TrackIdOverflowError` where a track id reaches D. The IoUs of all of a frame's instances with
all kept tracks come from one bincount of (track, segment) pairs over the tracks' pixels.

Usage::

    tracker = IoUTracker(thing_ids=(11, 13), label_divisor=1000)
    tracked = [tracker.update(p) for p in per_frame_panoptic]  # int [h, w] each
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vipdl.postprocess import labels
from vipdl.postprocess.labels import TRACK_BITS, TrackIdOverflowError

__all__ = ["IoUTracker", "TrackIdOverflowError"]

_STATE_VERSION = 1


class IoUTracker:
    """Stateful numpy IoU tracker; call `update` / `update_wide` once per frame, `reset`
    between videos.

    Args:
      thing_ids: classes to track.
      label_divisor: D of the per-frame `class * D + instance` maps.
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

    @property
    def num_tracks(self) -> int:
        """Track ids handed out so far."""
        return self._next_id - 1

    def update(self, panoptic: np.ndarray) -> np.ndarray:
        """Tracks one frame.

        Args:
          panoptic: int [height, width] per-frame panoptic prediction.

        Returns:
          int32 [height, width] with instance ids replaced by track ids.

        Raises:
          TrackIdOverflowError: if a track id reaches the label divisor (the state is left as
            before the call; `update_wide` has no such limit).
        """
        index, out, commit = self._step(panoptic)
        narrow = labels.wide_to_panoptic(out, self.label_divisor, what="IoU tracker frame")
        commit()
        return narrow[index]

    def update_wide(self, panoptic: np.ndarray) -> np.ndarray:
        """`update` with wide ids: int64 [height, width] `class << 32 | track`."""
        index, segments = self.update_segments(panoptic)
        return segments[index]

    def update_segments(self, panoptic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`update_wide` as a segment table: (index int32 [h, w], wide ids int64 [k])."""
        index, out, commit = self._step(panoptic)
        commit()
        return index, out

    def _step(self, panoptic: np.ndarray):
        panoptic = np.asarray(panoptic)
        if panoptic.ndim != 2:
            raise ValueError(f"panoptic must be [height, width], got shape {panoptic.shape}")
        if self._shape is not None and panoptic.shape != self._shape:
            raise ValueError(
                f"frame size changed from {self._shape} to {panoptic.shape}; call reset() "
                "between videos"
            )
        d = self.label_divisor
        values, index, areas = labels.dense(panoptic, what="panoptic")
        semantic, instance = values // d, values % d
        out = (semantic << TRACK_BITS) | instance
        is_instance = (instance > 0) & np.isin(semantic, self.thing_ids)
        instances_all = np.flatnonzero(is_instance)
        pixels = dict(zip(instances_all.tolist(), labels.segment_pixels(index, instances_all)))

        # IoU of every kept track with every segment of the frame, one bincount.
        kept = [(cls, tid, mask) for cls in self.thing_ids
                for tid, (mask, _) in self._tracks[cls].items()]
        inter = labels.intersections([m for _, _, m in kept], index, len(values))
        row = {(cls, tid): r for r, (cls, tid, _) in enumerate(kept)}

        new_tracks = {c: dict(t) for c, t in self._tracks.items()}
        next_id = self._next_id
        for cls in self.thing_ids:
            instances = np.flatnonzero(is_instance & (semantic == cls))
            tracks = new_tracks[cls]
            track_ids = list(tracks)
            rows = np.array([row[(cls, t)] for t in track_ids], np.int64)
            if len(rows):
                shared = inter[rows][:, instances].T  # [instances, tracks]
                sizes = np.array([len(tracks[t][0]) for t in track_ids], np.int64)
                iou = shared / (areas[instances][:, None] + sizes[None, :] - shared)
            else:
                iou = np.zeros((len(instances), 0))
            matched_instances, matched_tracks = set(), set()
            if iou.size:
                from scipy import optimize  # Here: importing scipy costs start-up time.

                rows_i, cols = optimize.linear_sum_assignment(-iou)
                for i, j in zip(rows_i.tolist(), cols.tolist()):
                    if iou[i, j] > self.iou_threshold:
                        matched_instances.add(i)
                        matched_tracks.add(j)
                        k = int(instances[i])
                        tracks[track_ids[j]] = (pixels[k], 0)
                        out[k] = (cls << TRACK_BITS) | track_ids[j]
            for i, k in enumerate(instances.tolist()):
                if i in matched_instances:
                    continue
                tracks[next_id] = (pixels[k], 0)
                out[k] = (cls << TRACK_BITS) | next_id
                next_id += 1
            for j, tid in enumerate(track_ids):
                if j in matched_tracks:
                    continue
                mask, inactive = tracks[tid]
                if inactive + 1 > self.max_inactive_frames:
                    del tracks[tid]
                else:
                    tracks[tid] = (mask, inactive + 1)

        def commit():
            self._tracks, self._next_id, self._shape = new_tracks, next_id, panoptic.shape

        return index, out, commit

    # --- state ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """The tracker's state after the last frame, as numpy arrays (for `np.savez`)."""
        return self.snapshot()()

    def snapshot(self):
        """A `() -> state_dict()` of the current state, O(1) now (see
        `VideoStitcher.snapshot`)."""
        captured = (self._tracks, self._next_id, self._shape)
        return lambda: self._state_of(*captured)

    def _state_of(self, tracks, next_id, shape) -> dict[str, np.ndarray]:
        rows = [(cls, tid, mask, inactive) for cls in self.thing_ids
                for tid, (mask, inactive) in sorted(tracks[cls].items())]
        return {
            "version": np.int64(_STATE_VERSION),
            "label_divisor": np.int64(self.label_divisor),
            "thing_ids": np.array(self.thing_ids, np.int64),
            "next_id": np.int64(next_id),
            "shape": np.array(shape if shape is not None else (-1, -1), np.int64),
            "track_class": np.array([r[0] for r in rows], np.int64),
            "track_id": np.array([r[1] for r in rows], np.int64),
            "track_inactive": np.array([r[3] for r in rows], np.int64),
            "track_sizes": np.array([len(r[2]) for r in rows], np.int64),
            "track_pixels": (np.concatenate([r[2] for r in rows]) if rows
                             else np.zeros(0, np.int32)),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restores `state_dict()` output; the next update continues that video."""
        if int(state["version"]) != _STATE_VERSION:
            raise ValueError(f"IoU tracker state version {int(state['version'])} is not supported")
        saved = (int(state["label_divisor"]), tuple(int(t) for t in state["thing_ids"]))
        if saved != (self.label_divisor, self.thing_ids):
            raise ValueError(
                f"IoU tracker state was saved with (label_divisor, thing_ids) = {saved}, this "
                f"tracker has {(self.label_divisor, self.thing_ids)}"
            )
        self.reset()
        self._next_id = int(state["next_id"])
        shape = tuple(int(v) for v in state["shape"])
        self._shape = None if shape == (-1, -1) else shape
        sizes = np.asarray(state["track_sizes"], np.int64)
        pixels = np.split(np.asarray(state["track_pixels"], np.int32), np.cumsum(sizes)[:-1])
        for cls, tid, inactive, pix in zip(state["track_class"].tolist(),
                                           state["track_id"].tolist(),
                                           state["track_inactive"].tolist(), pixels):
            self._tracks[int(cls)][int(tid)] = (pix, int(inactive))

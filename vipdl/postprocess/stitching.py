"""Sequence-level ViP-DeepLab stitching: one globally tracked panoptic map per frame.

A video of n frames gives n - 1 pairs (t, t+1). For each pair the two-frame post-processing
(`vipdl.postprocess.two_frame`) yields frame t (`panoptic_t`, from the H x 2W canvas), frame
t+1 with the same ids (`concat_next_t1`) and frame t+1 post-processed on its own
(`next_panoptic_t1`). `VideoStitcher.update_wide` consumes one pair at a time and returns the
tracked map of frame t+1 as wide ids `class << 32 | track` (`vipdl.postprocess.labels`), so a
video may have any number of tracks; `update` returns the same map as `class * D + track` and
raises `TrackIdOverflowError` (changing nothing) when a track id reaches the label divisor D.
Frame 0 comes from `first(panoptic_0)` / `first_wide` (call it with the first pair's
`panoptic_t`), or, if skipped, from `first_frame` / `first_tracks` after the first update.
State is the previous output frame plus a bounded memory of recently seen tracks, so memory is
constant in the video length; `state_dict` / `load_state_dict` save and restore it (resuming
a run gives the same ids as an uninterrupted one).

Per frame the work is a few linear passes over the pixels (dense label tables, one bincount of
paired labels per comparison) plus work proportional to the number of segments; no step loops
over segments with a pass over the frame (docs/postprocessing.md#cost-per-frame).

Usage::

    stitcher = VideoStitcher(thing_ids=(11, 12, 13), label_divisor=1000, ignore_label=32)
    for t, (p_t, concat_t1, next_t1) in enumerate(pair_outputs):  # numpy int [h, w] each
        if t == 0:
            write(0, stitcher.first(p_t))
        write(t + 1, stitcher.update(p_t, concat_t1, next_t1))

`mode="clean"` (default) does what the reference notebook intends, deterministically:

1. The pair stitcher (`two_frame.stitch_pair`) gives frame t+1 ids in frame t's canvas
   numbering, or `id + D // 2` for new instances.
2. Thing segments of `panoptic_t` are matched to the previous output frame (the same frame,
   but from the previous pair's standalone pass): same class, largest overlap, one-to-one
   (greedy by decreasing overlap), all applied at once to a copy.
3. Segments of frame t+1 whose canvas id was matched inherit that global id. The others are
   new: with `memory_frames > 0` they may first re-identify a track of the same class that is
   missing from the current frame and was last seen at most `memory_frames` frames ago, if
   the mask IoU with that track's last mask is >= `reid_iou` (greedy by decreasing IoU, one
   track per segment). What remains gets consecutive ids from a global counter starting at 1.
4. Stuff, crowd (thing class with instance 0) and void are never touched.

Why not copy the notebook (`ViP_DeepLab_Demo.ipynb`, class `ViPDeepLab`)? It remaps ids in
place over *all* (last, current) intersections sorted by ascending pixel count, which (a) lets
the smallest overlap win, (b) can re-map already remapped pixels when a global id equals a
raw id numerically, and (c) maps stuff and void too, so a stuff class that was void in the
previous standalone pass can void the same class in the next frame. `mode="reference"`
reproduces it literally (with a stable sort where the notebook's order is undefined), for
comparison; it runs on wide ids, which keeps the notebook's numbering exactly while ids are
below D and continues past D where the notebook's ids would overflow into the class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from vipdl.postprocess import labels, two_frame
from vipdl.postprocess.labels import TRACK_BITS, TRACK_MASK, TrackIdOverflowError

__all__ = ["TrackIdOverflowError", "VideoStitcher"]

_STATE_VERSION = 1


class VideoStitcher:
    """Streams a video pair by pair and returns globally tracked panoptic maps (numpy, host).

    Args:
      thing_ids: classes that carry track ids; None tracks every segment with instance > 0
        (post-processed maps only give non-zero instance ids to thing classes).
      label_divisor: D of the per-frame `class * D + instance` maps.
      ignore_label: void class (void = ignore_label * D); only validated, void is never
        touched.
      memory_frames: how many frames a lost track can be re-identified after it was last seen
        (clean mode only); 0 disables re-identification.
      reid_iou: minimum mask IoU between a new segment and a lost track's last mask.
      mode: "clean" (default, see module docstring) or "reference" (the notebook literally).
    """

    def __init__(
        self,
        *,
        thing_ids: Sequence[int] | None = None,
        label_divisor: int,
        ignore_label: int | None = None,
        memory_frames: int = 0,
        reid_iou: float = 0.3,
        mode: Literal["clean", "reference"] = "clean",
    ):
        if mode not in ("clean", "reference"):
            raise ValueError(f"mode must be 'clean' or 'reference', got {mode!r}")
        if label_divisor < 2:
            raise ValueError(f"label_divisor must be >= 2, got {label_divisor}")
        if ignore_label is not None and not 0 <= ignore_label < label_divisor:
            raise ValueError(f"ignore_label {ignore_label} must be in [0, {label_divisor})")
        if memory_frames < 0:
            raise ValueError(f"memory_frames must be >= 0, got {memory_frames}")
        if mode == "reference" and memory_frames:
            raise ValueError("memory_frames (re-identification) is only available in clean mode")
        if not 0.0 < reid_iou <= 1.0:
            raise ValueError(f"reid_iou must be in (0, 1], got {reid_iou}")
        self.thing_ids = None if thing_ids is None else frozenset(int(t) for t in thing_ids)
        self._things = None if thing_ids is None else np.array(sorted(self.thing_ids), np.int64)
        self.label_divisor = int(label_divisor)
        self.ignore_label = ignore_label
        self.memory_frames = int(memory_frames)
        self.reid_iou = float(reid_iou)
        self.mode = mode
        self.reset()

    def reset(self) -> None:
        """Forgets the current video; the next update starts a new one."""
        # The previous output frame as a dense map + its wide labels (None before frame 1).
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._shape: tuple[int, ...] | None = None
        self._first: np.ndarray | None = None  # wide map of frame 0
        self._first_table: tuple[np.ndarray, np.ndarray] | None = None
        self._next_id = 1  # clean mode: next fresh track id
        self._max_id = 0  # reference mode: the notebook's max_instance_id
        self._frame = -1  # index of the last output frame
        # clean mode memory: wide label -> (last frame, flat pixel positions of its last mask)
        self._seen: dict[int, tuple[int, np.ndarray]] = {}

    @property
    def first_frame(self) -> np.ndarray | None:
        """Tracked map of frame 0 as `class * D + track` (int32), after `first` or the first
        update; None after `load_state_dict`."""
        if self._first is None:
            return None
        return labels.wide_to_panoptic(self._first, self.label_divisor, what="frame 0")

    @property
    def first_tracks(self) -> np.ndarray | None:
        """Tracked map of frame 0 as wide ids (int64), like `first_frame`."""
        return self._first

    @property
    def num_frames(self) -> int:
        """Number of tracked frames produced so far (first frame included)."""
        return self._frame + 1

    @property
    def num_tracks(self) -> int:
        """Track ids handed out so far (clean mode)."""
        return self._next_id - 1

    @property
    def max_track_id(self) -> int:
        """Largest track id handed out so far (reference mode's `max_instance_id`)."""
        return self._max_id if self.mode == "reference" else self._next_id - 1

    # --- public steps -----------------------------------------------------------------------

    def first(self, panoptic_0: np.ndarray) -> np.ndarray:
        """Starts a video: returns the tracked map of frame 0 as `class * D + track` (int32).

        Args:
          panoptic_0: int [h, w], frame 0 from the first pair's two-frame canvas (the same
            map that is then passed as `panoptic_t` to the first update).

        Returns:
          Fresh track ids in order of first appearance (clean mode), or the map unchanged
          (reference mode, as the notebook).
        """
        out = self.first_wide(panoptic_0)
        return labels.wide_to_panoptic(out, self.label_divisor, what="frame 0")

    def first_wide(self, panoptic_0: np.ndarray) -> np.ndarray:
        """`first` with wide ids (int64 `class << 32 | track`)."""
        if self._frame >= 0:
            raise ValueError("first() starts a video; call reset() before reusing the stitcher")
        (pv, pi, pa), = self._check_maps(panoptic_0=panoptic_0)
        if self.mode == "reference":
            self._first_table = (pi, labels.to_wide(pv, self.label_divisor))
            self._first, self._frame, self._shape = self._first_table[1][pi], 0, pi.shape
            return self._first
        out_labels, next_id, seen = self._start_clean(pv, pi, pa)
        self._first_table = (pi, out_labels)
        self._first = out_labels[pi]
        self._prev, self._next_id, self._seen, self._frame = (pi, out_labels), next_id, seen, 0
        self._shape = pi.shape
        return self._first

    def update(
        self,
        panoptic_t: np.ndarray,
        concat_next_t1: np.ndarray,
        next_panoptic_t1: np.ndarray,
    ) -> np.ndarray:
        """Consumes the outputs of pair (t, t+1) and returns the tracked map of frame t+1.

        Args:
          panoptic_t: int [h, w], frame t from the two-frame canvas.
          concat_next_t1: int [h, w], frame t+1 from the same canvas (ids shared with frame t).
          next_panoptic_t1: int [h, w], frame t+1 post-processed on its own (raw ids).

        Returns:
          int32 [h, w], frame t+1 as `class * D + track`.

        Raises:
          ValueError: on bad shapes (nothing is updated).
          TrackIdOverflowError: if a track id reaches the label divisor (nothing is updated;
            `update_wide` has no such limit).
        """
        index, out_labels, commit = self._step(panoptic_t, concat_next_t1, next_panoptic_t1)
        narrow = labels.wide_to_panoptic(out_labels, self.label_divisor,
                                         what=f"frame {self._frame + 1}")
        commit()
        return narrow[index]

    def update_wide(
        self,
        panoptic_t: np.ndarray,
        concat_next_t1: np.ndarray,
        next_panoptic_t1: np.ndarray,
    ) -> np.ndarray:
        """`update` with wide ids: int64 [h, w] `class << 32 | track`, no limit on tracks."""
        index, segments = self.update_segments(panoptic_t, concat_next_t1, next_panoptic_t1)
        return segments[index]

    def update_segments(
        self,
        panoptic_t: np.ndarray,
        concat_next_t1: np.ndarray,
        next_panoptic_t1: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`update_wide` as a segment table: (index int32 [h, w], wide ids int64 [k]) with
        `ids[index]` the tracked map (no per-pixel relabelling pass)."""
        index, out_labels, commit = self._step(panoptic_t, concat_next_t1, next_panoptic_t1)
        commit()
        return index, out_labels

    def first_segments(self, panoptic_0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`first_wide` as a segment table (index int32 [h, w], wide ids int64 [k])."""
        self.first_wide(panoptic_0)
        return self._first_table

    # --- state ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """The stitcher's state after the last frame, as numpy arrays (for `np.savez`)."""
        return self.snapshot()()

    def snapshot(self):
        """A `() -> state_dict()` of the current state that stays valid while the stitcher moves
        on: O(1) now (updates replace the state's arrays and dicts, never modify them); the
        arrays are built when it is called."""
        captured = (self._prev, self._shape, self._next_id, self._max_id, self._frame,
                    self._seen)
        return lambda: self._state_of(*captured)

    def _state_of(self, prev, shape, next_id, max_id, frame, seen_dict) -> dict[str, np.ndarray]:
        seen = sorted(seen_dict.items())
        pixels = [p for _, (_, p) in seen]
        prev_index, prev_labels = prev if prev is not None else (
            np.zeros((0, 0), np.int32), np.zeros(0, np.int64))
        return {
            "version": np.int64(_STATE_VERSION),
            "mode": np.array(self.mode),
            "label_divisor": np.int64(self.label_divisor),
            "memory_frames": np.int64(self.memory_frames),
            "frame": np.int64(frame),
            "next_id": np.int64(next_id),
            "max_id": np.int64(max_id),
            "shape": np.array(shape if shape is not None else (-1, -1), np.int64),
            "prev_index": prev_index,
            "prev_labels": prev_labels,
            "has_prev": np.bool_(prev is not None),
            "seen_labels": np.array([k for k, _ in seen], np.int64),
            "seen_last": np.array([v[0] for _, v in seen], np.int64),
            "seen_sizes": np.array([len(p) for p in pixels], np.int64),
            "seen_pixels": np.concatenate(pixels) if pixels else np.zeros(0, np.int32),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restores `state_dict()` output; the next update continues that video.

        Raises:
          ValueError: the state was saved by a stitcher with other settings.
        """
        if int(state["version"]) != _STATE_VERSION:
            raise ValueError(f"stitcher state version {int(state['version'])} is not supported")
        saved = (str(state["mode"]), int(state["label_divisor"]), int(state["memory_frames"]))
        mine = (self.mode, self.label_divisor, self.memory_frames)
        if saved != mine:
            raise ValueError(
                f"stitcher state was saved with (mode, label_divisor, memory_frames) = {saved}, "
                f"this stitcher has {mine}"
            )
        self.reset()
        self._frame = int(state["frame"])
        self._next_id = int(state["next_id"])
        self._max_id = int(state["max_id"])
        shape = tuple(int(v) for v in state["shape"])
        self._shape = None if shape == (-1, -1) else shape
        if bool(state["has_prev"]):
            self._prev = (np.asarray(state["prev_index"], np.int32),
                          np.asarray(state["prev_labels"], np.int64))
        sizes = np.asarray(state["seen_sizes"], np.int64)
        pixels = np.split(np.asarray(state["seen_pixels"], np.int32), np.cumsum(sizes)[:-1])
        for label, last, pix in zip(state["seen_labels"].tolist(), state["seen_last"].tolist(),
                                    pixels):
            self._seen[int(label)] = (int(last), pix)

    # --- shared ---------------------------------------------------------------------------

    def _check_maps(self, **maps: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Validates the maps and returns each one's dense table (values, index, areas)."""
        arrays = [np.asarray(m) for m in maps.values()]
        expected = arrays[0].shape if self._shape is None else self._shape
        out = []
        for name, m in zip(maps, arrays):
            if m.ndim != 2:
                raise ValueError(f"{name} must be [height, width], got shape {m.shape}")
            if not np.issubdtype(m.dtype, np.integer):
                raise ValueError(f"{name} must hold integer panoptic labels, got {m.dtype}")
            if m.shape != expected:
                raise ValueError(
                    f"{name} has shape {m.shape}, expected {expected} (call reset() between "
                    "videos of different sizes)"
                )
            values, index, areas = labels.dense(m, what=name)
            if values.size and (values[0] < 0 or values[-1] >= 1 << 31):
                raise ValueError(
                    f"{name} labels must be in [0, 2^31), got [{values[0]}, {values[-1]}]"
                )
            out.append((values, index, areas))
        return out

    def _step(self, p, c, n):
        """Computes frame t+1 without changing the state; returns (index, wide labels, commit)."""
        tables = self._check_maps(panoptic_t=p, concat_next_t1=c, next_panoptic_t1=n)
        (pv, pi, pa), (cv, ci, ca), (nv, ni, na) = tables
        d = self.label_divisor
        matched = two_frame.match_tables(cv, ci, ca, nv, ni, na, label_divisor=d)
        qv = two_frame.stitch_table(nv, cv, matched, label_divisor=d)
        qi, qa = ni, na
        unique, inverse = np.unique(qv, return_inverse=True)
        if len(unique) < len(qv):  # Two standalone segments got one label: merge them.
            qi = inverse.astype(np.int32)[ni]
            qa = np.bincount(inverse, weights=na, minlength=len(unique)).astype(np.int64)
            qv = unique
        if self.mode == "reference":
            return self._step_reference(pv, pi, qv, qi)
        return self._step_clean(pv, pi, pa, qv, qi, qa)

    def _is_thing(self, semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
        if self._things is None:
            return instance > 0
        return (instance > 0) & np.isin(semantic, self._things)

    # --- clean mode -------------------------------------------------------------------------

    def _start_clean(self, pv, pi, pa):
        """Frame 0 from a fresh state: (wide labels per segment of pi, next id, memory)."""
        inherited = np.full(0, -1, np.int64)
        out, next_id, seen = self._assign(pv, pi, pa, np.zeros(0, np.int64), inherited, 0, {}, 1)
        return out, next_id, seen

    def _step_clean(self, pv, pi, pa, qv, qi, qa):
        first = None
        if self._prev is None:
            first_labels, next_id, seen = self._start_clean(pv, pi, pa)
            prev, frame, first = (pi, first_labels), 0, first_labels[pi]
        else:
            prev, next_id, seen, frame = self._prev, self._next_id, self._seen, self._frame
        inherited = self._match_to_previous(prev, pv, pi)
        frame += 1
        out, next_id, seen = self._assign(qv, qi, qa, pv, inherited, frame, seen, next_id)

        def commit():
            if first is not None:
                self._first = first
            self._prev, self._next_id, self._seen, self._frame = _merged(qi, out), next_id, seen, frame
            self._shape = qi.shape

        return qi, out, commit

    def _match_to_previous(self, prev, pv: np.ndarray, pi: np.ndarray) -> np.ndarray:
        """For each segment of panoptic_t, the global label in the previous output it continues
        (same class, largest overlap, one-to-one), or -1. int64 [len(pv)]."""
        prev_index, prev_labels = prev
        d = self.label_divisor
        a, b, count = labels.pair_counts(prev_index, len(prev_labels), pi, len(pv))
        last, cur = prev_labels[a], pv[b]
        last_cls, cur_cls = last >> TRACK_BITS, cur // d
        ok = (
            self._is_thing(last_cls, last & TRACK_MASK)
            & self._is_thing(cur_cls, cur % d)
            & (last_cls == cur_cls)
        )
        b, last, cur, count = b[ok], last[ok], cur[ok], count[ok]
        # Largest overlap first; ties to the smaller previous, then current, label.
        order = np.lexsort((cur, last, -count))
        inherited = np.full(len(pv), -1, np.int64)
        used: set[int] = set()
        for j, lab_last in zip(b[order].tolist(), last[order].tolist()):
            if inherited[j] >= 0 or lab_last in used:
                continue
            inherited[j] = lab_last
            used.add(lab_last)
        return inherited

    def _assign(self, qv, qi, qa, pv, inherited, frame, seen, next_id):
        """Wide labels for the segments of one output frame.

        Args:
          qv, qi, qa: dense table of the frame's per-pair labels (values, index, areas).
          pv, inherited: panoptic_t's labels and the global label each continues (or -1).

        Returns:
          (wide label per segment int64 [len(qv)], next id, updated memory).
        """
        d = self.label_divisor
        semantic, instance = qv // d, qv % d
        out = (semantic << TRACK_BITS) | instance  # stuff, crowd and void keep theirs
        thing = self._is_thing(semantic, instance)
        mapped = np.zeros(len(qv), bool)
        if pv.size:
            # Instances above D // 2 are the pair stitcher's new ones (as the notebook's
            # new_mask): never inherited, even if the number also occurs in panoptic_t.
            pos = np.minimum(np.searchsorted(pv, qv), len(pv) - 1)
            cand = thing & (instance <= d // 2) & (pv[pos] == qv)
            continued = np.where(cand, inherited[pos], -1)
            mapped = continued >= 0
            out[mapped] = continued[mapped]
        new = np.flatnonzero(thing & ~mapped)
        thing_idx = np.flatnonzero(thing)
        masks = labels.segment_pixels(qi, thing_idx) if self.memory_frames else []

        if self.memory_frames and new.size:
            taken = set(out[mapped].tolist())
            reid = self._reidentify(qv, qi, qa, new, taken, frame, seen)
            for j, track_label in reid.items():
                out[j] = track_label
                mapped[j] = True
            new = new[~mapped[new]]

        # Fresh ids in order of first appearance (row-major), for reproducible numbering.
        new = new[np.argsort(labels.first_pixels(qi, new), kind="stable")]
        ids = next_id + np.arange(len(new), dtype=np.int64)
        out[new] = (semantic[new] << TRACK_BITS) | ids
        next_id += len(new)

        if self.memory_frames:
            seen = dict(seen)
            for j, pixels in zip(thing_idx.tolist(), masks):
                seen[int(out[j])] = (frame, pixels)
            seen = {k: v for k, v in seen.items() if frame - v[0] <= self.memory_frames}
        else:
            seen = {}
        return out, next_id, seen

    def _reidentify(self, qv, qi, qa, new, taken, frame, seen) -> dict[int, int]:
        """{segment index: remembered track label} for new segments that re-identify a lost
        track of their class by mask IoU (greedy by decreasing IoU, one track per segment)."""
        d = self.label_divisor
        new_cls = qv[new] // d
        classes = set(new_cls.tolist())
        tracks = [
            (label, pixels)
            for label, (last, pixels) in seen.items()
            if label not in taken
            and (label >> TRACK_BITS) in classes
            and frame - last <= self.memory_frames
        ]
        if not tracks:
            return {}
        inter = labels.intersections([p for _, p in tracks], qi, len(qv))[:, new]
        track_labels = np.array([t for t, _ in tracks], np.int64)
        track_areas = np.array([len(p) for _, p in tracks], np.int64)
        iou = inter / (track_areas[:, None] + qa[new][None, :] - inter)
        ok = (iou >= self.reid_iou) & ((track_labels >> TRACK_BITS)[:, None] == new_cls[None, :])
        t, j = np.nonzero(ok)
        order = np.lexsort((qv[new][j], track_labels[t], -iou[t, j]))
        out: dict[int, int] = {}
        used: set[int] = set()
        for ti, ji in zip(t[order].tolist(), j[order].tolist()):
            label = int(track_labels[ti])
            if ji in out or label in used:
                continue
            out[ji] = label
            used.add(label)
        return {int(new[ji]): label for ji, label in out.items()}

    # --- reference mode (notebook) ----------------------------------------------------------

    def _step_reference(self, pv, pi, qv, qi):
        d = self.label_divisor
        offset = d // 2
        new_mask = qv % d > offset  # before any remapping, as in the notebook
        values = labels.to_wide(qv, d)
        if self._prev is not None:
            prev_index, prev_labels = self._prev
            a, b, count = labels.pair_counts(prev_index, len(prev_labels), pi, len(pv))
            last, cur = prev_labels[a], labels.to_wide(pv[b], d)
            # The notebook visits the pairs by ascending count; a stable sort keeps ties in
            # (last, current) label order where its order is undefined.
            order = np.lexsort((cur, last))
            order = order[np.argsort(count[order], kind="stable")]
            # In-place replacement `q[q == cur] = last`, pair after pair, on the label table:
            # equal labels move together, so groups of table entries stand for the pixels.
            groups: dict[int, list[int]] = {}
            for k, v in enumerate(values.tolist()):
                groups.setdefault(v, []).append(k)
            for lab_last, lab_cur in zip(last[order].tolist(), cur[order].tolist()):
                moved = groups.pop(lab_cur, None)
                if moved:
                    groups.setdefault(lab_last, []).extend(moved)
            for v, members in groups.items():
                values[members] = v
        max_id = max(self._max_id, int((pv % d).max(initial=0)))
        semantic, instance = values >> TRACK_BITS, values & TRACK_MASK
        instance[new_mask] = instance[new_mask] - offset + max_id
        out = (semantic << TRACK_BITS) | instance
        first = labels.to_wide(pv, d)[pi] if self._frame < 0 else None

        def commit():
            if first is not None:
                self._first, self._frame = first, 0
            self._max_id = max(max_id, int(instance.max(initial=0)))
            self._frame += 1
            self._prev, self._shape = _merged(qi, out), qi.shape

        return qi, out, commit


def _merged(index: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A dense map whose table may repeat a label -> the same map with distinct labels (pixel
    pairs are then counted per label, as a histogram of the map itself would)."""
    unique, inverse = np.unique(values, return_inverse=True)
    if len(unique) == len(values):
        return index, values
    return inverse.astype(np.int32)[index], unique

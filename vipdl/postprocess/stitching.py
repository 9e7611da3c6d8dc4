"""Sequence-level ViP-DeepLab stitching: one globally tracked panoptic map per frame (docs/postprocessing.md#sequence-stitching).

A video of n frames gives n - 1 pairs (t, t+1). For each pair the two-frame post-processing
(`vipdl.postprocess.two_frame`) yields frame t (`panoptic_t`, from the H x 2W canvas), frame
t+1 with the same ids (`concat_next_t1`) and frame t+1 post-processed on its own
(`next_panoptic_t1`). `VideoStitcher.update` consumes one pair at a time and returns the
tracked map of frame t+1. Frame 0 comes from `first(panoptic_0)` (call it with the first
pair's `panoptic_t`), or, if `first` is skipped, from `first_frame` after the first `update`.
State is the previous output frame plus a bounded
memory of recently seen tracks, so memory is constant in the video length.

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
comparison. Neither mode lets ids reach the label divisor: `TrackIdOverflowError` is raised
before any state changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import ndimage

from vipdl.postprocess import two_frame


class TrackIdOverflowError(ValueError):
    """A new track id would reach the label divisor (the instance field would overflow)."""


@dataclasses.dataclass(frozen=True)
class _Mask:
    """A binary mask stored as its bounding box and the crop inside it (bounded memory)."""

    y0: int
    x0: int
    crop: np.ndarray  # bool [y1 - y0, x1 - x0]

    @property
    def area(self) -> int:
        return int(self.crop.sum())


def _mask_iou(a: _Mask, b: _Mask) -> float:
    y0, x0 = max(a.y0, b.y0), max(a.x0, b.x0)
    y1 = min(a.y0 + a.crop.shape[0], b.y0 + b.crop.shape[0])
    x1 = min(a.x0 + a.crop.shape[1], b.x0 + b.crop.shape[1])
    inter = 0
    if y1 > y0 and x1 > x0:
        ca = a.crop[y0 - a.y0 : y1 - a.y0, x0 - a.x0 : x1 - a.x0]
        cb = b.crop[y0 - b.y0 : y1 - b.y0, x0 - b.x0 : x1 - b.x0]
        inter = int(np.count_nonzero(ca & cb))
    union = a.area + b.area - inter
    return inter / union if union else 0.0


@dataclasses.dataclass(frozen=True)
class _Segments:
    """The distinct labels of a map, each pixel's label index and each label's first pixel."""

    labels: np.ndarray  # int64 [n], sorted
    inverse: np.ndarray  # int64 [h, w], index into labels
    first: np.ndarray  # int64 [n]

    @classmethod
    def of(cls, panoptic: np.ndarray) -> _Segments:
        labels, first, inverse = np.unique(panoptic, return_index=True, return_inverse=True)
        return cls(labels.astype(np.int64), inverse.reshape(panoptic.shape), first)

    def masks(self, wanted: np.ndarray) -> dict[int, _Mask]:
        """Bounding-box masks of the labels at positions `wanted` (indices into labels)."""
        slices = ndimage.find_objects(self.inverse + 1, max_label=len(self.labels))
        out = {}
        for i in wanted.tolist():
            sl = slices[i]
            out[int(self.labels[i])] = _Mask(sl[0].start, sl[1].start, self.inverse[sl] == i)
        return out

    def relabel(self, mapping: dict[int, int]) -> np.ndarray:
        new = np.array([mapping.get(int(v), int(v)) for v in self.labels], np.int64)
        return new[self.inverse].astype(np.int32)


@dataclasses.dataclass
class _Seen:
    label: int  # global panoptic label of the track
    last_frame: int
    mask: _Mask


class VideoStitcher:
    """Streams a video pair by pair and returns globally tracked panoptic maps (numpy, host).

    Args:
      thing_ids: classes that carry track ids; None tracks every segment with instance > 0
        (post-processed maps only give non-zero instance ids to thing classes).
      label_divisor: D of `class * D + instance`; track ids stay < D.
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
        self.label_divisor = int(label_divisor)
        self.ignore_label = ignore_label
        self.memory_frames = int(memory_frames)
        self.reid_iou = float(reid_iou)
        self.mode = mode
        self.reset()

    def reset(self) -> None:
        """Forgets the current video; the next `update` starts a new one."""
        self._prev: np.ndarray | None = None
        self._first: np.ndarray | None = None
        self._next_id = 1  # clean mode: next fresh track id
        self._max_id = 0  # reference mode: the notebook's max_instance_id
        self._frame = -1  # index of the last output frame
        self._seen: dict[int, _Seen] = {}

    @property
    def first_frame(self) -> np.ndarray | None:
        """Tracked map of frame 0, available after `first` or the first `update`."""
        return self._first

    @property
    def num_frames(self) -> int:
        """Number of tracked frames produced so far (first frame included)."""
        return self._frame + 1

    @property
    def num_tracks(self) -> int:
        """Track ids handed out so far (clean mode)."""
        return self._next_id - 1

    def first(self, panoptic_0: np.ndarray) -> np.ndarray:
        """Starts a video: returns the tracked map of frame 0.

        Args:
          panoptic_0: int [h, w], frame 0 from the first pair's two-frame canvas (the same
            map that is then passed as `panoptic_t` to the first `update`).

        Returns:
          int32 [h, w]: fresh track ids in order of first appearance (clean mode), or the map
          unchanged (reference mode, as the notebook).
        """
        if self._frame >= 0:
            raise ValueError("first() starts a video; call reset() before reusing the stitcher")
        p = self._check_maps(panoptic_0=panoptic_0)[0]
        if self.mode == "reference":
            self._first, self._frame = p.astype(np.int32), 0
            return self._first
        first, next_id, seen = self._start_clean(p)
        self._first, self._prev, self._next_id, self._seen, self._frame = (
            first,
            first,
            next_id,
            seen,
            0,
        )
        return first

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
          int32 [h, w], frame t+1 with global track ids.

        Raises:
          ValueError: on bad shapes (nothing is updated).
          TrackIdOverflowError: if a track id would reach the label divisor (nothing is
            updated).
        """
        p, c, n = self._check_maps(
            panoptic_t=panoptic_t, concat_next_t1=concat_next_t1, next_panoptic_t1=next_panoptic_t1
        )
        q = two_frame.stitch_pair(c, n, label_divisor=self.label_divisor).astype(np.int64)
        if self.mode == "reference":
            return self._update_reference(p, q)
        return self._update_clean(p, q)

    def _check_maps(self, **maps: np.ndarray) -> list[np.ndarray]:
        arrays = [np.asarray(m) for m in maps.values()]
        expected = arrays[0].shape if self._prev is None else self._prev.shape
        for name, m in zip(maps, arrays):
            if m.ndim != 2:
                raise ValueError(f"{name} must be [height, width], got shape {m.shape}")
            if not np.issubdtype(m.dtype, np.integer):
                raise ValueError(f"{name} must hold integer panoptic labels, got {m.dtype}")
            if m.size and (m.min() < 0 or m.max() >= 1 << 31):
                raise ValueError(f"{name} labels must be in [0, 2^31), got [{m.min()}, {m.max()}]")
            if m.shape != expected:
                raise ValueError(
                    f"{name} has shape {m.shape}, expected {expected} (call reset() between "
                    "videos of different sizes)"
                )
        return [m.astype(np.int64) for m in arrays]

    # --- clean mode -------------------------------------------------------------------------

    def _is_thing_label(self, labels: np.ndarray) -> np.ndarray:
        d = self.label_divisor
        is_instance = labels % d > 0
        if self.thing_ids is None:
            return is_instance
        return np.isin(labels // d, list(self.thing_ids)) & is_instance

    def _match_to_previous(self, p: np.ndarray, prev: np.ndarray) -> dict[int, int]:
        """{label in p: global label in prev}, same class, largest overlap, one-to-one."""
        pairs, counts = np.unique(prev * (1 << 31) + p, return_counts=True)
        last, cur = np.divmod(pairs, 1 << 31)
        d = self.label_divisor
        ok = self._is_thing_label(last) & self._is_thing_label(cur) & (last // d == cur // d)
        # Largest overlap first; ties to the smaller previous, then current, label.
        order = np.lexsort((cur[ok], last[ok], -counts[ok]))
        mapping: dict[int, int] = {}
        used: set[int] = set()
        for lab_last, lab_cur in zip(last[ok][order].tolist(), cur[ok][order].tolist()):
            if lab_cur in mapping or lab_last in used:
                continue
            mapping[lab_cur] = lab_last
            used.add(lab_last)
        return mapping

    def _assign(
        self,
        segments: _Segments,
        inherited: dict[int, int],
        frame: int,
        seen: dict[int, _Seen],
        next_id: int,
    ) -> tuple[dict[int, int], int, dict[int, _Mask]]:
        """Global labels for the thing segments of one output frame.

        Returns the mapping {label: global label}, the updated id counter and the masks of the
        output's thing segments (for the memory; empty when memory is off).
        """
        d = self.label_divisor
        thing = np.flatnonzero(self._is_thing_label(segments.labels))
        mapping = {}
        new = []
        for i in thing.tolist():
            label = int(segments.labels[i])
            # Instances above D // 2 are the pair stitcher's new ones (as the notebook's
            # new_mask): never inherited, even if the number also occurs in panoptic_t.
            if label % d <= d // 2 and label in inherited:
                mapping[label] = inherited[label]
            else:
                new.append(i)
        masks = segments.masks(thing) if self.memory_frames else {}

        if self.memory_frames and new:
            taken = set(mapping.values())
            candidates = []
            for i in new:
                label = int(segments.labels[i])
                for track in seen.values():
                    if track.label in taken or track.label // d != label // d:
                        continue
                    if frame - track.last_frame > self.memory_frames:
                        continue
                    iou = _mask_iou(masks[label], track.mask)
                    if iou >= self.reid_iou:
                        candidates.append((-iou, track.label, label))
            used_tracks: set[int] = set()
            for _, track_label, label in sorted(candidates):
                if label in mapping or track_label in used_tracks:
                    continue
                mapping[label] = track_label
                used_tracks.add(track_label)
            new = [i for i in new if int(segments.labels[i]) not in mapping]

        # Fresh ids in order of first appearance (row-major), for reproducible numbering.
        new.sort(key=lambda i: segments.first[i])
        if new and next_id + len(new) - 1 >= d:
            raise TrackIdOverflowError(
                f"frame {frame} needs {len(new)} new track ids but only {d - next_id} remain "
                f"below label_divisor={d}; use a larger label divisor, split the video or "
                "increase memory_frames/reid_iou matching"
            )
        for i in new:
            label = int(segments.labels[i])
            mapping[label] = (label // d) * d + next_id
            next_id += 1
        return mapping, next_id, masks

    def _remember(
        self, seen: dict[int, _Seen], mapping: dict[int, int], masks: dict[int, _Mask], frame: int
    ) -> dict[int, _Seen]:
        if not self.memory_frames:
            return {}
        seen = dict(seen)
        for label, global_label in mapping.items():
            seen[global_label] = _Seen(global_label, frame, masks[label])
        return {k: v for k, v in seen.items() if frame - v.last_frame <= self.memory_frames}

    def _start_clean(self, p: np.ndarray) -> tuple[np.ndarray, int, dict[int, _Seen]]:
        """Frame 0 from the state of a fresh stitcher; returns (map, next id, memory)."""
        segments = _Segments.of(p)
        mapping, next_id, masks = self._assign(segments, {}, 0, {}, 1)
        return segments.relabel(mapping), next_id, self._remember({}, mapping, masks, 0)

    def _update_clean(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        # Work on locals and commit at the end, so an error leaves the state untouched.
        first = None
        if self._prev is None:
            first, next_id, seen = self._start_clean(p)
            prev, frame = first, 0
        else:
            prev, next_id, seen, frame = self._prev, self._next_id, self._seen, self._frame
        inherited = self._match_to_previous(p, prev.astype(np.int64))
        frame += 1
        segments = _Segments.of(q)
        mapping, next_id, masks = self._assign(segments, inherited, frame, seen, next_id)
        out = segments.relabel(mapping)
        seen = self._remember(seen, mapping, masks, frame)

        if first is not None:
            self._first = first
        self._next_id, self._seen, self._frame, self._prev = next_id, seen, frame, out
        return out

    # --- reference mode (notebook) ----------------------------------------------------------

    def _update_reference(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        d = self.label_divisor
        offset = d // 2
        q = q.copy()
        new_mask = q % d > offset  # before any remapping, as in the notebook
        if self._prev is not None:
            pairs, counts = np.unique(
                self._prev.astype(np.int64) * (1 << 31) + p, return_counts=True
            )
            # The notebook's argsort is unstable; a stable sort keeps ties in label order.
            for pair in pairs[np.argsort(counts, kind="stable")].tolist():
                last_label, p_label = divmod(pair, 1 << 31)
                q[q == p_label] = last_label  # in place: hazards (a), (b), (c)
        max_id = max(self._max_id, int((p % d).max(initial=0)))
        cls, ins = q // d, q % d
        ins[new_mask] = ins[new_mask] - offset + max_id
        if ins.size and ins.max() >= d:
            raise TrackIdOverflowError(
                f"reference stitching produced instance id {int(ins.max())} >= "
                f"label_divisor={d} at frame {self._frame + 2}"
            )
        out = (cls * d + ins).astype(np.int32)
        if self._frame < 0:
            self._first = p.astype(np.int32)
            self._frame = 0
        self._max_id = max(max_id, int(ins.max(initial=0)))
        self._frame += 1
        self._prev = out
        return out

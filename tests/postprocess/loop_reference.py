"""Loop-based twins of the host stitchers and the IoU tracker, kept for the equality tests.

These are the straightforward per-segment implementations `vipdl.postprocess` had before its
tables were vectorised (docs/postprocessing.md#cost-per-frame). The vectorised versions must
give identical maps; tests/postprocess/stitching_test.py compares them on random sequences.
Narrow ids only (`class * label_divisor + track`, tracks below the divisor).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import ndimage, optimize


def pair_matches(
    concat_next: np.ndarray, next_panoptic: np.ndarray, *, label_divisor: int
) -> dict[int, int]:
    """Mutual-best-IoU matches: {next label: concat label}.

    Candidates are pairs of segments with the same class, both instance ids non-zero and a
    non-empty intersection; there is no IoU threshold. Pairs are visited by ascending IoU
    (ties in ascending (concat, next) label order) and each side remembers its last partner,
    i.e. its best one; a pair is kept when the choice is mutual.
    """
    concat_next = np.asarray(concat_next, np.int64)
    next_panoptic = np.asarray(next_panoptic, np.int64)
    if concat_next.shape != next_panoptic.shape:
        raise ValueError(
            f"concat_next {concat_next.shape} and next_panoptic {next_panoptic.shape} differ in shape"
        )
    concat_ids, concat_areas = np.unique(concat_next, return_counts=True)
    next_ids, next_areas = np.unique(next_panoptic, return_counts=True)
    concat_area = dict(zip(concat_ids.tolist(), concat_areas.tolist()))
    next_area = dict(zip(next_ids.tolist(), next_areas.tolist()))
    # Labels are < 2^31, so the pair packs losslessly into int64.
    pair_ids, intersections = np.unique(concat_next * (1 << 31) + next_panoptic, return_counts=True)
    candidates = []
    for pair_id, inter in zip(pair_ids.tolist(), intersections.tolist()):
        a, b = divmod(pair_id, 1 << 31)
        if a // label_divisor != b // label_divisor:
            continue
        if a % label_divisor == 0 or b % label_divisor == 0:
            continue
        candidates.append((inter / (concat_area[a] + next_area[b] - inter), a, b))
    candidates.sort(key=lambda c: c[0])  # stable: equal IoUs stay in label order
    best_next: dict[int, int] = {}
    best_concat: dict[int, int] = {}
    for _, a, b in candidates:
        best_next[a] = b
        best_concat[b] = a
    return {b: a for a, b in best_next.items() if best_concat[b] == a}


def stitch_pair(
    concat_next: np.ndarray, next_panoptic: np.ndarray, *, label_divisor: int
) -> np.ndarray:
    """Propagates frame t ids onto frame t+1's standalone prediction.

    Args:
      concat_next: int [h, w], frame t+1 from the two-frame canvas (ids shared with frame t).
      next_panoptic: int [h, w], frame t+1 post-processed on its own.
      label_divisor: D.

    Returns:
      int32 [h, w]: `next_panoptic` where matched segments take their concat label and
      unmatched instances get `instance + D // 2` (new instances); stuff, crowd and void are
      unchanged.

    Raises:
      ValueError: if an instance id + D // 2 would reach D, or the shapes differ.
    """
    next_panoptic = np.asarray(next_panoptic)
    offset = label_divisor // 2
    matches = pair_matches(concat_next, next_panoptic, label_divisor=label_divisor)
    semantic = next_panoptic // label_divisor
    instance = next_panoptic % label_divisor
    if instance.size and instance.max() + offset >= label_divisor:
        raise ValueError(
            f"next_panoptic has instance id {instance.max()}; with the new-instance offset "
            f"{offset} it would reach label_divisor={label_divisor}"
        )
    stitched = np.where(instance > 0, semantic * label_divisor + instance + offset, next_panoptic)
    for next_label, concat_label in matches.items():
        stitched[next_panoptic == next_label] = concat_label
    return stitched.astype(np.int32)


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


class LoopVideoStitcher:
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
        q = stitch_pair(c, n, label_divisor=self.label_divisor).astype(np.int64)
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


class LoopIoUTracker:
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

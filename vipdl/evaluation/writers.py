"""Writers of the Cityscapes-VPS evaluation layout (mcahny/vps `tools/eval_vpq.py`).

Predictions: `<dir>/pan_pred/<image_id>.png` (RGB segment ids, id = R + 256 G + 256^2 B,
0 = void) plus `<dir>/pred.json`, whose `segments_info` maps every id to its class (and, from
`VpsPredictionWriter`, its track). Ground truth: `<root>/<split>/panoptic_video/<image_id>_`
`gtFine_color.png` plus `<root>/panoptic_gt_<split>_city_vps.json`.

Prediction segment ids (docs/inference.md#output-formats): void 0, stuff and crowd of class c
`c + 1`, and each track of a video its own id from `VPS_FIRST_TRACK_ID` = 256 on, in order of
first appearance, so a video holds up to 2^24 - 256 tracks whatever their ids.

The single-file formats of the other layouts (KITTI-STEP PNG, Cityscapes-DVPS prediction and
depth PNGs) are written by `vipdl.formats`. Every file is written to a temporary name in the
target directory and renamed into place, so an interrupted run never leaves a half-written PNG
or JSON behind.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vipdl import formats

# Cityscapes-VPS image ids are "<video>_<frame>[_<anything>]"; readers group frames by the
# first token and order them by the (integer) second token.
_VPS_IMAGE_ID = re.compile(r"^[^_/\\]+_\d+(_[^/\\]*)?$")
VPS_FIRST_TRACK_ID = 256  # Ids below are void (0) and stuff / crowd (class + 1).
VPS_MAX_TRACKS = formats.MAX_RGB_ID - VPS_FIRST_TRACK_ID

class LabelConvention(Protocol):
    """What the ground-truth writer reads of a dataset; a `DatasetDescriptor` has it all."""

    @property
    def label_divisor(self) -> int: ...
    @property
    def ignore_label(self) -> int: ...
    @property
    def thing_ids(self) -> tuple[int, ...]: ...
    @property
    def num_classes(self) -> int: ...
    @property
    def class_names(self) -> tuple[str, ...]: ...
    @property
    def colormap(self) -> tuple[tuple[int, int, int], ...]: ...
    def is_thing(self, class_id: int) -> bool: ...


def panoptic_to_segments(
    panoptic: np.ndarray,
    *,
    label_divisor: int,
    ignore_label: int,
    thing_ids: Sequence[int],
    what: str = "panoptic",
) -> tuple[np.ndarray, list[dict[str, int]]]:
    """Converts an in-memory panoptic map to COCO-style segment ids and `segments_info`.

    Segment id = `semantic * label_divisor + instance + 1` (unique per (class, instance), so a
    track keeps its id in every frame of a video, and never 0); void (semantic ==
    ignore_label) -> 0. Crowd (thing class, instance 0) gets `iscrowd` 1.

    Args:
      panoptic: int [height, width], `semantic * label_divisor + instance`.
      label_divisor, ignore_label, thing_ids: the dataset's label convention.
      what: name used in error messages.

    Returns:
      (segment ids int32 [height, width], segments_info list sorted by id, each
      {"id", "category_id", "iscrowd", "area"}).
    """
    panoptic = formats.panoptic_array(panoptic, what)
    values, areas = np.unique(panoptic, return_counts=True)
    semantic = values // label_divisor
    instance = values % label_divisor
    is_void = semantic == ignore_label
    seg_ids = np.where(is_void, 0, values + 1)
    if seg_ids.size and seg_ids.max() >= formats.MAX_RGB_ID:
        raise ValueError(
            f"{what}: panoptic value {values.max()} does not fit a 24-bit RGB segment id "
            f"(semantic * {label_divisor} + instance + 1 must be < 2^24)"
        )
    things = set(int(t) for t in thing_ids)
    info = [
        {
            "id": int(s),
            "category_id": int(c),
            "iscrowd": int(int(c) in things and int(i) == 0),
            "area": int(a),
        }
        for s, c, i, a, v in zip(seg_ids, semantic, instance, areas, is_void)
        if not v
    ]
    ids = seg_ids[np.searchsorted(values, panoptic)].astype(np.int32)
    return ids, info


class VpsPredictionWriter:
    """Writes Cityscapes-VPS predictions: <out_dir>/pan_pred/<image_id>.png + pred.json.

    Usage:
        with VpsPredictionWriter(out, label_divisor=1000, ignore_label=255,
                                 thing_ids=range(11, 19)) as w:
            for image_id, panoptic in frames:
                w.add(image_id, panoptic)          # or w.add_segments(...) for tracked frames

    Every PNG is written atomically as soon as its frame is added, and the frame's annotation
    is appended to a journal (`pred.jsonl` in `out_dir`), so memory stays bounded however long
    the video. `close()` turns the journal into `pred.json` (atomically) and deletes it; nothing
    is written if the `with` block raised. `write_json()` writes `pred.json` for the frames so
    far without closing, and `state()` / `resume=` continue an interrupted run.
    """

    JOURNAL = "pred.jsonl"

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        label_divisor: int,
        ignore_label: int,
        thing_ids: Sequence[int],
        resume: dict[str, Any] | None = None,
    ):
        if not 0 <= ignore_label < label_divisor:
            raise ValueError(f"ignore_label {ignore_label} must be in [0, {label_divisor})")
        self.out_dir = Path(out_dir)
        self._label_divisor = int(label_divisor)
        self._ignore_label = int(ignore_label)
        self._thing_ids = tuple(int(t) for t in thing_ids)
        self._seen: set[str] = set()
        self._lines = 0
        # Per video: wide id (class << 32 | track) -> segment id, and the next free id.
        self._ids: dict[str, dict[int, int]] = {}
        self._next: dict[str, int] = {}
        self._closed = False
        (self.out_dir / "pan_pred").mkdir(parents=True, exist_ok=True)
        journal = self.out_dir / self.JOURNAL
        if resume is None:
            journal.unlink(missing_ok=True)
        else:
            self._resume(resume, journal)
        self._journal = open(journal, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    # --- adding frames ----------------------------------------------------------------------

    def add(self, image_id: str, panoptic: np.ndarray) -> None:
        """Writes one frame. panoptic: int [height, width], semantic * D + instance."""
        panoptic = formats.panoptic_array(panoptic, f"prediction {image_id!r}")
        values, index = np.unique(panoptic, return_inverse=True)
        semantic, track = np.divmod(values, self._label_divisor)
        self.add_segments(image_id, index.reshape(panoptic.shape), semantic, track)

    def add_segments(self, image_id: str, segment_map: np.ndarray, semantic: np.ndarray,
                     track: np.ndarray) -> None:
        """Writes one tracked frame given as a segment table.

        Args:
          image_id: `<video>_<frame>[...]`; ids are numbered per video.
          segment_map: int `[height, width]` row of each pixel in the table.
          semantic, track: int `[k]` class and track id (0 = stuff / crowd) of each row; class
            `ignore_label` is void.

        Raises:
          FormatLimitError: a video needs more than `VPS_MAX_TRACKS` track ids, or a stuff class
            is >= 255 (its id would collide with the track ids).
        """
        if self._closed:
            raise RuntimeError(f"{self.out_dir}: writer already closed")
        if not image_id or "/" in image_id or "\\" in image_id:
            raise ValueError(f"invalid image_id {image_id!r}")
        if image_id in self._seen:
            raise ValueError(f"{self.out_dir}: image_id {image_id!r} added twice")
        segment_map = np.asarray(segment_map)
        semantic = np.asarray(semantic, np.int64)
        track = np.asarray(track, np.int64)
        areas = np.bincount(segment_map.reshape(-1), minlength=len(semantic))
        ids = self._segment_ids(image_id.split("_")[0], semantic, track)
        formats.write_rgb_ids(self.out_dir / "pan_pred" / f"{image_id}.png", ids[segment_map])
        info = _segments_info(ids, semantic, track, areas, set(self._thing_ids))
        self._append({"image_id": image_id, "file_name": f"{image_id}.png",
                      "segments_info": info})
        self._seen.add(image_id)

    def _segment_ids(self, video: str, semantic: np.ndarray, track: np.ndarray) -> np.ndarray:
        ids = np.where(semantic == self._ignore_label, 0, semantic + 1)
        stuff = (track == 0) & (semantic != self._ignore_label)
        if stuff.any() and semantic[stuff].max() >= VPS_FIRST_TRACK_ID - 1:
            raise formats.FormatLimitError(
                f"VPS layout: class {semantic[stuff].max()} cannot have a stuff id below "
                f"{VPS_FIRST_TRACK_ID} (classes must be < {VPS_FIRST_TRACK_ID - 1})"
            )
        known = self._ids.setdefault(video, {})
        next_id = self._next.get(video, VPS_FIRST_TRACK_ID)
        for k in np.flatnonzero((track > 0) & (semantic != self._ignore_label)).tolist():
            key = (int(semantic[k]) << 32) | int(track[k])
            if key not in known:
                if next_id >= formats.MAX_RGB_ID:
                    raise formats.FormatLimitError(
                        f"VPS layout holds {VPS_MAX_TRACKS} tracks per video (24-bit ids); "
                        f"video {video!r} needs more"
                    )
                known[key] = next_id
                next_id += 1
            ids[k] = known[key]
        self._next[video] = next_id
        return ids

    def _append(self, annotation: dict[str, Any]) -> None:
        self._journal.write(json.dumps(annotation, allow_nan=False) + "\n")
        self._journal.flush()
        self._lines += 1

    # --- resume / output ------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-able state after the frames added so far (for `resume=`)."""
        return {
            "lines": self._lines,
            "videos": {v: {"next": self._next.get(v, VPS_FIRST_TRACK_ID),
                           "ids": [[k, i] for k, i in ids.items()]}
                       for v, ids in self._ids.items()},
        }

    def _resume(self, state: dict[str, Any], journal: Path) -> None:
        """Keeps the journal's first `state["lines"]` frames (later ones are redone)."""
        keep = int(state["lines"])
        kept: list[str] = []
        if journal.is_file():
            with open(journal, encoding="utf-8") as f:
                for line in f:
                    if len(kept) == keep:
                        break
                    kept.append(line if line.endswith("\n") else line + "\n")
        if len(kept) < keep:
            raise ValueError(
                f"{journal}: holds {len(kept)} frames, the resume state expects {keep}; the "
                "output directory was changed since the run stopped"
            )
        formats.atomic_write_bytes(journal, "".join(kept).encode())
        self._seen = {json.loads(line)["image_id"] for line in kept}
        self._lines = keep
        for video, entry in state["videos"].items():
            self._ids[video] = {int(k): int(i) for k, i in entry["ids"]}
            self._next[video] = int(entry["next"])

    def write_json(self) -> None:
        """Writes pred.json (atomically) for the frames added so far."""
        self._journal.flush()
        path = self.out_dir / "pred.json"
        fd, tmp = tempfile.mkstemp(prefix=".pred.json.", suffix=".tmp", dir=self.out_dir)
        try:
            os.fchmod(fd, formats.new_file_mode())
            with os.fdopen(fd, "w", encoding="utf-8") as out, \
                    open(self.out_dir / self.JOURNAL, encoding="utf-8") as journal:
                # Streamed, one frame at a time: the journal may be longer than memory.
                out.write('{"annotations": [')
                for i, line in enumerate(journal):
                    out.write(("," if i else "") + "\n" + line.rstrip("\n"))
                out.write("\n]}\n")
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def close(self) -> None:
        """Writes pred.json (atomically) and removes the journal. Idempotent."""
        if self._closed:
            return
        self.write_json()
        self._journal.close()
        (self.out_dir / self.JOURNAL).unlink(missing_ok=True)
        self._closed = True

    def abort(self) -> None:
        """Stops without writing pred.json (the journal stays, for a resume)."""
        if not self._closed:
            self._journal.close()
            self._closed = True

    def __enter__(self) -> VpsPredictionWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # Leave no pred.json that would describe an incomplete set of PNGs.
            self.abort()


def _segments_info(ids: np.ndarray, semantic: np.ndarray, track: np.ndarray, areas: np.ndarray,
                   things: set[int]) -> list[dict[str, int]]:
    """`segments_info` of one frame (rows sharing an id merged, absent and void rows dropped),
    sorted by id."""
    info: dict[int, dict[str, int]] = {}
    for sid, c, t, a in zip(ids.tolist(), semantic.tolist(), track.tolist(), areas.tolist()):
        if sid == 0 or a == 0:
            continue
        if sid in info:
            info[sid]["area"] += a
            continue
        entry = {"id": sid, "category_id": c, "iscrowd": int(c in things and t == 0), "area": a}
        if t > 0:
            entry["track_id"] = t
        info[sid] = entry
    return [info[k] for k in sorted(info)]


def vps_categories(descriptor: LabelConvention) -> list[dict[str, Any]]:
    """The `categories` list of a Cityscapes-VPS style JSON for `descriptor`."""
    return [
        {
            "id": c,
            "name": name,
            "isthing": int(descriptor.is_thing(c)),
            "color": list(descriptor.colormap[c]),
        }
        for c, name in enumerate(descriptor.class_names)
    ]


def write_vps_ground_truth(
    root: str | os.PathLike,
    split: str,
    frames: Iterable[tuple[str, np.ndarray]],
    *,
    descriptor: LabelConvention,
) -> None:
    """Writes ground truth in the Cityscapes-VPS evaluation layout.

    Creates `<root>/<split>/panoptic_video/<image_id>_gtFine_color.png` (RGB segment ids) and
    `<root>/panoptic_gt_<split>_city_vps.json` (images / annotations / categories). Image ids
    must look like `<video>_<frame>[_...]` (e.g. `0005_0025_frankfurt_000000_001000`), which is
    how the evaluation finds videos and orders their frames.

    Args:
      root: dataset root.
      split: split name, e.g. "val".
      frames: (image_id, panoptic int32 [height, width]) in any order; `semantic * D +
        instance` with the descriptor's D; void (ignore_label) -> segment 0, crowd (thing class,
        instance 0) -> iscrowd 1.
      descriptor: the dataset's classes, things, ignore label and label divisor (a dataset
        descriptor, or any object with the attributes of `LabelConvention`).
    """
    root = Path(root)
    out_dir = root / split / "panoptic_video"
    out_dir.mkdir(parents=True, exist_ok=True)
    images, annotations, seen = [], [], set()
    for image_id, panoptic in frames:
        if not _VPS_IMAGE_ID.match(image_id):
            raise ValueError(
                f"image_id {image_id!r} must look like '<video>_<frame>[_...]' with an integer "
                "frame token, e.g. '0005_0025_frankfurt_000000_001000'"
            )
        if image_id in seen:
            raise ValueError(f"image_id {image_id!r} given twice")
        seen.add(image_id)
        ids, info = panoptic_to_segments(
            panoptic,
            label_divisor=descriptor.label_divisor,
            ignore_label=descriptor.ignore_label,
            thing_ids=descriptor.thing_ids,
            what=f"ground truth {image_id!r}",
        )
        bad = [s["category_id"] for s in info if s["category_id"] >= descriptor.num_classes]
        if bad:
            raise ValueError(
                f"ground truth {image_id!r}: classes {sorted(set(bad))} outside "
                f"[0, {descriptor.num_classes}) and not the ignore label {descriptor.ignore_label}"
            )
        gt_name = f"{image_id}_gtFine_color.png"
        formats.write_rgb_ids(out_dir / gt_name, ids)
        height, width = ids.shape
        images.append(
            {
                "id": image_id,
                "width": int(width),
                "height": int(height),
                "file_name": f"{image_id}_leftImg8bit.png",
            }
        )
        annotations.append({"image_id": image_id, "file_name": gt_name, "segments_info": info})
    order = sorted(range(len(images)), key=lambda i: images[i]["id"])
    formats.atomic_write_json(
        root / f"panoptic_gt_{split}_city_vps.json",
        {
            "images": [images[i] for i in order],
            "annotations": [annotations[i] for i in order],
            "categories": vps_categories(descriptor),
        },
    )

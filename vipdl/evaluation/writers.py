"""Writers of the Cityscapes-VPS evaluation layout (mcahny/vps `tools/eval_vpq.py`).

Predictions: `<dir>/pan_pred/<image_id>.png` (RGB segment ids, id = R + 256 G + 256^2 B,
0 = void) plus `<dir>/pred.json`. Ground truth: `<root>/<split>/panoptic_video/<image_id>_`
`gtFine_color.png` plus `<root>/panoptic_gt_<split>_city_vps.json`.

The single-file formats of the other layouts (KITTI-STEP PNG, Cityscapes-DVPS prediction and
depth PNGs) are written by `vipdl.formats`. Every file is written to a temporary name in the
target directory and renamed into place, so an interrupted run never leaves a half-written PNG
or JSON behind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vipdl import formats

# Cityscapes-VPS image ids are "<video>_<frame>[_<anything>]"; readers group frames by the
# first token and order them by the (integer) second token.
_VPS_IMAGE_ID = re.compile(r"^[^_/\\]+_\d+(_[^/\\]*)?$")

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
                w.add(image_id, panoptic)

    PNGs are written as soon as they are added (memory stays bounded); `pred.json` is written
    by `close()` (atomically), and not at all if the `with` block raised.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        label_divisor: int,
        ignore_label: int,
        thing_ids: Sequence[int],
    ):
        if not 0 <= ignore_label < label_divisor:
            raise ValueError(f"ignore_label {ignore_label} must be in [0, {label_divisor})")
        self.out_dir = Path(out_dir)
        self._label_divisor = int(label_divisor)
        self._ignore_label = int(ignore_label)
        self._thing_ids = tuple(int(t) for t in thing_ids)
        self._annotations: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self._closed = False
        (self.out_dir / "pan_pred").mkdir(parents=True, exist_ok=True)

    def add(self, image_id: str, panoptic: np.ndarray) -> None:
        """Writes one frame. panoptic: int32 [height, width], semantic * D + instance."""
        if self._closed:
            raise RuntimeError(f"{self.out_dir}: writer already closed")
        if not image_id or "/" in image_id or "\\" in image_id:
            raise ValueError(f"invalid image_id {image_id!r}")
        if image_id in self._seen:
            raise ValueError(f"{self.out_dir}: image_id {image_id!r} added twice")
        ids, info = panoptic_to_segments(
            panoptic,
            label_divisor=self._label_divisor,
            ignore_label=self._ignore_label,
            thing_ids=self._thing_ids,
            what=f"prediction {image_id!r}",
        )
        file_name = f"{image_id}.png"
        formats.write_rgb_ids(self.out_dir / "pan_pred" / file_name, ids)
        self._seen.add(image_id)
        self._annotations.append(
            {"image_id": image_id, "file_name": file_name, "segments_info": info}
        )

    def close(self) -> None:
        """Writes pred.json (atomically). Idempotent."""
        if self._closed:
            return
        formats.atomic_write_json(self.out_dir / "pred.json", {"annotations": self._annotations})
        self._closed = True

    def __enter__(self) -> VpsPredictionWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # Leave no pred.json that would describe an incomplete set of PNGs.
            self._closed = True


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

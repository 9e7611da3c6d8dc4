"""Writers for panoptic predictions and ground truth in the official evaluation layouts.

* Cityscapes-VPS (mcahny/vps `tools/eval_vpq.py`): `<dir>/pan_pred/<image_id>.png` (RGB segment
  ids, id = R + 256 G + 256^2 B, 0 = void) plus `<dir>/pred.json`; ground truth as
  `<root>/<split>/panoptic_video/<image_id>_gtFine_color.png` plus
  `<root>/panoptic_gt_<split>_city_vps.json`.
* Cityscapes-DVPS (ViP-DeepLab `eval_dvpq.py`): prediction PNG with channel 0 = class,
  channel 1 = instance; depth as uint16 PNG of metres * 256.
* KITTI-STEP: RGB PNG, R = semantic, G * 256 + B = instance.

Every file is written to a temporary name in the target directory and renamed into place, so
an interrupted run never leaves a half-written PNG or JSON behind.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vipdl.data import labels
from vipdl.data.descriptors import DatasetDescriptor

_MAX_RGB_ID = 1 << 24
# Cityscapes-VPS image ids are "<video>_<frame>[_<anything>]"; readers group frames by the
# first token and order them by the (integer) second token.
_VPS_IMAGE_ID = re.compile(r"^[^_/\\]+_\d+(_[^/\\]*)?$")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` via a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes `obj` as JSON (NaN -> error; use None) atomically."""
    atomic_write_bytes(path, json.dumps(obj, indent=1, allow_nan=False).encode())


def atomic_write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes a uint8 [h, w] / [h, w, 3] or uint16 [h, w] array as a lossless PNG, atomically."""
    array = np.ascontiguousarray(array)
    if (array.dtype == np.uint16 and array.ndim == 2) or (
        array.dtype == np.uint8 and array.ndim in (2, 3)
    ):
        image = Image.fromarray(array)
    else:
        raise ValueError(
            f"{path}: cannot write a {array.dtype} array of shape {array.shape} as PNG"
        )
    with tempfile.SpooledTemporaryFile() as buf:
        image.save(buf, format="PNG")
        buf.seek(0)
        atomic_write_bytes(path, buf.read())


def _check_panoptic(panoptic: np.ndarray, what: str) -> np.ndarray:
    panoptic = np.asarray(panoptic)
    if panoptic.ndim != 2 or not np.issubdtype(panoptic.dtype, np.integer):
        raise ValueError(
            f"{what}: expected an integer panoptic map [height, width], "
            f"got {panoptic.dtype} of shape {panoptic.shape}"
        )
    if panoptic.size and panoptic.min() < 0:
        raise ValueError(f"{what}: negative panoptic value {panoptic.min()}")
    return panoptic.astype(np.int64)


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
    panoptic = _check_panoptic(panoptic, what)
    values, areas = np.unique(panoptic, return_counts=True)
    semantic = values // label_divisor
    instance = values % label_divisor
    is_void = semantic == ignore_label
    seg_ids = np.where(is_void, 0, values + 1)
    if seg_ids.size and seg_ids.max() >= _MAX_RGB_ID:
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
    """Writes predictions in the Cityscapes-VPS layout: <out_dir>/pan_pred/<image_id>.png + pred.json.

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
        atomic_write_png(self.out_dir / "pan_pred" / file_name, labels.id_to_rgb(ids))
        self._seen.add(image_id)
        self._annotations.append(
            {"image_id": image_id, "file_name": file_name, "segments_info": info}
        )

    def close(self) -> None:
        """Writes pred.json (atomically). Idempotent."""
        if self._closed:
            return
        atomic_write_json(self.out_dir / "pred.json", {"annotations": self._annotations})
        self._closed = True

    def __enter__(self) -> VpsPredictionWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # Leave no pred.json that would describe an incomplete set of PNGs.
            self._closed = True


def vps_categories(descriptor: DatasetDescriptor) -> list[dict[str, Any]]:
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
    descriptor: DatasetDescriptor,
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
      descriptor: the dataset's classes, things, ignore label and label divisor.
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
        atomic_write_png(out_dir / gt_name, labels.id_to_rgb(ids))
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
    atomic_write_json(
        root / f"panoptic_gt_{split}_city_vps.json",
        {
            "images": [images[i] for i in order],
            "annotations": [annotations[i] for i in order],
            "categories": vps_categories(descriptor),
        },
    )


def write_step_png(path: str | os.PathLike, panoptic: np.ndarray, *, label_divisor: int) -> None:
    """Writes a KITTI-STEP panoptic PNG (R = semantic, G * 256 + B = instance), atomically.

    Args:
      path: output file.
      panoptic: int [height, width], `semantic * label_divisor + instance`.
      label_divisor: the D of the in-memory encoding.
    """
    panoptic = _check_panoptic(panoptic, str(path))
    atomic_write_png(path, labels.panoptic_to_step_rgb(panoptic, label_divisor))


def write_dvps_panoptic_png(
    path: str | os.PathLike, panoptic: np.ndarray, *, label_divisor: int
) -> None:
    """Writes a Cityscapes-DVPS prediction PNG (channel 0 = class, channel 1 = instance).

    This is the format `eval_dvpq.py` reads; instance ids must be < 256 (one byte).

    Args:
      path: output file.
      panoptic: int [height, width], `semantic * label_divisor + instance`.
      label_divisor: the D of the in-memory encoding.
    """
    panoptic = _check_panoptic(panoptic, str(path))
    semantic, instance = panoptic // label_divisor, panoptic % label_divisor
    if panoptic.size and (semantic.max() > 255 or instance.max() > 255):
        raise ValueError(
            f"{path}: class and instance must be <= 255 for the DVPS prediction PNG, got "
            f"max class {semantic.max()} and max instance {instance.max()}"
        )
    rgb = np.stack([semantic, instance, np.zeros_like(semantic)], axis=-1).astype(np.uint8)
    atomic_write_png(path, rgb)


def write_depth_png(path: str | os.PathLike, depth: np.ndarray) -> None:
    """Writes depth (float [height, width], metres, 0 = none) as uint16 PNG of depth * 256."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"{path}: expected depth [height, width], got shape {depth.shape}")
    if depth.size and (not np.isfinite(depth).all() or depth.min() < 0):
        raise ValueError(f"{path}: depth must be finite and >= 0")
    scaled = np.round(depth * 256.0)
    if scaled.size and scaled.max() > 65535:
        raise ValueError(f"{path}: depth {depth.max():.2f} m exceeds 255.99 m (uint16 / 256)")
    atomic_write_png(path, scaled.astype(np.uint16))

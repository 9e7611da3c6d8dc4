"""Writes the synthetic world (`vipdl.data.synthetic`) in the on-disk layouts of real datasets.

The written trees are read back by `vipdl.data.layouts` and converted by `vipdl.data.builders`
like a download, and their ground truth feeds the evaluation command lines as is, so the
synthetic data exercises the same code paths as real data. Layouts:

* `cityscapes_vps`: `<root>/<split>/img/{vid:04d}_{raw+1:04d}_synth_{vid:06d}_{raw:06d}_`
  `leftImg8bit.png` (annotated frames), `<split>/img_all/synth_{vid:06d}_{raw:06d}_`
  `leftImg8bit.png` (all frames), `<split>/panoptic_video/*_gtFine_color.png` and
  `<root>/panoptic_gt_<split>_city_vps.json` (written by `vipdl.evaluation.writers`).
* `kitti_step`: `<root>/images|panoptic_maps/<split>/{vid:04d}/{raw:06d}.png`, every frame.
* `cityscapes_dvps`: `<root>/video_sequence/<split>/{vid:06d}_{k:06d}_synth_{vid:06d}_`
  `{raw:06d}_` + `leftImg8bit.png` / `gtFine_instanceTrainIds.png` (void 32000) /
  `depth.png`, for the annotated frames k = 0, 1, ...
* `custom`: your-own-videos format (`vipdl.data.custom`, docs/datasets.md#custom) with another
  class set, `CUSTOM_CLASSES`: `<root>/dataset.json`, `<root>/<split>/{vid:06d}/frames/`
  (every raw frame), `labels/` + `labels.json` (annotated frames, COCO-panoptic style) and
  `depth/`. Its `<split>/` folders clash with `cityscapes_vps`, so it is written alone.

`<root>/synthetic.json` (config, seed, splits, layouts, frame counts) is written last and read
by `read_metadata`. The file encodings are those of `vipdl.formats`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tqdm

from vipdl import formats
from vipdl.data.synthetic import (
    DEFAULT_CONFIG,
    DESCRIPTOR,
    SyntheticConfig,
    SyntheticVideo,
    generate_video,
    sequence_id,
    split_seed,
)
from vipdl.evaluation import writers

LAYOUT_NAMES = ("cityscapes_vps", "kitti_step", "cityscapes_dvps", "custom")
DEFAULT_LAYOUTS = ("cityscapes_vps", "kitti_step", "cityscapes_dvps")
METADATA_FILE = "synthetic.json"
CITY = "synth"  # The "city" token of Cityscapes-style file names.


def _write_image(path: Path, image, first: list[Path]) -> None:
    """Writes `image` (uint8 [h, w, 3]) as PNG once per frame; further layouts get a hard link.

    `first` holds the first file written for this frame (empty before).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if first:
        try:
            os.link(first[0], path)
        except OSError:
            shutil.copyfile(first[0], path)
        return
    # Fast compression: the noisy frames barely compress anyway.
    formats.atomic_write_png(path, image, compress_level=1)
    first.append(path)


# The `custom` export's classes: the synthetic ones merged into another class set, so a model
# of the synthetic world must re-learn its last semantic layer (name, colour, synthetic classes,
# is thing). Category ids in the label files are not the class indices (as in COCO exports).
CUSTOM_CLASSES = (
    ("ground", (128, 64, 128), ("road", "sidewalk"), False),
    ("building", (70, 70, 70), ("building",), False),
    ("vegetation", (107, 142, 35), ("vegetation",), False),
    ("sky", (70, 130, 180), ("sky",), False),
    ("person", (220, 20, 60), ("person",), True),
    ("vehicle", (0, 0, 142), ("car", "bicycle"), True),
)
CUSTOM_CATEGORY_IDS = (1, 2, 3, 4, 10, 11)


def custom_spec(name: str = "synthetic_custom") -> dict:
    """The `dataset.json` of the `custom` export."""
    return {
        "name": name,
        "class_names": [c[0] for c in CUSTOM_CLASSES],
        "colors": [list(c[1]) for c in CUSTOM_CLASSES],
        "thing_ids": [k for k, c in enumerate(CUSTOM_CLASSES) if c[3]],
        "category_ids": list(CUSTOM_CATEGORY_IDS),
        "ignore_label": 0,
        "depth_scale": formats.DEPTH_SCALE,
    }


def _custom_class_map() -> np.ndarray:
    """Synthetic class id -> custom class index, int64 [num synthetic classes]."""
    out = np.full(DESCRIPTOR.num_classes, -1, np.int64)
    for k, (_, _, members, _) in enumerate(CUSTOM_CLASSES):
        for member in members:
            out[DESCRIPTOR.class_names.index(member)] = k
    return out


def _write_custom_video(root: Path, split: str, v: int, video: SyntheticVideo) -> None:
    """One video in the custom format: frames, COCO-panoptic labels + labels.json, depth."""
    base = root / split / sequence_id(v)
    for t in range(video.frames.shape[0]):
        formats.atomic_write_png(base / "frames" / f"{t:06d}.png", video.frames[t],
                                 compress_level=1)
    classes = _custom_class_map()
    d = DESCRIPTOR.label_divisor
    objects: dict[int, int] = {}  # synthetic panoptic value -> segment id, for the whole video
    annotations = []
    for t in video.annotated_frames:
        panoptic = video.panoptic[t].astype(np.int64)
        ids = np.zeros(panoptic.shape, np.int64)  # 0 = unlabelled (void)
        segments = []
        for value in np.unique(panoptic):
            semantic, instance = divmod(int(value), d)
            if semantic == DESCRIPTOR.ignore_label:
                continue
            cls = int(classes[semantic])
            thing = CUSTOM_CLASSES[cls][3]
            if thing and instance:
                # An annotation tool's object id: one per object for the whole video.
                sid = objects.setdefault(int(value), 100 + len(objects))
            else:
                sid = cls + 1 if not thing else 50 + cls  # Stuff, or a crowd region.
            mask = panoptic == value
            ids[mask] = sid
            if not any(seg["id"] == sid for seg in segments):
                segments.append({"id": sid, "category_id": CUSTOM_CATEGORY_IDS[cls],
                                 "iscrowd": int(thing and not instance), "area": 0})
            next(seg for seg in segments if seg["id"] == sid)["area"] += int(mask.sum())
        formats.write_rgb_ids(base / "labels" / f"{t:06d}.png", ids)
        formats.write_depth_png(base / "depth" / f"{t:06d}.png", video.depth[t])
        annotations.append({"file_name": f"{t:06d}.png", "image_id": f"{t:06d}",
                            "segments_info": segments})
    categories = [{"id": cid, "name": c[0], "isthing": int(c[3]), "color": list(c[1])}
                  for cid, c in zip(CUSTOM_CATEGORY_IDS, CUSTOM_CLASSES)]
    formats.atomic_write_json(base / "labels.json",
                              {"annotations": annotations, "categories": categories})


def _write_video(
    root: Path, split: str, v: int, video: SyntheticVideo, layouts: Sequence[str]
) -> list:
    """Writes one video in `layouts`; returns its Cityscapes-VPS ground-truth frames."""
    gt_frames = []
    annotated = video.annotated_frames
    seq = sequence_id(v)
    for t in range(video.frames.shape[0]):
        image = video.frames[t]
        first: list[Path] = []
        if "cityscapes_vps" in layouts:
            base = f"{CITY}_{seq}_{t:06d}"
            _write_image(root / split / "img_all" / f"{base}_leftImg8bit.png", image, first)
            if t in annotated:
                image_id = f"{v:04d}_{t + 1:04d}_{base}"
                _write_image(root / split / "img" / f"{image_id}_leftImg8bit.png", image, first)
                gt_frames.append((image_id, video.panoptic[t]))
        if "kitti_step" in layouts:  # KITTI-STEP labels every frame.
            name = f"{v:04d}/{t:06d}.png"
            _write_image(root / "images" / split / name, image, first)
            formats.write_step_png(
                root / "panoptic_maps" / split / name,
                video.panoptic[t],
                label_divisor=DESCRIPTOR.label_divisor,
            )
        if "cityscapes_dvps" in layouts and t in annotated:
            k = annotated.index(t)
            stem = f"{seq}_{k:06d}_{CITY}_{seq}_{t:06d}_"
            base = root / "video_sequence" / split
            _write_image(base / f"{stem}leftImg8bit.png", image, first)
            formats.write_dvps_label_png(
                base / f"{stem}gtFine_instanceTrainIds.png",
                video.panoptic[t],
                label_divisor=DESCRIPTOR.label_divisor,
                ignore_label=DESCRIPTOR.ignore_label,
            )
            formats.write_depth_png(base / f"{stem}depth.png", video.depth[t])
    if "custom" in layouts:
        _write_custom_video(root, split, v, video)
    return gt_frames


def write_dataset(
    root: str | os.PathLike,
    *,
    split_videos: Mapping[str, int],
    config: SyntheticConfig = DEFAULT_CONFIG,
    seed: int = 0,
    layouts: Sequence[str] = DEFAULT_LAYOUTS,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Generates videos and writes them in the on-disk layouts of the real datasets.

    Video `i` of split `s` is `generate_video(config, split_seed(seed, s, i))`; the layouts are
    described in the module docstring. The whole tree is built in a temporary sibling directory
    and renamed into place, so an interrupted run leaves `root` untouched.

    Args:
        root: output directory; must not exist (or be empty) unless `overwrite`.
        split_videos: number of videos per split, e.g. `{"train": 40, "val": 10}`.
        config: world options.
        seed: base seed.
        layouts: subset of `LAYOUT_NAMES`.
        overwrite: replace an existing dataset at `root`.
        progress: show a progress bar.

    Returns:
        `root` as a `Path`.
    """
    root = Path(root)
    unknown = sorted(set(layouts) - set(LAYOUT_NAMES))
    if unknown or not layouts:
        raise ValueError(f"layouts must be a non-empty subset of {LAYOUT_NAMES}, got {layouts}")
    if "custom" in layouts and "cityscapes_vps" in layouts:
        raise ValueError("the custom and cityscapes_vps layouts both use <out>/<split>/ folders; "
                         "write them to different --out directories")
    bad = {s: n for s, n in split_videos.items() if n < 1 or not re.fullmatch(r"\w+", s)}
    if bad or not split_videos:
        raise ValueError(f"split_videos needs word-like split names and >= 1 video, got {bad}")
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{root} exists and is not empty; pass overwrite=True (--overwrite) to replace it"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
    try:
        total = sum(split_videos.values())
        bar = tqdm.tqdm(
            total=total, desc=f"writing {root.name}", unit="video", disable=not progress
        )
        for split, count in split_videos.items():
            gt_frames = []
            for v in range(count):
                video = generate_video(config, split_seed(seed, split, v))
                gt_frames += _write_video(tmp, split, v, video, layouts)
                bar.update(1)
            if "cityscapes_vps" in layouts:
                writers.write_vps_ground_truth(tmp, split, gt_frames, descriptor=DESCRIPTOR)
        bar.close()
        if "custom" in layouts:
            spec = custom_spec()  # One field a line: it is the example users copy.
            text = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in spec.items())
            formats.atomic_write_bytes(tmp / "dataset.json", f"{{\n{text}\n}}\n".encode())
        num_annotated = len(config.annotated_frames)
        metadata = {
            "config": dataclasses.asdict(config),
            "seed": seed,
            "split_videos": dict(split_videos),
            "layouts": list(layouts),
            "split_num_frames": {s: n * num_annotated for s, n in split_videos.items()},
            "split_num_raw_frames": {s: n * config.num_frames for s, n in split_videos.items()},
        }
        formats.atomic_write_json(tmp / METADATA_FILE, metadata)
        formats.replace_dir(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def read_metadata(root: str | os.PathLike) -> dict:
    """Reads `<root>/synthetic.json` written by `write_dataset`, with a clear error."""
    path = Path(root) / METADATA_FILE
    try:
        meta = json.loads(path.read_text())
        meta["config"] = SyntheticConfig(**meta["config"])
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} missing: not a complete synthetic dataset (run vipdl-make-synthetic)"
        ) from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a valid synthetic dataset description ({e})") from e
    return meta

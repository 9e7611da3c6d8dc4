"""Readers of the on-disk ground-truth / prediction layouts, with validation.

Every problem is reported as a `ValueError` naming the offending file and what was expected:
`EvalInputError` for the checks made here, `vipdl.formats.FormatError` for a file that cannot
be decoded in its encoding. File-level checks (missing / extra files, JSON structure,
categories) run up front in the `read_*` functions; pixel-level checks (PNG decoding, sizes,
segment ids) run while the frames are evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vipdl import formats
from vipdl.evaluation import pq


class EvalInputError(ValueError):
    """Bad evaluation input; the message names the file and what is wrong."""


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EvalInputError(f"{path}: not valid JSON ({e})") from None


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise EvalInputError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise EvalInputError(f"{where}: field {key!r} must be {names}, got {value!r}")
    return value


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise EvalInputError(f"{path}: {what} directory not found")


def _pngs(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.lower().endswith(".png"))


def split_frame_name(name: str, where: str) -> tuple[str, int]:
    """`<video>_<frame>[_...]` -> (video, frame); frame must be an integer token."""
    parts = name.split("_")
    if len(parts) < 2 or not parts[0] or not re.fullmatch(r"\d+", parts[1]):
        raise EvalInputError(
            f"{where}: name {name!r} must start with '<video>_<frame>' (integer frame token)"
        )
    return parts[0], int(parts[1])


# --- Cityscapes-VPS ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VpsFrame:
    """One annotated frame of a Cityscapes-VPS style evaluation.

    Attributes:
      image_id: the image id shared by the GT JSON, pred.json and `pan_pred/<image_id>.png`.
      video, frame: parsed from the image id (`<video>_<frame>_...`).
      gt_png, pred_png: paths of the RGB segment-id PNGs.
      gt_segments: gt segment id -> (category id, iscrowd, area or None).
      pred_segments: predicted segment id -> category id.
      size: (height, width) from the GT JSON `images` entry, or None.
    """

    image_id: str
    video: str
    frame: int
    gt_png: Path
    pred_png: Path
    gt_segments: Mapping[int, tuple[int, int, int | None]]
    pred_segments: Mapping[int, int]
    size: tuple[int, int] | None


@dataclasses.dataclass(frozen=True)
class VpsSet:
    """A validated Cityscapes-VPS evaluation set.

    Attributes:
      categories: category id -> {"name", "isthing"}.
      videos: video id -> its frames sorted by frame index.
      gt_json, pred_json: source files (for error messages).
    """

    categories: Mapping[int, Mapping[str, Any]]
    videos: Mapping[str, tuple[VpsFrame, ...]]
    gt_json: Path
    pred_json: Path

    @property
    def thing_ids(self) -> tuple[int, ...]:
        return tuple(c for c, v in self.categories.items() if v["isthing"])

    @property
    def stuff_ids(self) -> tuple[int, ...]:
        return tuple(c for c, v in self.categories.items() if not v["isthing"])


def _segments_info(ann: dict, where: str) -> list[dict]:
    info = _field(ann, "segments_info", list, where)
    seen = set()
    for i, seg in enumerate(info):
        w = f"{where} segments_info[{i}]"
        sid = _field(seg, "id", int, w)
        _field(seg, "category_id", int, w)
        if not 0 < sid < 1 << 24:
            raise EvalInputError(f"{w}: segment id {sid} must be in [1, 2^24)")
        if sid in seen:
            raise EvalInputError(f"{w}: duplicate segment id {sid}")
        seen.add(sid)
    return info


def _vps_categories(cats_raw: list, gt_json: Path) -> dict[int, dict[str, Any]]:
    """The GT JSON's `categories`: id -> {"name", "isthing"}."""
    categories: dict[int, dict[str, Any]] = {}
    for i, cat in enumerate(cats_raw):
        w = f"{gt_json} categories[{i}]"
        cid = _field(cat, "id", int, w)
        if cid < 0 or cid in categories:
            raise EvalInputError(f"{w}: category id {cid} is negative or duplicated")
        isthing = _field(cat, "isthing", (int, bool), w)
        categories[cid] = {"name": str(cat.get("name", cid)), "isthing": int(bool(isthing))}
    if not categories:
        raise EvalInputError(f"{gt_json}: 'categories' is empty")
    return categories


def _vps_gt_images(
    images: list, annotations: list, gt_json: Path
) -> tuple[dict[str, dict], dict[str, dict]]:
    """The GT JSON's images and their annotations, each by image id (exactly one per image)."""
    image_info: dict[str, dict] = {}
    for i, img in enumerate(images):
        iid = _field(img, "id", str, f"{gt_json} images[{i}]")
        if iid in image_info:
            raise EvalInputError(f"{gt_json}: image id {iid!r} listed twice")
        image_info[iid] = img
    gt_anns: dict[str, dict] = {}
    for i, ann in enumerate(annotations):
        iid = _field(ann, "image_id", str, f"{gt_json} annotations[{i}]")
        if iid not in image_info:
            raise EvalInputError(f"{gt_json}: annotation for unknown image id {iid!r}")
        if iid in gt_anns:
            raise EvalInputError(f"{gt_json}: two annotations for image id {iid!r}")
        gt_anns[iid] = ann
    missing = sorted(set(image_info) - set(gt_anns))
    if missing:
        raise EvalInputError(f"{gt_json}: no annotation for image ids {missing[:5]}")
    return image_info, gt_anns


def _vps_pred_annotations(pred_json: Path, image_ids, gt_json: Path) -> dict[str, dict]:
    """pred.json's annotations by image id; every one must name a GT image."""
    pred = load_json(pred_json)
    pred_anns_raw = _field(pred, "annotations", list, str(pred_json))
    pred_anns: dict[str, dict] = {}
    for i, ann in enumerate(pred_anns_raw):
        iid = _field(ann, "image_id", str, f"{pred_json} annotations[{i}]")
        if iid in pred_anns:
            raise EvalInputError(f"{pred_json}: two annotations for image id {iid!r}")
        pred_anns[iid] = ann
    extra = sorted(set(pred_anns) - set(image_ids))
    if extra:
        raise EvalInputError(
            f"{pred_json}: annotations for image ids not in {gt_json.name}: {extra[:5]}"
        )
    return pred_anns


def _vps_gt_segments(
    ann: dict, categories: Mapping[int, Any], where: str
) -> dict[int, tuple[int, int, int | None]]:
    """A GT annotation's segments: id -> (category id, iscrowd, area or None)."""
    gt_segments = {}
    for seg in _segments_info(ann, where):
        cid = seg["category_id"]
        if cid not in categories:
            raise EvalInputError(f"{where}: segment {seg['id']} has unknown category_id {cid}")
        crowd = int(bool(seg.get("iscrowd", 0)))
        area = seg.get("area")
        if area is not None and (not isinstance(area, int) or isinstance(area, bool)):
            raise EvalInputError(f"{where}: segment {seg['id']} area must be an integer")
        gt_segments[seg["id"]] = (cid, crowd, area)
    return gt_segments


def _vps_pred_segments(ann: dict, categories: Mapping[int, Any], where: str) -> dict[int, int]:
    """A predicted annotation's segments: id -> category id."""
    pred_segments = {}
    for seg in _segments_info(ann, where):
        cid = seg["category_id"]
        if cid not in categories:
            raise EvalInputError(f"{where}: segment {seg['id']} has unknown category_id {cid}")
        pred_segments[seg["id"]] = cid
    return pred_segments


def _ordered_videos(
    videos: Mapping[str, list[VpsFrame]], gt_json: Path
) -> dict[str, tuple[VpsFrame, ...]]:
    """Videos sorted by name, their frames by frame index; two frames at one index are refused."""
    ordered = {}
    for video in sorted(videos):
        frames = sorted(videos[video], key=lambda f: f.frame)
        for a, b in zip(frames, frames[1:]):
            if a.frame == b.frame:
                raise EvalInputError(
                    f"{gt_json}: image ids {a.image_id!r} and {b.image_id!r} have the same "
                    f"video {video!r} and frame {a.frame}"
                )
        ordered[video] = tuple(frames)
    return ordered


def read_vps(
    gt_json: str | os.PathLike, gt_dir: str | os.PathLike, pred_dir: str | os.PathLike
) -> VpsSet:
    """Reads and validates a Cityscapes-VPS ground truth + prediction pair of folders.

    Args:
      gt_json: `panoptic_gt_<split>_city_vps.json` (images / annotations / categories).
      gt_dir: folder of the GT PNGs (`panoptic_video/`).
      pred_dir: folder holding `pred.json` and `pan_pred/<image_id>.png`.

    Returns:
      The frames grouped by video (first `_` token of the image id) and sorted by the integer
      second token; predictions are paired with ground truth by image id.
    """
    gt_json, gt_dir, pred_dir = Path(gt_json), Path(gt_dir), Path(pred_dir)
    gt = load_json(gt_json)
    where = str(gt_json)
    images = _field(gt, "images", list, where)
    annotations = _field(gt, "annotations", list, where)
    cats_raw = _field(gt, "categories", list, where)
    if not images:
        raise EvalInputError(f"{gt_json}: 'images' is empty")
    categories = _vps_categories(cats_raw, gt_json)
    image_info, gt_anns = _vps_gt_images(images, annotations, gt_json)

    _require_dir(gt_dir, "ground-truth PNG")
    if not _pngs(gt_dir):
        raise EvalInputError(f"{gt_dir}: no ground-truth PNGs (empty directory)")
    _require_dir(pred_dir, "prediction")
    pred_json = pred_dir / "pred.json"
    pred_anns = _vps_pred_annotations(pred_json, image_info, gt_json)
    pan_dir = pred_dir / "pan_pred"
    _require_dir(pan_dir, "prediction PNG (pan_pred)")
    pred_pngs = set(_pngs(pan_dir))
    extra_png = sorted(n for n in pred_pngs if n[: -len(".png")] not in image_info)
    if extra_png:
        raise EvalInputError(
            f"{pan_dir}: extra prediction files not in {gt_json.name}: {extra_png[:5]}"
        )

    videos: dict[str, list[VpsFrame]] = {}
    for iid, img in image_info.items():
        video, frame = split_frame_name(iid, f"{gt_json} image id")
        ann = gt_anns[iid]
        w = f"{gt_json} annotation of {iid!r}"
        file_name = ann.get("file_name") or str(img.get("file_name", "")).replace(
            "_leftImg8bit.png", "_gtFine_color.png"
        )
        if not isinstance(file_name, str) or not file_name:
            raise EvalInputError(f"{w}: no GT file name")
        gt_png = gt_dir / file_name
        if not gt_png.is_file():
            raise EvalInputError(f"{gt_png}: ground-truth PNG of image {iid!r} not found")
        gt_segments = _vps_gt_segments(ann, categories, w)
        if iid not in pred_anns:
            raise EvalInputError(f"{pred_json}: no prediction for image id {iid!r} (video {video})")
        if f"{iid}.png" not in pred_pngs:
            raise EvalInputError(
                f"{pan_dir / (iid + '.png')}: prediction PNG missing (video {video})"
            )
        pred_segments = _vps_pred_segments(pred_anns[iid], categories,
                                           f"{pred_json} annotation of {iid!r}")
        size = None
        if "height" in img and "width" in img:
            size = (int(img["height"]), int(img["width"]))
        videos.setdefault(video, []).append(
            VpsFrame(
                iid, video, frame, gt_png, pan_dir / f"{iid}.png", gt_segments, pred_segments, size
            )
        )
    return VpsSet(categories, _ordered_videos(videos, gt_json), gt_json, pred_json)


def vps_frame_pairs(frame: VpsFrame) -> pq.PairCounts:
    """Decodes one frame's GT and prediction PNGs once and returns their pair histogram.

    Validates sizes, that every PNG id is listed in its JSON and vice versa, and that GT areas
    in the JSON (when present) equal the pixel counts.
    """
    gt_ids = formats.read_rgb_ids(frame.gt_png)
    if frame.size is not None and gt_ids.shape != frame.size:
        raise EvalInputError(
            f"{frame.gt_png}: size {gt_ids.shape} differs from the JSON's (height, width) "
            f"{frame.size}"
        )
    pred_ids = formats.read_rgb_ids(frame.pred_png)
    if pred_ids.shape != gt_ids.shape:
        raise EvalInputError(
            f"{frame.pred_png}: prediction size {pred_ids.shape} differs from ground truth "
            f"{gt_ids.shape} ({frame.gt_png.name})"
        )
    gt_known = np.array(sorted({0, *frame.gt_segments}), np.int64)
    pred_known = np.array(sorted({0, *frame.pred_segments}), np.int64)
    try:
        gvals, gi = pq.dense_ids(gt_ids, gt_known)
    except pq.UnknownIdsError as e:
        raise EvalInputError(
            f"{frame.gt_png}: segment ids {e.ids[:10]} are in the PNG but not in the GT JSON "
            f"annotation of {frame.image_id!r}"
        ) from None
    try:
        pvals, pi = pq.dense_ids(pred_ids, pred_known)
    except pq.UnknownIdsError as e:
        raise EvalInputError(
            f"{frame.pred_png}: segment ids {e.ids[:10]} are in the PNG but not in pred.json "
            f"for {frame.image_id!r}"
        ) from None
    pairs = pq.dense_pair_counts(gvals, gi, pvals, pi)
    gt_area = _areas(pairs.gt, pairs.count)
    pred_area = _areas(pairs.pred, pairs.count)
    absent = sorted(s for s in frame.gt_segments if s not in gt_area)
    if absent:
        raise EvalInputError(
            f"{frame.gt_png}: segment ids {absent[:10]} are in the GT JSON but not in the PNG"
        )
    for sid, (_, _, area) in frame.gt_segments.items():
        if area is not None and area != gt_area[sid]:
            raise EvalInputError(
                f"{frame.gt_png}: segment {sid} has area {gt_area[sid]} in the PNG but "
                f"{area} in the GT JSON"
            )
    absent = sorted(s for s in frame.pred_segments if s not in pred_area)
    if absent:
        raise EvalInputError(
            f"{frame.pred_png}: segment ids {absent[:10]} are in pred.json but not in the PNG"
        )
    return pairs


def _areas(ids: np.ndarray, count: np.ndarray) -> dict[int, int]:
    vals, inv = np.unique(ids, return_inverse=True)
    return dict(
        zip(vals.tolist(), np.bincount(inv.ravel(), weights=count).astype(np.int64).tolist())
    )


def _index_frames(directory: Path, names: list[str], what: str) -> dict[tuple[str, int], Path]:
    """(video, frame) -> path for files named `<video>_<frame>_...`; duplicates are errors."""
    out: dict[tuple[str, int], Path] = {}
    for name in names:
        key = split_frame_name(name[: -len(".png")], str(directory / name))
        if key in out:
            raise EvalInputError(
                f"{directory}: {what} files {out[key].name!r} and {name!r} are both video "
                f"{key[0]} frame {key[1]}"
            )
        out[key] = directory / name
    return out


def _pair_by_sequence(
    gt: Mapping[tuple[str, int], Path],
    other: Mapping[tuple[str, int], Path],
    gt_dir: Path,
    other_dir: Path,
    what: str,
) -> None:
    """Raises a clear error if `other` does not hold exactly the frames of `gt`."""
    seqs = sorted({k[0] for k in gt} | {k[0] for k in other})
    for seq in seqs:
        g = sorted(k for k in gt if k[0] == seq)
        o = sorted(k for k in other if k[0] == seq)
        if g == o:
            continue
        missing = [f"{s}_{f}" for s, f in sorted(set(g) - set(o))]
        extra = [other[k].name for k in sorted(set(o) - set(g))]
        detail = []
        if missing:
            detail.append(f"missing frames {missing[:5]}")
        if extra:
            detail.append(f"extra files {extra[:5]}")
        raise EvalInputError(
            f"{other_dir}: sequence {seq} has {len(o)} {what} frames but {gt_dir} has {len(g)} "
            f"({'; '.join(detail)})"
        )


@dataclasses.dataclass(frozen=True)
class DvpsFrame:
    """One annotated frame of Cityscapes-DVPS: GT panoptic / depth and the predictions."""

    sequence: str
    frame: int
    gt_panoptic: Path
    pred_panoptic: Path
    gt_depth: Path | None
    pred_depth: Path | None


def read_dvps(
    gt_dir: str | os.PathLike,
    pred_dir: str | os.PathLike,
    depth_dir: str | os.PathLike | None = None,
) -> dict[str, tuple[DvpsFrame, ...]]:
    """Pairs the Cityscapes-DVPS ground truth with panoptic (and depth) predictions.

    Ground truth: `<gt_dir>/<seq>_<frame>_..._gtFine_instanceTrainIds.png` and `..._depth.png`.
    Predictions: one PNG per GT frame in `pred_dir` (and `depth_dir`), named like the input
    image (`<seq>_<frame>_..._leftImg8bit.png`); frames are paired by their (seq, frame) tokens,
    not by list position.

    Returns:
      sequence -> frames sorted by frame index.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    _require_dir(gt_dir, "ground-truth")
    names = _pngs(gt_dir)
    pan_names = [n for n in names if n.endswith("_gtFine_instanceTrainIds.png")]
    if not pan_names:
        raise EvalInputError(
            f"{gt_dir}: no '*_gtFine_instanceTrainIds.png' ground truth (empty directory?)"
        )
    gt = _index_frames(gt_dir, pan_names, "ground-truth panoptic")
    gt_depth = _index_frames(gt_dir, [n for n in names if n.endswith("_depth.png")], "GT depth")
    _require_dir(pred_dir, "prediction")
    pred_names = _pngs(pred_dir)
    if not pred_names:
        raise EvalInputError(f"{pred_dir}: no prediction PNGs (empty directory)")
    pred = _index_frames(pred_dir, pred_names, "prediction")
    _pair_by_sequence(gt, pred, gt_dir, pred_dir, "predicted panoptic")
    pred_depth = None
    if depth_dir is not None:
        depth_dir = Path(depth_dir)
        _require_dir(depth_dir, "depth prediction")
        depth_names = _pngs(depth_dir)
        if not depth_names:
            raise EvalInputError(f"{depth_dir}: no depth prediction PNGs (empty directory)")
        pred_depth = _index_frames(depth_dir, depth_names, "depth prediction")
        _pair_by_sequence(gt, pred_depth, gt_dir, depth_dir, "predicted depth")
        missing = sorted(set(gt) - set(gt_depth))
        if missing:
            s, f = missing[0]
            raise EvalInputError(
                f"{gt_dir}: no '*_depth.png' ground truth for sequence {s} frame {f} "
                f"({len(missing)} frames lack GT depth)"
            )
    seqs: dict[str, list[DvpsFrame]] = {}
    for key in sorted(gt):
        seqs.setdefault(key[0], []).append(
            DvpsFrame(
                key[0],
                key[1],
                gt[key],
                pred[key],
                gt_depth.get(key) if pred_depth is not None else None,
                pred_depth[key] if pred_depth is not None else None,
            )
        )
    return {s: tuple(f) for s, f in seqs.items()}


@dataclasses.dataclass(frozen=True)
class StepFrame:
    """One frame of a KITTI-STEP style sequence: `<root>/<seq>/<frame>.png` for GT and pred."""

    sequence: str
    name: str
    gt: Path
    pred: Path


def read_step(
    gt_dir: str | os.PathLike, pred_dir: str | os.PathLike
) -> dict[str, tuple[StepFrame, ...]]:
    """Pairs KITTI-STEP ground truth and predictions (`<dir>/<seq>/<frame>.png`) by name.

    Returns:
      sequence -> frames sorted by file name.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    _require_dir(gt_dir, "ground-truth")
    _require_dir(pred_dir, "prediction")
    gt_seqs = sorted(d for d in os.listdir(gt_dir) if (gt_dir / d).is_dir())
    if not gt_seqs:
        raise EvalInputError(f"{gt_dir}: no sequence folders '<seq>/<frame>.png' (empty directory)")
    pred_seqs = sorted(d for d in os.listdir(pred_dir) if (pred_dir / d).is_dir())
    extra = sorted(set(pred_seqs) - set(gt_seqs))
    if extra:
        raise EvalInputError(f"{pred_dir}: extra sequence folders not in {gt_dir}: {extra[:5]}")
    out = {}
    for seq in gt_seqs:
        g = _pngs(gt_dir / seq)
        if not g:
            raise EvalInputError(f"{gt_dir / seq}: no ground-truth PNGs (empty directory)")
        if seq not in pred_seqs:
            raise EvalInputError(f"{pred_dir / seq}: prediction sequence folder missing")
        p = _pngs(pred_dir / seq)
        if g != p:
            missing, extra = sorted(set(g) - set(p)), sorted(set(p) - set(g))
            raise EvalInputError(
                f"{pred_dir / seq}: {len(p)} predicted frames but {len(g)} ground-truth frames "
                f"in {gt_dir / seq} (missing {missing[:5]}, extra {extra[:5]})"
            )
        out[seq] = tuple(StepFrame(seq, n, gt_dir / seq / n, pred_dir / seq / n) for n in g)
    return out

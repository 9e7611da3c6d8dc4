"""Readers of the raw on-disk layouts of the supported datasets.

Each `Layout` lists the videos of a split as ordered annotated frames (image, label and
optionally depth files), checks the structure (matching image/label pairs, no missing frame in
a sequence, expected counts) and decodes label files into int32 `semantic * D + instance` with
the dataset's descriptor. Every problem found is collected and raised together as one
`DatasetError` naming each file, so a user fixes a broken download in one go.

Layouts (see docs/datasets.md for where to get the data):

* `CityscapesVpsLayout`: `<root>/<split>/img/<video>_<frame>_<city>_<seq>_<raw>_leftImg8bit.png`
  and the evaluation ground truth `<root>/<split>/panoptic_video/<id>_gtFine_color.png` (RGB
  segment ids) + `<root>/panoptic_gt_<split>_city_vps.json` (mcahny/vps).
* `CityscapesDvpsLayout`: `<root>/video_sequence/<split>/<seq>_<frame>_<city>_<a>_<b>_` +
  `leftImg8bit.png` / `gtFine_instanceTrainIds.png` (16-bit, class * 1000 + instance, void
  32000) / `depth.png` (uint16 metres * 256, 0 = none) (ViP-DeepLab `cityscapes-dvps/`).
* `StepLayout` (KITTI-STEP, MOTChallenge-STEP): `<root>/images/<split>/<seq>/<frame>.png` and
  `<root>/panoptic_maps/<split>/<seq>/<frame>.png` (R = class, G * 256 + B = instance).
* `VipsegLayout`: `<root>/imgs|images/<video>/<frame>.jpg`, `<root>/panomasks/<video>/<frame>.png`
  (0 void, v < 125: class v - 1, else class v // 100 - 1 with instance v % 100) and the split
  lists `<root>/{train,val,test}.txt` (VIPSeg-Dataset).
* `SemKittiDvpsLayout`: `<root>/video_sequence/<split>/<seq>_<frame>_` + `leftImg8bit.png` /
  `gtFine_class.png` / `gtFine_instance.png` / `depth_<focal>.png` (ViP-DeepLab `semkitti-dvps/`).
* `CityscapesPanopticLayout`, `CocoPanopticLayout`: image sets (every image a one-frame video)
  with COCO-panoptic labels: RGB segment-id PNGs plus a JSON of `segments_info`.
* `vipdl.data.custom.CustomLayout`: your own labelled videos (docs/datasets.md#custom).

The file encodings themselves are `vipdl.formats`; writing the synthetic world in these layouts
is `vipdl.data.synthetic_export`.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np

from vipdl import formats
from vipdl.data import descriptors
from vipdl.data.descriptors import DatasetDescriptor

_MAX_PROBLEMS_SHOWN = 40
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DatasetError(ValueError):
    """Problems found in a dataset on disk.

    Attributes:
        problems: one message per problem, each starting with the file concerned.
    """

    def __init__(self, what: str, problems: Sequence[str]):
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:_MAX_PROBLEMS_SHOWN])
        more = len(self.problems) - _MAX_PROBLEMS_SHOWN
        if more > 0:
            shown += f"\n  ... and {more} more"
        super().__init__(f"{what}: {len(self.problems)} problem(s):\n{shown}")


@dataclasses.dataclass(frozen=True)
class Frame:
    """One annotated frame on disk.

    Attributes:
        index: position among the annotated frames of its video (0, 1, ...).
        token: the frame number written in the file name (raw video frame for Cityscapes-VPS).
        image: RGB image file.
        label: panoptic label file.
        depth: depth file, or None.
    """

    index: int
    token: int
    image: Path
    label: Path
    depth: Path | None = None


@dataclasses.dataclass(frozen=True)
class Video:
    """The annotated frames of one video, in order."""

    sequence_id: str
    frames: tuple[Frame, ...]


# --------------------------------------------------------------------------------------------
# File decoding (codecs in `vipdl.formats`) with errors collected as `DatasetError`.


def _decoded(read, path: Path, *args, **kwargs):
    """`read(path, ...)`, with a bad file (`formats.FormatError`) as a `DatasetError`."""
    try:
        return read(path, *args, **kwargs)
    except formats.FormatError as e:
        raise DatasetError(e.path, [e.problem]) from None


def check_panoptic(
    panoptic: np.ndarray, descriptor: DatasetDescriptor, path: str | os.PathLike
) -> np.ndarray:
    """Validates an int panoptic map against `descriptor`; returns it as int32.

    Class ids must be in [0, num_classes) or the ignore label; void pixels get instance 0.
    Stuff pixels carrying an instance id are set to instance 0: some raw labels do this (e.g.
    VIPSeg value 200 on a stuff class, VIPSeg-Dataset#1) and it carries no information.

    Raises:
        DatasetError naming `path` and the offending class ids.
    """
    d = descriptor.label_divisor
    panoptic = np.asarray(panoptic, np.int64)
    if panoptic.size and panoptic.min() < 0:
        raise DatasetError(str(path), [f"negative label value {panoptic.min()}"])
    semantic = panoptic // d
    classes = np.unique(semantic)
    bad = [int(c) for c in classes if c >= descriptor.num_classes and c != descriptor.ignore_label]
    if bad:
        raise DatasetError(
            str(path),
            [
                f"class ids {bad} outside [0, {descriptor.num_classes}) and not the ignore label "
                f"{descriptor.ignore_label} of {descriptor.name}"
            ],
        )
    keep_instance = np.isin(semantic, descriptor.thing_ids)
    out = np.where(keep_instance, panoptic, semantic * d)
    if out.size and out.max() >= 2**31:
        raise DatasetError(str(path), ["label values do not fit int32"])
    return out.astype(np.int32)


# --------------------------------------------------------------------------------------------
# COCO-panoptic style labels: an RGB PNG of segment ids plus JSON `segments_info`.


def read_segments_info(
    info, *, where: str, problems: list[str]
) -> list[tuple[int, int, bool, int | None]] | None:
    """`[(segment id, category id, iscrowd, area or None), ...]` of one JSON `segments_info`.

    Appends a problem naming `where` and returns None when the entry is malformed.
    """
    try:
        out = []
        for seg in info:
            area = seg.get("area")
            out.append(
                (int(seg["id"]), int(seg["category_id"]), bool(seg.get("iscrowd", 0)),
                 None if area is None else int(area))
            )
        return out
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        problems.append(f"{where}: malformed segments_info ({type(e).__name__}: {e})")
        return None


def numbered_segments(
    segments: Sequence[tuple[int, int, bool, int | None]],
    descriptor: DatasetDescriptor,
    *,
    category_to_class: Mapping[int, int] | None,
    where: str,
    problems: list[str],
) -> dict[int, int]:
    """Segment id -> panoptic value for one image, instances numbered 1, 2, ... per class.

    Thing segments get the next instance number of their class in the order listed (how the
    reference converters number them); stuff and crowd segments get instance 0.

    Args:
        segments: `read_segments_info` output of the image.
        descriptor: class count, thing ids, label divisor.
        category_to_class: raw category id -> class index; None means they are equal.
        where: the label file, for problems.
        problems: receives one line per bad segment.
    """
    d = descriptor.label_divisor
    counts: collections.Counter = collections.Counter()
    mapping = {}
    for sid, cat, crowd, _ in segments:
        cls = cat if category_to_class is None else category_to_class.get(cat)
        if cls is None or not 0 <= cls < descriptor.num_classes:
            problems.append(f"{where}: segment {sid} has unknown category_id {cat}")
            continue
        instance = 0
        if descriptor.is_thing(cls) and not crowd:
            counts[cls] += 1
            instance = counts[cls]
            if instance >= d:
                problems.append(f"{where}: more than {d - 1} instances of class {cls}")
                continue
        mapping[sid] = cls * d + instance
    return mapping


def apply_segments(
    ids: np.ndarray,
    mapping: Mapping[int, int],
    *,
    void_label: int,
    path: str | os.PathLike,
    areas: Mapping[int, int] | None = None,
) -> np.ndarray:
    """Maps segment ids [h, w] to panoptic values; id 0 (unlabelled) becomes `void_label`.

    Raises:
        DatasetError naming `path` for segment ids without a JSON entry, and for segments whose
        pixel count differs from their JSON `area` (when `areas` is given).
    """
    values, counts = np.unique(ids, return_counts=True)
    problems = []
    unknown = [int(v) for v in values if v != 0 and v not in mapping]
    if unknown:
        problems.append(
            f"segment ids {unknown[:10]} are not in the ground-truth JSON (pixels without a "
            "segments_info entry, so without a class)"
        )
    if areas:
        found = dict(zip(values.tolist(), counts.tolist()))
        wrong = [(sid, a, found.get(sid, 0)) for sid, a in areas.items() if found.get(sid, 0) != a]
        if wrong:
            problems.append(
                "segment areas differ from segments_info (id, listed, found): "
                f"{wrong[:5]}"
            )
    if problems:
        raise DatasetError(str(path), problems)
    lut_keys = np.array([0, *mapping.keys()], np.int64)
    lut_vals = np.array([void_label, *mapping.values()], np.int64)
    order = np.argsort(lut_keys)
    index = np.clip(np.searchsorted(lut_keys[order], ids), 0, len(lut_keys) - 1)
    return lut_vals[order][index]


def video_segment_mapping(
    infos: Mapping[Path, Sequence[tuple[int, int, bool, int | None]]],
    descriptor: DatasetDescriptor,
    *,
    category_to_class: Mapping[int, int] | None,
    json_path: str | os.PathLike,
    problems: list[str],
) -> dict[Path, dict[int, int]]:
    """Segment id -> panoptic value for every label file of one video (docs/datasets.md#custom).

    A segment id names one object for the whole video, so its track is kept: if every thing
    segment id is `class * D + instance + 1` (what `vipdl.evaluation.writers` writes) that
    instance is used, otherwise the thing ids of each class are numbered 1, 2, ... in order of
    their segment id. A thing id that changes class between frames is a problem naming both
    files; so is a category id that is not a class.

    Args:
        infos: `read_segments_info` output per label file, in frame order.
        descriptor: classes, things and label divisor.
        category_to_class: raw category id -> class index; None means they are equal.
        json_path: the JSON the segments come from, for problems.
        problems: receives one line per problem.
    """
    d = descriptor.label_divisor
    classes: dict[Path, list[tuple[int, int | None, bool]]] = {}
    thing_class: dict[int, tuple[int, Path]] = {}  # segment id -> (class, first label file)
    for label, segs in infos.items():
        classes[label] = []
        for sid, cat, crowd, _ in segs:
            cls = cat if category_to_class is None else category_to_class.get(cat)
            if cls is None or not 0 <= cls < descriptor.num_classes:
                known = (f"[0, {descriptor.num_classes})" if category_to_class is None
                         else f"the category ids {sorted(category_to_class)}")
                problems.append(
                    f"{label}: segment {sid} has category_id {cat}, not one of {known} "
                    f"({json_path})"
                )
                cls = None
            elif descriptor.is_thing(cls) and not crowd:
                first = thing_class.setdefault(sid, (cls, label))
                if first[0] != cls:
                    names = descriptor.class_names
                    problems.append(
                        f"{label}: instance (segment id) {sid} is {names[cls]!r} here but "
                        f"{names[first[0]]!r} in {first[1].name}; an instance id must keep "
                        "its class within a video"
                    )
            classes[label].append((sid, cls, crowd))
    direct = all((sid - 1) // d == cls and (sid - 1) % d > 0
                 for sid, (cls, _) in thing_class.items())
    rank = {}
    if not direct:
        per_class = collections.defaultdict(list)
        for sid, (cls, _) in sorted(thing_class.items()):
            per_class[cls].append(sid)
        rank = {sid: k + 1 for ids in per_class.values() for k, sid in enumerate(ids)}
    out = {}
    for label, segs in classes.items():
        mapping = {}
        for sid, cls, crowd in segs:
            if cls is None:
                continue
            instance = 0
            if descriptor.is_thing(cls) and not crowd and thing_class[sid][0] == cls:
                instance = (sid - 1) % d if direct else rank[sid]
            if instance >= d:
                problems.append(f"{label}: more than {d - 1} instances of class {cls}")
                continue
            mapping[sid] = cls * d + instance
        out[label] = mapping
    return out


# --------------------------------------------------------------------------------------------
# Structure checks shared by the layouts.


def _check_sequence(
    videos: Mapping[str, list[tuple[int, Path, Path, Path | None]]],
    *,
    stride: int | None,
    where: str,
    problems: list[str],
    any_gaps: bool = False,
) -> list[Video]:
    """Orders frames, checks gaps (a missing frame) and returns `Video`s.

    `stride` is the expected gap between frame tokens; None infers it as the most common gap of
    the split (real Cityscapes-VPS tokens may count raw frames or annotated frames).
    `any_gaps` accepts any positive gap (sparse annotation of your own videos).
    """
    gaps = collections.Counter()
    ordered = {}
    for seq, frames in videos.items():
        frames = sorted(frames, key=lambda f: f[0])
        ordered[seq] = frames
        gaps.update(b[0] - a[0] for a, b in zip(frames, frames[1:]))
    if stride is None:
        stride = gaps.most_common(1)[0][0] if gaps else 1
    out = []
    for seq in sorted(ordered):
        frames = ordered[seq]
        for a, b in zip(frames, frames[1:]):
            if b[0] - a[0] == 0:
                problems.append(f"{b[1]}: frame {b[0]} of sequence {seq} appears twice ({a[1]})")
            elif b[0] - a[0] != stride and not any_gaps:
                missing = list(range(a[0] + stride, b[0], stride)) or ["(irregular gap)"]
                problems.append(
                    f"{b[1]}: sequence {seq} in {where} jumps from frame {a[0]} to {b[0]} "
                    f"(expected steps of {stride}); missing frame(s) {missing}"
                )
        out.append(
            Video(
                seq,
                tuple(
                    Frame(index=i, token=tok, image=img, label=lab, depth=dep)
                    for i, (tok, img, lab, dep) in enumerate(frames)
                ),
            )
        )
    return out


def _check_video_lengths(videos: Sequence[Video], where: str, problems: list[str]) -> None:
    """Videos of one split usually have the same length; a short one lost frames at an end."""
    lengths = collections.Counter(len(v.frames) for v in videos)
    if len(lengths) <= 1:
        return
    common, n = lengths.most_common(1)[0]
    if n * 2 <= len(videos):  # No clear majority: lengths legitimately vary (e.g. KITTI).
        return
    for v in videos:
        if len(v.frames) < common:
            problems.append(
                f"{v.frames[0].image.parent}: sequence {v.sequence_id} in {where} has "
                f"{len(v.frames)} frames but most sequences have {common} (first "
                f"{v.frames[0].image.name}, last {v.frames[-1].image.name})"
            )


class Layout(abc.ABC):
    """A raw dataset layout rooted at `root`, with the descriptor used to decode labels."""

    #: Whether frames carry a depth file.
    has_depth: bool = False

    def __init__(self, root: str | os.PathLike, descriptor: DatasetDescriptor):
        self.root = Path(root)
        self.descriptor = descriptor
        # Findings that do not stop a conversion (e.g. a video whose frame size changes); each
        # starts with the file or folder concerned. Filled by `videos`.
        self.warnings: list[str] = []
        if not self.root.is_dir():
            raise DatasetError(str(self.root), ["dataset root is not a directory"])

    @abc.abstractmethod
    def splits(self) -> tuple[str, ...]:
        """The labelled splits present on disk."""

    @abc.abstractmethod
    def _list(self, split: str, problems: list[str]) -> list[Video]:
        """Lists the videos of `split`, appending structural problems to `problems`."""

    @abc.abstractmethod
    def _read_label(self, frame: Frame) -> np.ndarray:
        """Decodes the label of `frame` (not yet validated)."""

    def videos(self, split: str, *, expected_frames: int | None = None) -> list[Video]:
        """The videos of `split`, frames ordered; raises `DatasetError` listing all problems.

        Args:
            split: split name.
            expected_frames: expected number of annotated frames in the split; defaults to
                `descriptor.split_num_frames[split]` when known; -1 disables the check.
        """
        problems: list[str] = []
        videos = self._list(split, problems)
        if not videos and not problems:
            problems.append(f"{self.root}: no annotated frames found for split {split!r}")
        if expected_frames is None:
            expected_frames = self.descriptor.split_num_frames.get(split)
        total = sum(len(v.frames) for v in videos)
        if expected_frames is not None and expected_frames >= 0 and total != expected_frames:
            problems.append(
                f"{self.root}: split {split!r} has {total} annotated frames in {len(videos)} "
                f"sequences, expected {expected_frames} for {self.descriptor.name}"
            )
        if problems:
            raise DatasetError(f"{self.descriptor.name} {split} at {self.root}", problems)
        return videos

    def read_panoptic(self, frame: Frame) -> np.ndarray:
        """int32 [height, width] validated panoptic label of `frame`."""
        return check_panoptic(self._read_label(frame), self.descriptor, frame.label)

    def read_frame(self, frame: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Reads `(image uint8 [h, w, 3], panoptic int32 [h, w], depth float32 [h, w] | None)`.

        Raises:
            DatasetError naming the files when one is corrupt, labels are invalid or the sizes
            disagree (all problems of the frame together).
        """
        problems: list[str] = []

        def attempt(read, path):
            try:
                return read(path)
            except DatasetError as e:
                problems.extend(
                    p if p.startswith(str(path)) else f"{path}: {p}" for p in e.problems
                )
                return None

        image = attempt(lambda p: _decoded(formats.read_image, p), frame.image)
        panoptic = attempt(lambda _: self.read_panoptic(frame), frame.label)
        depth = None
        if frame.depth is not None:
            depth = attempt(lambda p: _decoded(formats.read_depth_png, p), frame.depth)
        if image is not None:
            for value, path in ((panoptic, frame.label), (depth, frame.depth)):
                if value is not None and value.shape != image.shape[:2]:
                    problems.append(
                        f"{path}: size {value.shape[1]}x{value.shape[0]} does not match the image "
                        f"{frame.image} of size {image.shape[1]}x{image.shape[0]}"
                    )
        if problems:
            raise DatasetError(f"{self.descriptor.name} frame {frame.image.name}", problems)
        return image, panoptic, depth


def _token(text: str) -> int | None:
    return int(text) if text.isdigit() else None


# --------------------------------------------------------------------------------------------
# Cityscapes-VPS.

_VPS_IMAGE_ID = re.compile(r"^(?P<video>\d+)_(?P<frame>\d+)(_.*)?$")


class CityscapesVpsLayout(Layout):
    """Cityscapes-VPS (mcahny/vps) with the video panoptic ground truth of each split.

    Label ids in `panoptic_video/*.png` are COCO segment ids; the JSON gives each its class and
    crowd flag. Instance ids are made consistent per video: if every thing segment id is
    `class * D + instance + 1` (what `vipdl.evaluation.writers` writes) that instance is kept,
    otherwise segments are numbered 1, 2, ... per class in order of their id within the video.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        descriptor: DatasetDescriptor = descriptors.CITYSCAPES_VPS,
        *,
        annotation_stride: int | None = None,
        category_to_class: Mapping[int, int] | None = None,
        any_gaps: bool = False,
    ):
        super().__init__(root, descriptor)
        self.annotation_stride = annotation_stride
        self.any_gaps = any_gaps  # Irregular annotation gaps and video lengths are fine.
        self.category_to_class = category_to_class  # None: category ids are class indices.
        self._segments: dict[Path, dict[int, int]] = {}

    def splits(self) -> tuple[str, ...]:
        return tuple(
            s
            for s in ("train", "val", "test")
            if (self.root / s / "img").is_dir()
            and (self.root / f"panoptic_gt_{s}_city_vps.json").is_file()
        )

    def _list(self, split: str, problems: list[str]) -> list[Video]:
        img_dir = self.root / split / "img"
        gt_dir = self.root / split / "panoptic_video"
        json_path = self.root / f"panoptic_gt_{split}_city_vps.json"
        for path in (img_dir, gt_dir):
            if not path.is_dir():
                problems.append(f"{path}: directory missing")
        try:
            gt = json.loads(json_path.read_text())
            images = {str(i["id"]): i for i in gt["images"]}
            annotations = {str(a["image_id"]): a for a in gt["annotations"]}
        except FileNotFoundError:
            problems.append(f"{json_path}: file missing")
            return []
        except (ValueError, KeyError, TypeError) as e:
            problems.append(f"{json_path}: not a Cityscapes-VPS ground-truth JSON ({e})")
            return []
        if problems:
            return []
        # The JSON `images` drive the listing (file names vary: leftImg8bit / newImg8bit).
        videos: dict[str, list] = collections.defaultdict(list)
        listed, image_ids = set(), {}
        for image_id, info in sorted(images.items()):
            path = img_dir / str(info.get("file_name", f"{image_id}_leftImg8bit.png"))
            listed.add(path.name)
            m = _VPS_IMAGE_ID.match(image_id)
            ann = annotations.get(image_id)
            if not m:
                problems.append(f"{json_path}: image id {image_id!r} is not <video>_<frame>_...")
            elif not path.is_file():
                problems.append(f"{path}: image missing (listed in {json_path})")
            elif ann is None:
                problems.append(f"{path}: no annotation for image id {image_id} in {json_path}")
            else:
                label = gt_dir / str(ann.get("file_name", f"{image_id}_gtFine_color.png"))
                if not label.is_file():
                    problems.append(f"{label}: label file missing (image {path.name})")
                    continue
                image_ids[label] = image_id
                videos[m["video"]].append((int(m["frame"]), path, label, None))
        for image_id in sorted(set(annotations) - set(images)):
            problems.append(f"{json_path}: annotation of unknown image id {image_id!r}")
        for path in sorted(img_dir.glob("*.png")):
            if path.name not in listed:
                problems.append(f"{path}: image has no ground truth in {json_path}")
        out = _check_sequence(videos, stride=self.annotation_stride, where=split, problems=problems,
                              any_gaps=self.any_gaps)
        if not self.any_gaps:
            _check_video_lengths(out, split, problems)
        for video in out:
            self._map_segments(video, image_ids, annotations, json_path, problems)
        return out

    def _map_segments(self, video, image_ids, annotations, json_path, problems) -> None:
        """Maps the segment ids of each frame of `video` to panoptic values (see class doc)."""
        infos = {}
        for frame in video.frames:
            image_id = image_ids[frame.label]
            segs = read_segments_info(
                annotations[image_id].get("segments_info"),
                where=f"{json_path} (image {image_id})",
                problems=problems,
            )
            if segs is None:
                return
            infos[frame.label] = segs
        self._segments.update(
            video_segment_mapping(
                infos,
                self.descriptor,
                category_to_class=self.category_to_class,
                json_path=json_path,
                problems=problems,
            )
        )

    def _read_label(self, frame: Frame) -> np.ndarray:
        ids = _decoded(formats.read_rgb_ids, frame.label)
        mapping = self._segments.get(frame.label)
        if mapping is None:
            raise DatasetError(str(frame.label), ["segments unknown; list the split first"])
        return apply_segments(
            ids, mapping, void_label=self.descriptor.void_label, path=frame.label
        )


# --------------------------------------------------------------------------------------------
# Cityscapes-DVPS.

_DVPS_FILE = re.compile(
    r"^(?P<seq>\d+)_(?P<frame>\d+)_(?P<rest>.+)_"
    r"(?P<kind>leftImg8bit|gtFine_instanceTrainIds|depth)\.png$"
)


class CityscapesDvpsLayout(Layout):
    """Cityscapes-DVPS `video_sequence/<split>/` (ViP-DeepLab); consecutive frame tokens."""

    has_depth = True

    def __init__(
        self,
        root: str | os.PathLike,
        descriptor: DatasetDescriptor = descriptors.CITYSCAPES_DVPS,
        *,
        require_depth: bool = True,
    ):
        super().__init__(root, descriptor)
        self.require_depth = require_depth

    def splits(self) -> tuple[str, ...]:
        base = self.root / "video_sequence"
        return tuple(s for s in ("train", "val", "test") if (base / s).is_dir())

    def _list(self, split: str, problems: list[str]) -> list[Video]:
        base = self.root / "video_sequence" / split
        if not base.is_dir():
            problems.append(f"{base}: directory missing")
            return []
        groups: dict[tuple[str, int, str], dict[str, Path]] = collections.defaultdict(dict)
        for path in sorted(base.iterdir()):
            m = _DVPS_FILE.match(path.name)
            if not m:
                if not path.name.startswith("."):
                    problems.append(f"{path}: unexpected file name")
                continue
            groups[(m["seq"], int(m["frame"]), m["rest"])][m["kind"]] = path
        videos: dict[str, list] = collections.defaultdict(list)
        for (seq, frame, rest), files in sorted(groups.items()):
            stem = base / f"{seq}_{frame:06d}_{rest}_"
            image = files.get("leftImg8bit")
            label = files.get("gtFine_instanceTrainIds")
            depth = files.get("depth")
            missing = [
                k
                for k, v in (("leftImg8bit", image), ("gtFine_instanceTrainIds", label))
                if v is None
            ]
            if self.require_depth and depth is None:
                missing.append("depth")
            if missing:
                problems.append(f"{stem}*: missing {', '.join(k + '.png' for k in missing)}")
                continue
            videos[seq].append((frame, image, label, depth))
        out = _check_sequence(videos, stride=1, where=split, problems=problems)
        _check_video_lengths(out, split, problems)
        return out

    def _read_label(self, frame: Frame) -> np.ndarray:
        raw = _decoded(formats.read_grey_png, frame.label, "a single-channel label PNG")
        return formats.decode_dvps_label(
            raw,
            label_divisor=self.descriptor.label_divisor,
            ignore_label=self.descriptor.ignore_label,
        )


# --------------------------------------------------------------------------------------------
# KITTI-STEP / MOTChallenge-STEP.


class StepLayout(Layout):
    """KITTI-STEP / MOTChallenge-STEP: `images/` and `panoptic_maps/` per split and sequence."""

    def __init__(
        self, root: str | os.PathLike, descriptor: DatasetDescriptor = descriptors.KITTI_STEP
    ):
        super().__init__(root, descriptor)

    def splits(self) -> tuple[str, ...]:
        base = self.root / "panoptic_maps"
        return tuple(s for s in ("train", "val", "test") if (base / s).is_dir())

    def _list(self, split: str, problems: list[str]) -> list[Video]:
        img_base = self.root / "images" / split
        lab_base = self.root / "panoptic_maps" / split
        for path in (img_base, lab_base):
            if not path.is_dir():
                problems.append(f"{path}: directory missing")
        if problems:
            return []
        videos: dict[str, list] = collections.defaultdict(list)
        sequences = sorted(
            {p.name for p in img_base.iterdir() if p.is_dir()}
            | {p.name for p in lab_base.iterdir() if p.is_dir()}
        )
        for seq in sequences:
            images = {
                p.stem: p
                for p in (img_base / seq).glob("*")
                if p.suffix.lower() in _IMAGE_SUFFIXES  # MOTChallenge-STEP ships JPEGs.
            }
            label_files = {p.stem: p for p in (lab_base / seq).glob("*.png")}
            for stem in sorted(set(images) | set(label_files)):
                image, label = images.get(stem), label_files.get(stem)
                if image is None:
                    problems.append(
                        f"{label}: no matching image {img_base / seq / (stem + '.png')}"
                    )
                elif label is None:
                    problems.append(
                        f"{image}: no matching label {lab_base / seq / (stem + '.png')}"
                    )
                elif _token(stem) is None:
                    problems.append(f"{image}: frame name is not a number")
                else:
                    videos[seq].append((int(stem), image, label, None))
        return _check_sequence(videos, stride=1, where=split, problems=problems)

    def _read_label(self, frame: Frame) -> np.ndarray:
        rgb = _decoded(formats.read_rgb_png, frame.label, "an RGB label PNG")
        try:
            return formats.step_rgb_to_panoptic(rgb, self.descriptor.label_divisor)
        except ValueError as e:
            raise DatasetError(str(frame.label), [str(e)]) from None


# --------------------------------------------------------------------------------------------
# VIPSeg.


class VipsegLayout(Layout):
    """VIPSeg (original or the 720p conversion): split lists, `imgs|images/`, `panomasks/`.

    VIPSeg frames are sub-sampled with irregular numbering, so no gap check is possible;
    instead every image must have a mask and vice versa (the 720p conversion script is known
    to drop frames), and every video of the split list must exist.
    """

    def __init__(self, root: str | os.PathLike, descriptor: DatasetDescriptor = descriptors.VIPSEG):
        super().__init__(root, descriptor)
        image_dirs = [self.root / n for n in ("images", "imgs") if (self.root / n).is_dir()]
        self.image_dir = image_dirs[0] if image_dirs else self.root / "imgs"

    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in ("train", "val", "test") if (self.root / f"{s}.txt").is_file())

    def _list(self, split: str, problems: list[str]) -> list[Video]:
        listing = self.root / f"{split}.txt"
        mask_dir = self.root / "panomasks"
        if not listing.is_file():
            problems.append(f"{listing}: split list missing")
            return []
        for path in (self.image_dir, mask_dir):
            if not path.is_dir():
                problems.append(f"{path}: directory missing")
        if problems:
            return []
        names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
        out = []
        for name in names:
            img_video, mask_video = self.image_dir / name, mask_dir / name
            if not img_video.is_dir() or not mask_video.is_dir():
                problems.append(
                    f"{img_video if not img_video.is_dir() else mask_video}: video "
                    f"{name} listed in {listing} is missing"
                )
                continue
            images = {p.stem: p for p in img_video.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES}
            masks = {p.stem: p for p in mask_video.glob("*.png")}
            for stem in sorted(set(images) ^ set(masks)):
                if stem in images:
                    problems.append(f"{images[stem]}: no matching mask in {mask_video}")
                else:
                    problems.append(f"{masks[stem]}: no matching image in {img_video}")
            stems = sorted(
                set(images) & set(masks), key=lambda s: (_token(s) is None, _token(s) or 0, s)
            )
            frames = tuple(
                Frame(
                    index=i,
                    token=_token(s) if _token(s) is not None else i,
                    image=images[s],
                    label=masks[s],
                )
                for i, s in enumerate(stems)
            )
            if frames:
                out.append(Video(name, frames))
        return out

    def _read_label(self, frame: Frame) -> np.ndarray:
        raw = _decoded(formats.read_grey_png, frame.label, "a single-channel label PNG")
        return formats.decode_vipseg_mask(
            raw,
            label_divisor=self.descriptor.label_divisor,
            void_label=self.descriptor.void_label,
        )


# --------------------------------------------------------------------------------------------
# SemKITTI-DVPS.

_SEMKITTI_FILE = re.compile(
    r"^(?P<seq>\d+)_(?P<frame>\d+)_"
    r"(?P<kind>leftImg8bit|gtFine_class|gtFine_instance|depth(_(?P<focal>[0-9.eE+-]+))?)\.png$"
)


class SemKittiDvpsLayout(Layout):
    """SemKITTI-DVPS `video_sequence/<split>/` (ViP-DeepLab `semkitti-dvps/`), every frame.

    Per frame `<seq:06d>_<frame:06d>_` + `leftImg8bit.png` (the KITTI odometry image),
    `gtFine_class.png` (class id, 255 void), `gtFine_instance.png` (instance id) and
    `depth_<focal length>.png` (uint16 metres * 256, 0 = no LiDAR point).
    """

    has_depth = True

    def __init__(
        self, root: str | os.PathLike, descriptor: DatasetDescriptor = descriptors.SEMKITTI_DVPS
    ):
        super().__init__(root, descriptor)

    def splits(self) -> tuple[str, ...]:
        base = self.root / "video_sequence"
        return tuple(s for s in ("train", "val") if (base / s).is_dir())

    def _list(self, split: str, problems: list[str]) -> list[Video]:
        base = self.root / "video_sequence" / split
        if not base.is_dir():
            problems.append(f"{base}: directory missing")
            return []
        groups: dict[tuple[str, int], dict[str, Path]] = collections.defaultdict(dict)
        for path in sorted(base.iterdir()):
            m = _SEMKITTI_FILE.match(path.name)
            if not m:
                if not path.name.startswith("."):
                    problems.append(f"{path}: unexpected file name")
                continue
            kind = "depth" if m["kind"].startswith("depth") else m["kind"]
            groups[(m["seq"], int(m["frame"]))][kind] = path
        videos: dict[str, list] = collections.defaultdict(list)
        wanted = ("leftImg8bit", "gtFine_class", "gtFine_instance", "depth")
        for (seq, frame), files in sorted(groups.items()):
            missing = [k for k in wanted if k not in files]
            if missing:
                stem = base / f"{seq}_{frame:06d}_"
                problems.append(f"{stem}*: missing {', '.join(k + '*.png' for k in missing)}")
                continue
            videos[seq].append((frame, files["leftImg8bit"], files["gtFine_class"], files["depth"]))
        return _check_sequence(videos, stride=1, where=split, problems=problems)

    def _read_label(self, frame: Frame) -> np.ndarray:
        semantic = _decoded(formats.read_grey_png, frame.label, "a single-channel class PNG")
        instance_path = frame.label.with_name(
            frame.label.name.replace("_gtFine_class.png", "_gtFine_instance.png")
        )
        instance = _decoded(formats.read_grey_png, instance_path, "a single-channel instance PNG")
        if instance.shape != semantic.shape:
            raise DatasetError(
                str(instance_path),
                [f"size {instance.shape[1]}x{instance.shape[0]} differs from {frame.label.name}"],
            )
        semantic = semantic.astype(np.int64)
        instance = np.where(semantic == self.descriptor.ignore_label, 0, instance)
        return semantic * self.descriptor.label_divisor + instance.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Image datasets: every image is a video of one frame.


class _ImageLayout(Layout):
    """COCO-panoptic style image set: one JSON of `segments_info` and a PNG folder per split."""

    SPLITS = ("train", "val")
    category_to_class: Mapping[int, int] | None = None

    def __init__(self, root: str | os.PathLike, descriptor: DatasetDescriptor):
        super().__init__(root, descriptor)
        self._segments: dict[Path, tuple[dict[int, int], dict[int, int]]] = {}

    @abc.abstractmethod
    def _paths(self, split: str) -> tuple[Path, Path, Path]:
        """`(image folder, label folder, JSON)` of `split`."""

    @abc.abstractmethod
    def _images(self, image_dir: Path, problems: list[str]) -> dict[str, Path]:
        """Image id (as in the JSON annotations) -> image file, for every image on disk."""

    def _annotation_key(self, annotation: dict) -> str:
        return str(annotation["image_id"])

    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in self.SPLITS if self._paths(s)[2].is_file())

    def _list(self, split: str, problems: list[str]) -> list[Video]:
        image_dir, label_dir, json_path = self._paths(split)
        for path in (image_dir, label_dir):
            if not path.is_dir():
                problems.append(f"{path}: directory missing")
        try:
            annotations = json.loads(json_path.read_text())["annotations"]
            by_id = {self._annotation_key(a): a for a in annotations}
        except FileNotFoundError:
            problems.append(f"{json_path}: file missing")
            return []
        except (ValueError, KeyError, TypeError) as e:
            problems.append(f"{json_path}: not a COCO-panoptic JSON ({type(e).__name__}: {e})")
            return []
        if problems:
            return []
        images = self._images(image_dir, problems)
        out = []
        for image_id in sorted(set(images) | set(by_id)):
            image, ann = images.get(image_id), by_id.get(image_id)
            if ann is None:
                problems.append(f"{image}: no annotation in {json_path}")
                continue
            label = label_dir / str(ann.get("file_name", ""))
            if image is None:
                problems.append(f"{json_path}: annotation of image {image_id!r} has no image in "
                                f"{image_dir}")
                continue
            if not label.is_file():
                problems.append(f"{label}: label file missing (image {image.name})")
                continue
            segs = read_segments_info(
                ann.get("segments_info"), where=f"{json_path} (image {image_id})",
                problems=problems,
            )
            if segs is None:
                continue
            mapping = numbered_segments(
                segs, self.descriptor, category_to_class=self.category_to_class,
                where=f"{label} ({json_path})", problems=problems,
            )
            areas = {sid: a for sid, _, _, a in segs if a is not None}
            self._segments[label] = (mapping, areas)
            out.append(Video(image_id, (Frame(index=0, token=0, image=image, label=label),)))
        return out

    def _read_label(self, frame: Frame) -> np.ndarray:
        ids = _decoded(formats.read_rgb_ids, frame.label)
        if frame.label not in self._segments:
            raise DatasetError(str(frame.label), ["segments unknown; list the split first"])
        mapping, areas = self._segments[frame.label]
        return apply_segments(
            ids, mapping, void_label=self.descriptor.void_label, path=frame.label, areas=areas
        )


class CityscapesPanopticLayout(_ImageLayout):
    """Cityscapes panoptic images with train-id labels (cityscapesScripts `createPanopticImgs
    --use-train-id`): `leftImg8bit/<split>/<city>/<id>_leftImg8bit.png`,
    `gtFine/cityscapes_panoptic_<split>_trainId.json` and
    `gtFine/cityscapes_panoptic_<split>_trainId/<id>_gtFine_panoptic.png`."""

    def __init__(
        self,
        root: str | os.PathLike,
        descriptor: DatasetDescriptor = descriptors.CITYSCAPES_PANOPTIC,
    ):
        super().__init__(root, descriptor)

    def _paths(self, split):
        gt = self.root / "gtFine"
        return (
            self.root / "leftImg8bit" / split,
            gt / f"cityscapes_panoptic_{split}_trainId",
            gt / f"cityscapes_panoptic_{split}_trainId.json",
        )

    def _images(self, image_dir, problems):
        suffix = "_leftImg8bit.png"
        return {
            p.name[: -len(suffix)]: p for p in sorted(image_dir.glob(f"*/*{suffix}"))
        }


class CocoPanopticLayout(_ImageLayout):
    """COCO panoptic 2017: `<split>2017/<id:012d>.jpg`, `annotations/panoptic_<split>2017.json`
    and `annotations/panoptic_<split>2017/<id:012d>.png`; category ids 1..200 map to the 133
    classes of `descriptors.COCO_CATEGORY_IDS`."""

    category_to_class = MappingProxyType(
        {cat: k for k, cat in enumerate(descriptors.COCO_CATEGORY_IDS)}
    )

    def __init__(
        self, root: str | os.PathLike, descriptor: DatasetDescriptor = descriptors.COCO_PANOPTIC
    ):
        super().__init__(root, descriptor)

    def _paths(self, split):
        ann = self.root / "annotations"
        return (
            self.root / f"{split}2017",
            ann / f"panoptic_{split}2017",
            ann / f"panoptic_{split}2017.json",
        )

    def _annotation_key(self, annotation):
        return Path(str(annotation["file_name"])).stem

    def _images(self, image_dir, problems):
        return {p.stem: p for p in sorted(image_dir.iterdir())
                if p.suffix.lower() in _IMAGE_SUFFIXES}

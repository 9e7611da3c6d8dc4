"""Your own labelled videos: the custom dataset format (docs/datasets.md#custom).

A custom dataset is a folder with a `dataset.json` (classes, things, colours, void, optional
depth) and, per split and video, every raw frame plus labels for the annotated frames only:

    DIR/dataset.json
    DIR/<split>/<video>/frames/<name>.jpg|.png    every raw frame, ordered by the number in the name
    DIR/<split>/<video>/labels/<name>.png         annotated frames only, same name as the frame
    DIR/<split>/<video>/labels.json               segments_info per label (`coco_panoptic`)
    DIR/<split>/<video>/depth/<name>.png          optional: uint16, metres * depth_scale

Label formats (`dataset.json` `label_format`):

* `coco_panoptic` (default): RGB PNGs of segment ids (R + 256 G + 256^2 B, 0 = unlabelled) and
  a COCO-panoptic `labels.json` whose `annotations` give each PNG's `segments_info`
  (`id`, `category_id`, `iscrowd`). A segment id is one object for the whole video: the same
  id in two frames is the same track.
* `class_instance`: single-channel 8/16-bit PNGs of `class id * label_divisor + instance`,
  instance 0 for stuff; a thing pixel must carry an instance id.
* `cityscapes_vps`: the Cityscapes-VPS layout (`DIR/<split>/img/`, `DIR/<split>/panoptic_video/`,
  `DIR/panoptic_gt_<split>_city_vps.json`), raw frames in `DIR/<split>/img_all/`.

Class ids in the label files are `category_ids[k]` for class k (default k). The in-memory
descriptor numbers classes 0..n-1, void 255 (or n when n > 255) and label divisor 1000.
"""

from __future__ import annotations

import collections
import colorsys
import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from vipdl import formats
from vipdl.data import layouts
from vipdl.data.descriptors import DatasetDescriptor
from vipdl.data.layouts import DatasetError, Frame, Video

# Where `vipdl.data.builders.prepare` puts a custom dataset: `<data_dir>/vipdl_custom/1.0.0/`,
# with the descriptor as `descriptor.json` (read here without importing TFDS).
BUILDER_NAME = "vipdl_custom"
BUILDER_VERSION = "1.0.0"
DESCRIPTOR_FILE = "descriptor.json"
SPEC_FILE = "dataset.json"
LABELS_JSON = "labels.json"
LABEL_FORMATS = ("coco_panoptic", "class_instance", "cityscapes_vps")
LABEL_DIVISOR = 1000  # In memory, like every converted dataset.
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FIELDS = (
    "name", "class_names", "thing_ids", "colors", "ignore_label", "category_ids", "label_format",
    "label_divisor", "depth_scale", "max_depth", "eval_window_frames",
)


@dataclasses.dataclass(frozen=True)
class CustomSpec:
    """A parsed `dataset.json`.

    Attributes:
        descriptor: the in-memory descriptor (classes 0..n-1, void `descriptor.ignore_label`).
        category_ids: id of class k in the label files (`category_id`, or the class part of a
            `class_instance` value).
        raw_ignore_label: the id that means void in the label files.
        raw_label_divisor: divisor of `class_instance` label values.
        label_format: one of `LABEL_FORMATS`.
        depth_scale: depth PNG value per metre, or None (no depth).
        path: the `dataset.json` file.
    """

    descriptor: DatasetDescriptor
    category_ids: tuple[int, ...]
    raw_ignore_label: int
    raw_label_divisor: int
    label_format: str
    depth_scale: float | None
    path: Path

    @property
    def category_to_class(self) -> dict[int, int]:
        return {cat: k for k, cat in enumerate(self.category_ids)}


def default_colors(n: int) -> tuple[tuple[int, int, int], ...]:
    """n distinct, deterministic colours (hues spread by the golden ratio)."""
    out = []
    for k in range(n):
        r, g, b = colorsys.hsv_to_rgb((k * 0.618033988749895) % 1.0, 0.65, 0.95)
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(out)


def _int_list(obj, key: str, problems: list[str], where: str) -> list[int] | None:
    value = obj.get(key)
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        problems.append(f"{where}: {key!r} must be a list of integers, got {value!r}")
        return None
    return value


def _class_names(obj: dict, problems: list[str]) -> list[str] | None:
    """'class_names', or None when it is not a non-empty list of names."""
    names = obj.get("class_names")
    if not isinstance(names, list) or not names or not all(
        isinstance(n, str) and n.strip() for n in names
    ):
        problems.append(f"'class_names' must be a non-empty list of names, got {names!r}")
        return None
    dup = sorted(n for n, c in collections.Counter(names).items() if c > 1)
    if dup:
        problems.append(f"'class_names' has duplicate names {dup}")
    if len(names) > LABEL_DIVISOR - 2:
        problems.append(f"at most {LABEL_DIVISOR - 2} classes, got {len(names)}")
    return names


def _thing_ids(obj: dict, names: list[str] | None, problems: list[str]) -> list[int] | None:
    """'thing_ids' (default: none), or None when it is not a list of integers."""
    n = len(names) if names else 0
    things = _int_list(obj, "thing_ids", problems, "'thing_ids'") if "thing_ids" in obj else []
    if things is not None and names:
        bad = [t for t in things if not 0 <= t < n]
        if bad:
            problems.append(
                f"'thing_ids' {bad} out of range: they index 'class_names' (0..{n - 1})"
            )
        dup = sorted(t for t, c in collections.Counter(things).items() if c > 1)
        if dup:
            problems.append(f"'thing_ids' repeats {dup}")
    return things


def _colors(obj: dict, names: list[str] | None, problems: list[str]) -> list | None:
    """'colors' (default: `default_colors`), or None when they are not [r, g, b] triples."""
    n = len(names) if names else 0
    colors = obj.get("colors")
    if colors is None:
        colors = list(default_colors(n))
    elif not isinstance(colors, list) or not all(
        isinstance(c, list) and len(c) == 3
        and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
        for c in colors
    ):
        problems.append("'colors' must be a list of [r, g, b] triples of integers in 0..255")
        colors = None
    elif names and len(colors) != n:
        problems.append(f"'colors' has {len(colors)} entries for {n} class names")
    return colors


def _category_ids(obj: dict, names: list[str] | None, problems: list[str]) -> list[int] | None:
    """'category_ids' (default: 0..n-1), or None when it is not a list of integers."""
    n = len(names) if names else 0
    category_ids = list(range(n))
    if "category_ids" in obj:
        category_ids = _int_list(obj, "category_ids", problems, "'category_ids'")
        if category_ids is not None:
            dup = sorted(c for c, k in collections.Counter(category_ids).items() if k > 1)
            if dup:
                problems.append(f"'category_ids' repeats {dup}")
            if names and len(category_ids) != n:
                problems.append(f"'category_ids' has {len(category_ids)} entries for {n} classes")
            if any(c < 0 for c in category_ids):
                problems.append("'category_ids' must be >= 0")
    return category_ids


def _raw_ignore_label(obj: dict, category_ids: list[int] | None, problems: list[str]):
    """'ignore_label' (default 255): an id >= 0 that no class uses."""
    ignore = obj.get("ignore_label", 255)
    if not isinstance(ignore, int) or isinstance(ignore, bool) or ignore < 0:
        problems.append(f"'ignore_label' must be an integer >= 0, got {ignore!r}")
    elif category_ids and ignore in category_ids:
        problems.append(f"'ignore_label' {ignore} is also the label id of class number "
                        f"{category_ids.index(ignore)}; void needs an id of its own")
    return ignore


def _depth_fields(obj: dict, fmt, problems: list[str]) -> tuple:
    """('depth_scale' or None, 'max_depth' (default 88))."""
    depth_scale = obj.get("depth_scale")
    if depth_scale is not None and (
        not isinstance(depth_scale, (int, float)) or isinstance(depth_scale, bool)
        or depth_scale <= 0
    ):
        problems.append(f"'depth_scale' must be a positive number, got {depth_scale!r}")
    if depth_scale is not None and fmt == "cityscapes_vps":
        problems.append("'depth_scale' needs the per-video folders (label_format "
                        "coco_panoptic or class_instance)")
    max_depth = obj.get("max_depth", 88.0)
    if not isinstance(max_depth, (int, float)) or max_depth <= 0:
        problems.append(f"'max_depth' must be a positive number, got {max_depth!r}")
    return depth_scale, max_depth


def parse_spec(obj, path: str | os.PathLike) -> CustomSpec:
    """Validates a `dataset.json` object; every problem is reported together.

    Raises:
        DatasetError naming `path` and each bad field.
    """
    path = Path(path)
    where = str(path)
    if not isinstance(obj, dict):
        raise DatasetError(where, [f"expected a JSON object, got {type(obj).__name__}"])
    problems: list[str] = []
    unknown = sorted(set(obj) - set(_FIELDS))
    if unknown:
        problems.append(f"unknown field(s) {unknown}; known: {list(_FIELDS)}")
    name = obj.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"'name' must be a word of letters, digits, '_', '.', '-', got {name!r}")
    names = _class_names(obj, problems)
    n = len(names) if names else 0
    things = _thing_ids(obj, names, problems)
    colors = _colors(obj, names, problems)
    category_ids = _category_ids(obj, names, problems)
    ignore = _raw_ignore_label(obj, category_ids, problems)
    fmt = obj.get("label_format", "coco_panoptic")
    if fmt not in LABEL_FORMATS:
        problems.append(f"'label_format' must be one of {list(LABEL_FORMATS)}, got {fmt!r}")
    raw_divisor = obj.get("label_divisor", 1000)
    if not isinstance(raw_divisor, int) or raw_divisor < 2:
        problems.append(f"'label_divisor' must be an integer >= 2, got {raw_divisor!r}")
    depth_scale, max_depth = _depth_fields(obj, fmt, problems)
    windows = obj.get("eval_window_frames", [1, 2, 3, 4])
    if not isinstance(windows, list) or not windows or not all(
        isinstance(w, int) and w >= 1 for w in windows
    ):
        problems.append(f"'eval_window_frames' must be a list of integers >= 1, got {windows!r}")
    if problems:
        raise DatasetError(where, problems)
    descriptor = DatasetDescriptor(
        name=name,
        class_names=tuple(names),
        colormap=tuple(tuple(c) for c in colors),
        thing_ids=tuple(sorted(things)),
        ignore_label=255 if n <= 255 else n,
        label_divisor=LABEL_DIVISOR,
        eval_window_frames=tuple(windows),
        has_depth=depth_scale is not None,
        max_depth=float(max_depth),
    )
    return CustomSpec(
        descriptor=descriptor,
        category_ids=tuple(category_ids),
        raw_ignore_label=ignore,
        raw_label_divisor=raw_divisor,
        label_format=fmt,
        depth_scale=None if depth_scale is None else float(depth_scale),
        path=path,
    )


def read_spec(root: str | os.PathLike) -> CustomSpec:
    """Reads and validates `<root>/dataset.json`."""
    path = Path(root) / SPEC_FILE
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(
            str(path), ["dataset.json missing: a custom dataset starts with it "
                        "(docs/datasets.md#custom)"]
        ) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(str(path), [f"not valid JSON ({e})"]) from None
    return parse_spec(obj, path)


def make_layout(root: str | os.PathLike, spec: CustomSpec | None = None) -> layouts.Layout:
    """The layout reader of the custom dataset at `root` for its `label_format`."""
    spec = spec or read_spec(root)
    if spec.label_format == "cityscapes_vps":
        return CustomVpsLayout(root, spec)
    return CustomLayout(root, spec)


# --------------------------------------------------------------------------------------------
# Checks shared by both readers.


def _frame_key(path: Path) -> tuple:
    """Natural order: by the last number in the name, then the name."""
    numbers = re.findall(r"\d+", path.stem)
    return (0, int(numbers[-1]), path.stem) if numbers else (1, 0, path.stem)


def split_size_runs(videos: Sequence[Video], warnings: list[str]) -> list[Video]:
    """Splits videos whose frame size changes into runs of one size (`<video>.part<k>`).

    A pair needs two frames of one size; mixed sizes within a video are allowed but reported in
    `warnings`, naming the first frame of each new size.
    """
    out = []
    for video in videos:
        runs: list[list[Frame]] = []
        size = None
        for frame in video.frames:
            try:
                current = formats.image_size(frame.image)
            except formats.FormatError:
                current = None  # Reported when the frame is read.
            if not runs:
                runs.append([])
            elif current is not None and size is not None and current != size:
                warnings.append(
                    f"{frame.image}: frame size {current[0]}x{current[1]} differs from "
                    f"{size[0]}x{size[1]} before it in video {video.sequence_id}; the video "
                    "is split there (no pair spans two sizes)"
                )
                runs.append([])
            size = current or size
            runs[-1].append(frame)
        if len(runs) == 1:
            out.append(video)
            continue
        for k, run in enumerate(runs, start=1):
            frames = tuple(dataclasses.replace(f, index=i) for i, f in enumerate(run))
            out.append(Video(f"{video.sequence_id}.part{k}", frames))
    return out


def note_single_frames(videos: Sequence[Video], warnings: list[str]) -> None:
    """A video with one annotated frame gives no training pair (it still counts in evaluation)."""
    for video in videos:
        if len(video.frames) == 1:
            warnings.append(
                f"{video.frames[0].label}: only annotated frame of video {video.sequence_id}: "
                "it forms no (t, t+1) training pair"
            )


def persistence_warning(video: Video, thing_ids_per_frame: Sequence[set[int]]) -> str | None:
    """A warning when no instance id of `video` appears in two annotated frames.

    Instance ids must name the same object in every frame of a video (docs/datasets.md#custom);
    ids that never repeat usually mean per-frame numbering (e.g. an image annotation export).

    Args:
        video: the video.
        thing_ids_per_frame: panoptic values of the thing instances of each annotated frame.
    """
    with_things = [ids for ids in thing_ids_per_frame if ids]
    if len(with_things) < 2:
        return None
    counts = collections.Counter(i for ids in with_things for i in ids)
    if max(counts.values()) > 1:
        return None
    folder = video.frames[0].label.parent
    return (
        f"{folder}: no instance id of video {video.sequence_id} appears in more than one "
        f"annotated frame ({len(counts)} instances in {len(with_things)} frames); instance "
        "ids must persist across a video, so per-frame numbering makes every object a new track"
    )


# --------------------------------------------------------------------------------------------
# The per-video folder layout.


class CustomLayout(layouts.Layout):
    """`DIR/<split>/<video>/{frames,labels,depth}/` with `coco_panoptic` or `class_instance`
    labels (see the module docstring). Every top-level folder of DIR is a split."""

    def __init__(self, root: str | os.PathLike, spec: CustomSpec | None = None):
        spec = spec or read_spec(root)
        super().__init__(root, spec.descriptor)
        self.spec = spec
        self.has_depth = spec.depth_scale is not None
        self._segments: dict[Path, dict[int, int]] = {}

    def splits(self) -> tuple[str, ...]:
        return tuple(
            sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        )

    def videos(self, split: str, *, expected_frames: int | None = None) -> list[Video]:
        videos = super().videos(split, expected_frames=expected_frames)
        videos = split_size_runs(videos, self.warnings)
        note_single_frames(videos, self.warnings)
        return videos

    def _list(self, split: str, problems: list[str]) -> list[Video]:
        base = self.root / split
        out = []
        for video_dir in sorted(p for p in base.iterdir() if not p.name.startswith(".")):
            if not video_dir.is_dir():
                problems.append(f"{video_dir}: expected a video folder (frames/, labels/)")
                continue
            video = self._list_video(video_dir, problems)
            if video is not None:
                out.append(video)
        return out

    def _list_video(self, video_dir: Path, problems: list[str]) -> Video | None:
        frames_dir, labels_dir = video_dir / "frames", video_dir / "labels"
        missing = [d for d in (frames_dir, labels_dir) if not d.is_dir()]
        if missing:
            problems.extend(f"{d}: directory missing" for d in missing)
            return None
        frames = sorted(
            (p for p in frames_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES),
            key=_frame_key,
        )
        position: dict[str, int] = {}
        for i, path in enumerate(frames):
            if path.stem in position:
                problems.append(f"{path}: two frames named {path.stem}.*")
            position[path.stem] = i
        entries = []
        for label in sorted(labels_dir.glob("*.png"), key=_frame_key):
            if label.stem not in position:
                problems.append(f"{label}: no frame named {label.stem}.* in {frames_dir}")
                continue
            depth = None
            if self.has_depth:
                depth = video_dir / "depth" / label.name
                if not depth.is_file():
                    problems.append(f"{depth}: depth missing (dataset.json sets depth_scale)")
                    continue
            entries.append((position[label.stem], frames[position[label.stem]], label, depth))
        others = sorted(p.name for p in labels_dir.iterdir()
                        if p.suffix.lower() != ".png" and not p.name.startswith("."))
        if others:
            problems.append(f"{labels_dir}: files that are not PNG labels: {others[:5]}")
        if not entries:
            self.warnings.append(f"{labels_dir}: no labelled frame; video skipped")
            return None
        if self.spec.label_format == "coco_panoptic":
            pngs = {p.name for p in labels_dir.glob("*.png")}
            self._read_segments(video_dir, [e[2] for e in entries], pngs, problems)
        entries.sort(key=lambda e: e[0])
        return Video(
            video_dir.name,
            tuple(
                Frame(index=i, token=tok, image=img, label=lab, depth=dep)
                for i, (tok, img, lab, dep) in enumerate(entries)
            ),
        )

    def _read_segments(
        self, video_dir: Path, labels: list[Path], pngs: set[str], problems: list[str]
    ) -> None:
        """Maps the segments of `labels` (their labels.json entries); `pngs` are all PNG names."""
        json_path = video_dir / LABELS_JSON
        try:
            annotations = json.loads(json_path.read_text())["annotations"]
            by_file = {str(a["file_name"]): a for a in annotations}
        except FileNotFoundError:
            problems.append(f"{json_path}: file missing (coco_panoptic labels need it)")
            return
        except (ValueError, KeyError, TypeError) as e:
            problems.append(
                f"{json_path}: not a COCO-panoptic JSON with 'annotations' ({type(e).__name__}: "
                f"{e})"
            )
            return
        infos = {}
        for label in labels:
            ann = by_file.get(label.name)
            if ann is None:
                problems.append(f"{label}: no entry with file_name {label.name!r} in {json_path}")
                continue
            segs = layouts.read_segments_info(
                ann.get("segments_info"), where=f"{json_path} ({label.name})", problems=problems
            )
            if segs is not None:
                infos[label] = segs
        for name in sorted(set(by_file) - pngs):
            problems.append(f"{json_path}: annotation {name!r} has no label PNG in labels/")
        self._segments.update(
            layouts.video_segment_mapping(
                infos,
                self.descriptor,
                category_to_class=self.spec.category_to_class,
                json_path=json_path,
                problems=problems,
            )
        )

    def _read_label(self, frame: Frame) -> np.ndarray:
        if self.spec.label_format == "coco_panoptic":
            ids = layouts._decoded(formats.read_rgb_ids, frame.label)
            if frame.label not in self._segments:
                raise DatasetError(str(frame.label), ["segments unknown; list the split first"])
            return layouts.apply_segments(
                ids, self._segments[frame.label], void_label=self.descriptor.void_label,
                path=frame.label,
            )
        raw = layouts._decoded(
            formats.read_grey_png, frame.label, "a single-channel 8/16-bit class_instance PNG"
        )
        return decode_class_instance(raw, self.spec, frame.label)

    def read_frame(self, frame: Frame):
        image, panoptic, depth = super().read_frame(frame)
        if depth is not None:
            # The layouts read depth as value / 256; dataset.json gives the scale.
            depth = depth * np.float32(formats.DEPTH_SCALE / self.spec.depth_scale)
        return image, panoptic, depth


def decode_class_instance(raw: np.ndarray, spec: CustomSpec, path: str | os.PathLike):
    """`class_instance` label values -> in-memory panoptic int64 [h, w].

    Raises:
        DatasetError naming `path` for class ids not in dataset.json and thing pixels with
        instance 0.
    """
    raw = np.asarray(raw, np.int64)
    raw_class, instance = np.divmod(raw, spec.raw_label_divisor)
    d = spec.descriptor
    values = np.unique(raw_class)
    lookup = spec.category_to_class
    unknown = [int(v) for v in values if v != spec.raw_ignore_label and int(v) not in lookup]
    if unknown:
        raise DatasetError(
            str(path),
            [f"class ids {unknown[:10]} are not in {spec.path.name} (category_ids "
             f"{list(spec.category_ids)}, ignore_label {spec.raw_ignore_label})"],
        )
    keys = np.array([spec.raw_ignore_label, *lookup], np.int64)
    vals = np.array([d.ignore_label, *lookup.values()], np.int64)
    order = np.argsort(keys)
    semantic = vals[order][np.searchsorted(keys[order], raw_class)]
    void = semantic == d.ignore_label
    orphan = np.isin(semantic, d.thing_ids) & (instance == 0)
    if orphan.any():
        names = sorted({d.class_names[c] for c in np.unique(semantic[orphan])})
        raise DatasetError(
            str(path),
            [f"{int(orphan.sum())} pixels of thing classes {names} have instance 0 (thing "
             "pixels with no instance): give each object an id >= 1, or label the region void"],
        )
    return np.where(void, d.void_label, semantic * d.label_divisor + instance)


class CustomVpsLayout(layouts.CityscapesVpsLayout):
    """The Cityscapes-VPS layout with `dataset.json` classes and irregular annotation gaps."""

    def __init__(self, root: str | os.PathLike, spec: CustomSpec | None = None):
        spec = spec or read_spec(root)
        super().__init__(
            root, spec.descriptor, category_to_class=spec.category_to_class, any_gaps=True
        )
        self.spec = spec

    def splits(self) -> tuple[str, ...]:
        return tuple(
            sorted(p.name[len("panoptic_gt_"):-len("_city_vps.json")]
                   for p in self.root.glob("panoptic_gt_*_city_vps.json"))
        )

    def videos(self, split: str, *, expected_frames: int | None = None) -> list[Video]:
        videos = super().videos(split, expected_frames=expected_frames)
        videos = split_size_runs(videos, self.warnings)
        note_single_frames(videos, self.warnings)
        return videos


def annotation_stride(videos: Mapping[str, Sequence[Video]]) -> int:
    """The most common raw-frame gap between consecutive annotated frames (1 if none)."""
    gaps = collections.Counter(
        b.token - a.token for vs in videos.values() for v in vs
        for a, b in zip(v.frames, v.frames[1:])
    )
    return gaps.most_common(1)[0][0] if gaps else 1


def prepared_descriptor_path(data_dir: str | os.PathLike) -> Path:
    """`descriptor.json` of the custom dataset prepared in `data_dir`."""
    return Path(data_dir) / BUILDER_NAME / BUILDER_VERSION / DESCRIPTOR_FILE


def read_prepared_descriptor(data_dir: str | os.PathLike) -> DatasetDescriptor:
    """The descriptor stored with the custom dataset prepared in `data_dir`."""
    path = prepared_descriptor_path(data_dir)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: {data_dir} holds no prepared custom dataset; run "
            f"`vipdl-prepare-data --dataset custom --manual_dir DIR --data_dir {data_dir}`"
        ) from None
    except ValueError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None
    return DatasetDescriptor.from_dict(obj, str(path))

"""Frozen facts about each dataset: classes, colours, things, ignore label, label divisor.

In memory every label map is int32 `panoptic = semantic * label_divisor + instance`,
instance 0 = stuff or crowd, void = `ignore_label * label_divisor`.
Facts come from deeplab2's `data/dataset.py` and the dataset papers; see
`docs/datasets.md` for sources and download instructions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

RGB = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class DatasetDescriptor:
    """Static description of a video panoptic dataset.

    Attributes:
        name: short identifier, also the TFDS builder name suffix.
        class_names: name of each semantic class, indexed by class id.
        colormap: RGB colour of each class, for visualisation.
        thing_ids: class ids that carry instance (track) ids.
        ignore_label: semantic id of void pixels; void panoptic = ignore_label * label_divisor.
        label_divisor: the D of `semantic * D + instance`.
        annotation_stride: raw video frames between two annotated frames (Cityscapes-VPS: 5).
        eval_window_frames: VPQ window sizes in annotated frames (k = (n - 1) * stride).
        split_num_frames: expected annotated frames per split (used to validate conversions).
        has_depth: whether depth ground truth exists.
        max_depth: upper bound of the depth head, metres.
    """

    name: str
    class_names: tuple[str, ...]
    colormap: tuple[RGB, ...]
    thing_ids: tuple[int, ...]
    ignore_label: int
    label_divisor: int
    annotation_stride: int = 1
    eval_window_frames: tuple[int, ...] = (1, 2, 3, 4)
    split_num_frames: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    has_depth: bool = False
    max_depth: float = 88.0

    def __post_init__(self):
        if len(self.class_names) != len(self.colormap):
            raise ValueError(
                f"{self.name}: {len(self.class_names)} class names but {len(self.colormap)} colours"
            )
        if not 0 <= self.ignore_label < self.label_divisor:
            raise ValueError(
                f"{self.name}: ignore_label {self.ignore_label} must be in "
                f"[0, label_divisor={self.label_divisor})"
            )
        bad = [t for t in self.thing_ids if not 0 <= t < self.num_classes]
        if bad:
            raise ValueError(f"{self.name}: thing ids {bad} outside [0, {self.num_classes})")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def void_label(self) -> int:
        """Panoptic value of void pixels."""
        return self.ignore_label * self.label_divisor

    @property
    def stuff_ids(self) -> tuple[int, ...]:
        return tuple(c for c in range(self.num_classes) if c not in self.thing_ids)

    def is_thing(self, class_id: int) -> bool:
        return class_id in self.thing_ids


CITYSCAPES_CLASS_NAMES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
CITYSCAPES_COLORMAP = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
)
CITYSCAPES_THING_IDS = tuple(range(11, 19))

# Cityscapes-VPS (mcahny/vps): 500 val videos of 30 frames, every 5th annotated.
CITYSCAPES_VPS = DatasetDescriptor(
    name="cityscapes_vps",
    class_names=CITYSCAPES_CLASS_NAMES,
    colormap=CITYSCAPES_COLORMAP,
    thing_ids=CITYSCAPES_THING_IDS,
    ignore_label=255,
    label_divisor=1000,
    annotation_stride=5,
    eval_window_frames=(1, 2, 3, 4),
    split_num_frames=MappingProxyType({"train": 2400, "val": 300, "test": 300}),
)

# Cityscapes-DVPS (ViP-DeepLab): Cityscapes-VPS plus depth; void is 32 (32000).
CITYSCAPES_DVPS = DatasetDescriptor(
    name="cityscapes_dvps",
    class_names=CITYSCAPES_CLASS_NAMES,
    colormap=CITYSCAPES_COLORMAP,
    thing_ids=CITYSCAPES_THING_IDS,
    ignore_label=32,
    label_divisor=1000,
    annotation_stride=5,
    eval_window_frames=(1, 2, 3, 4),
    split_num_frames=MappingProxyType({"train": 2400, "val": 300, "test": 300}),
    has_depth=True,
    max_depth=88.0,
)

# KITTI-STEP: only person (11) and car (13) carry track ids (deeplab2#61).
KITTI_STEP = DatasetDescriptor(
    name="kitti_step",
    class_names=CITYSCAPES_CLASS_NAMES,
    colormap=CITYSCAPES_COLORMAP,
    thing_ids=(11, 13),
    ignore_label=255,
    label_divisor=1000,
    annotation_stride=1,
    eval_window_frames=(1, 2, 3, 4),
    split_num_frames=MappingProxyType({"train": 5027, "val": 2981, "test": 11095}),
)

MOTCHALLENGE_STEP = DatasetDescriptor(
    name="motchallenge_step",
    class_names=("sidewalk", "building", "vegetation", "sky", "person", "rider", "bicycle"),
    colormap=(
        (244, 35, 232),
        (70, 70, 70),
        (107, 142, 35),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (119, 11, 32),
    ),
    thing_ids=(4,),
    ignore_label=255,
    label_divisor=1000,
    annotation_stride=1,
    split_num_frames=MappingProxyType({"train": 525, "val": 600}),
)

# SemKITTI-DVPS: sparse LiDAR-projected labels; D = 65536 so void = 255 * 65536.
SEMKITTI_DVPS = DatasetDescriptor(
    name="semkitti_dvps",
    class_names=(
        "car",
        "bicycle",
        "motorcycle",
        "truck",
        "other-vehicle",
        "person",
        "bicyclist",
        "motorcyclist",
        "road",
        "parking",
        "sidewalk",
        "other-ground",
        "building",
        "fence",
        "vegetation",
        "trunk",
        "terrain",
        "pole",
        "traffic-sign",
    ),
    colormap=(
        (100, 150, 245),
        (100, 230, 245),
        (30, 60, 150),
        (80, 30, 180),
        (100, 80, 250),
        (255, 30, 30),
        (255, 40, 200),
        (150, 30, 90),
        (255, 0, 255),
        (255, 150, 255),
        (75, 0, 75),
        (175, 0, 75),
        (255, 200, 0),
        (255, 120, 50),
        (0, 175, 0),
        (135, 60, 0),
        (150, 240, 80),
        (255, 240, 150),
        (255, 0, 0),
    ),
    thing_ids=tuple(range(8)),
    ignore_label=255,
    label_divisor=65536,
    annotation_stride=1,
    eval_window_frames=(1, 5, 10, 20),
    split_num_frames=MappingProxyType({"train": 19120, "val": 4070, "test": 4340}),
    has_depth=True,
    max_depth=88.0,
)

# The built-in synthetic world (vipdl/data/synthetic.py).
SYNTHETIC = DatasetDescriptor(
    name="synthetic",
    class_names=("road", "sidewalk", "building", "vegetation", "sky", "person", "car", "bicycle"),
    colormap=(
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (107, 142, 35),
        (70, 130, 180),
        (220, 20, 60),
        (0, 0, 142),
        (119, 11, 32),
    ),
    thing_ids=(5, 6, 7),
    ignore_label=255,
    label_divisor=1000,
    annotation_stride=1,
    eval_window_frames=(1, 2, 3, 4),
)

DESCRIPTORS: Mapping[str, DatasetDescriptor] = MappingProxyType(
    {
        d.name: d
        for d in (
            CITYSCAPES_VPS,
            CITYSCAPES_DVPS,
            KITTI_STEP,
            MOTCHALLENGE_STEP,
            SEMKITTI_DVPS,
            SYNTHETIC,
        )
    }
)


def get_descriptor(name: str) -> DatasetDescriptor:
    """Returns the descriptor called `name`, with a clear error for unknown names."""
    try:
        return DESCRIPTORS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DESCRIPTORS)}") from None

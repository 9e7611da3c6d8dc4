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
class LabelConvention:
    """How class and instance share one int32 label: `panoptic = class * label_divisor + instance`.

    The part of a `DatasetDescriptor` that per-example and on-device code needs: small, hashable
    (a static `jit` argument) and picklable (grain workers). See docs/datasets.md.

    Attributes:
        num_classes: semantic classes (void excluded).
        thing_ids: class ids that carry instance (track) ids.
        ignore_label: semantic id of void pixels; void panoptic = ignore_label * label_divisor.
        label_divisor: the D of `class * D + instance`.
    """

    num_classes: int
    thing_ids: tuple[int, ...]
    ignore_label: int
    label_divisor: int


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
    def labels(self) -> LabelConvention:
        """The label convention of this dataset."""
        return LabelConvention(
            num_classes=self.num_classes,
            thing_ids=tuple(int(t) for t in self.thing_ids),
            ignore_label=int(self.ignore_label),
            label_divisor=int(self.label_divisor),
        )

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

# VIPSeg (VIPSeg-Dataset/VIPSeg-Dataset panoVIPSeg_categories.json): 124 classes; raw masks use
# 0 = void and class + 1, so in memory void is mapped to ignore_label 255.
# fmt: off
VIPSEG_CLASS_NAMES = (
    "wall", "ceiling", "door", "stair", "ladder", "escalator", "Playground_slide",
    "handrail_or_fence", "window", "rail", "goal", "pillar", "pole", "floor", "ground", "grass",
    "sand", "athletic_field", "road", "path", "crosswalk", "building", "house", "bridge", "tower",
    "windmill", "well_or_well_lid", "other_construction", "sky", "mountain", "stone", "wood", "ice",
    "snowfield", "grandstand", "sea", "river", "lake", "waterfall", "water",
    "billboard_or_Bulletin_Board", "sculpture", "pipeline", "flag", "parasol_or_umbrella",
    "cushion_or_carpet", "tent", "roadblock", "car", "bus", "truck", "bicycle", "motorcycle",
    "wheeled_machine", "ship_or_boat", "raft", "airplane", "tyre", "traffic_light", "lamp",
    "person", "cat", "dog", "horse", "cattle", "other_animal", "tree", "flower", "other_plant",
    "toy", "ball_net", "backboard", "skateboard", "bat", "ball",
    "cupboard_or_showcase_or_storage_rack", "box", "traveling_case_or_trolley_case", "basket",
    "bag_or_package", "trash_can", "cage", "plate", "tub_or_bowl_or_pot", "bottle_or_cup", "barrel",
    "fishbowl", "bed", "pillow", "table_or_desk", "chair_or_seat", "bench", "sofa", "shelf",
    "bathtub", "gun", "commode", "roaster", "other_machine", "refrigerator", "washing_machine",
    "Microwave_oven", "fan", "curtain", "textiles", "clothes", "painting_or_poster", "mirror",
    "flower_pot_or_vase", "clock", "book", "tool", "blackboard", "tissue", "screen_or_television",
    "computer", "printer", "Mobile_phone", "keyboard", "other_electronic_product", "fruit", "food",
    "instrument", "train",
)
VIPSEG_COLORMAP = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80),
    (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7),
    (150, 5, 61), (120, 120, 70), (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4),
    (255, 51, 7), (204, 70, 3), (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255),
    (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10), (7, 255, 255),
    (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255),
    (140, 140, 140), (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0),
    (153, 255, 0), (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112), (0, 255, 133),
    (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0), (0, 143, 255), (51, 255, 0),
    (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0), (0, 255, 153),
    (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
    (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255),
    (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255),
    (163, 255, 0), (255, 235, 0), (8, 184, 170), (133, 0, 255), (0, 255, 92), (184, 0, 255),
    (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255),
    (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0),
)
VIPSEG_THING_IDS = (
    2, 4, 8, 10, 41, 43, 44, 46, 47, 48, 49, 50, 51, 52, 54, 55, 56, 60, 61, 62, 63, 64, 65, 72, 74,
    76, 77, 78, 79, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 95, 96, 97, 99, 100, 101, 102, 106,
    107, 108, 109, 114, 115, 116, 117, 118, 122, 123,
)
# fmt: on

VIPSEG = DatasetDescriptor(
    name="vipseg",
    class_names=VIPSEG_CLASS_NAMES,
    colormap=VIPSEG_COLORMAP,
    thing_ids=VIPSEG_THING_IDS,
    ignore_label=255,
    label_divisor=1000,
    annotation_stride=1,
    # Split sizes are counted in videos (train.txt / val.txt / test.txt list 2806 / 343 / 387);
    # frame counts per split are not published, so conversions check the video lists instead.
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
    # Per-layer metric depth is generated for every frame (vipdl/data/synthetic.py).
    has_depth=True,
    max_depth=88.0,
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
            VIPSEG,
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

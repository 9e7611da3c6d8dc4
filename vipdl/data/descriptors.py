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
        is_video: False for image datasets (Cityscapes panoptic, COCO panoptic): every image is
            its own one-frame video, examples carry no next frame (Panoptic-DeepLab only).
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
    is_video: bool = True

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
        bad = [c for c in self.colormap if len(c) != 3 or not all(0 <= v <= 255 for v in c)]
        if bad:
            raise ValueError(f"{self.name}: colours {bad[:3]} are not RGB triples in 0..255")

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

    def to_dict(self) -> dict:
        """JSON-able form (stored with prepared custom data and in a run's config.json)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["class_names"] = list(self.class_names)
        out["colormap"] = [list(c) for c in self.colormap]
        out["thing_ids"] = list(self.thing_ids)
        out["eval_window_frames"] = list(self.eval_window_frames)
        out["split_num_frames"] = dict(self.split_num_frames)
        return out

    @classmethod
    def from_dict(cls, obj: Mapping, where: str = "descriptor") -> DatasetDescriptor:
        """Inverse of `to_dict`; raises ValueError naming `where` and the bad field."""
        if not isinstance(obj, Mapping):
            raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - fields)
        missing = sorted(f for f in ("name", "class_names", "colormap", "thing_ids",
                                     "ignore_label", "label_divisor") if f not in obj)
        if unknown or missing:
            raise ValueError(f"{where}: unknown fields {unknown}, missing fields {missing}")
        try:
            kwargs = dict(obj)
            kwargs["class_names"] = tuple(str(n) for n in obj["class_names"])
            kwargs["colormap"] = tuple(
                tuple(int(v) for v in c) for c in obj["colormap"]
            )
            kwargs["thing_ids"] = tuple(int(t) for t in obj["thing_ids"])
            if "eval_window_frames" in obj:
                kwargs["eval_window_frames"] = tuple(int(n) for n in obj["eval_window_frames"])
            if "split_num_frames" in obj:
                kwargs["split_num_frames"] = MappingProxyType(
                    {str(k): int(v) for k, v in obj["split_num_frames"].items()}
                )
            return cls(**kwargs)
        except (TypeError, AttributeError) as e:
            raise ValueError(f"{where}: malformed descriptor ({e})") from None


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

# SemKITTI-DVPS (ViP-DeepLab `semkitti-dvps/`): sparse LiDAR-projected labels of every frame of
# the KITTI odometry sequences 00-10; D = 65536 (LiDAR instance ids are 16-bit), so void is
# 255 * 65536.
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
    # Every frame of KITTI odometry sequences 00-07, 09, 10 (train) and 08 (val) is labelled;
    # deeplab2 lists the pair counts 19120 / 4070, one fewer per sequence.
    split_num_frames=MappingProxyType({"train": 19130, "val": 4071}),
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

# Cityscapes panoptic images (gtFine, train ids): the Panoptic-DeepLab stage of the reference
# recipe. Split sizes from deeplab2 `data/dataset.py` (`train_fine` / `val_fine`).
CITYSCAPES_PANOPTIC = DatasetDescriptor(
    name="cityscapes_panoptic",
    class_names=CITYSCAPES_CLASS_NAMES,
    colormap=CITYSCAPES_COLORMAP,
    thing_ids=CITYSCAPES_THING_IDS,
    ignore_label=255,
    label_divisor=1000,
    eval_window_frames=(1,),
    split_num_frames=MappingProxyType({"train": 2975, "val": 500}),
    is_video=False,
)

# COCO panoptic 2017 (panopticapi `panoptic_coco_categories.json`): 80 things then 53 stuff
# classes. Raw category ids (1..200 with gaps) map to class index = position in
# COCO_CATEGORY_IDS; deeplab2 instead shifts every class by one and uses 0 as void.
# fmt: off
COCO_CLASS_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush", "banner", "blanket", "bridge", "cardboard",
    "counter", "curtain", "door-stuff", "floor-wood", "flower", "fruit", "gravel", "house",
    "light", "mirror-stuff", "net", "pillow", "platform", "playingfield", "railroad", "river",
    "road", "roof", "sand", "sea", "shelf", "snow", "stairs", "tent", "towel", "wall-brick",
    "wall-stone", "wall-tile", "wall-wood", "water-other", "window-blind", "window-other",
    "tree-merged", "fence-merged", "ceiling-merged", "sky-other-merged", "cabinet-merged",
    "table-merged", "floor-other-merged", "pavement-merged", "mountain-merged", "grass-merged",
    "dirt-merged", "paper-merged", "food-other-merged", "building-other-merged", "rock-merged",
    "wall-other-merged", "rug-merged",
)

COCO_COLORMAP = (
    (220, 20, 60), (119, 11, 32), (0, 0, 142), (0, 0, 230), (106, 0, 228), (0, 60, 100),
    (0, 80, 100), (0, 0, 70), (0, 0, 192), (250, 170, 30), (100, 170, 30), (220, 220, 0),
    (175, 116, 175), (250, 0, 30), (165, 42, 42), (255, 77, 255), (0, 226, 252), (182, 182, 255),
    (0, 82, 0), (120, 166, 157), (110, 76, 0), (174, 57, 255), (199, 100, 0), (72, 0, 118),
    (255, 179, 240), (0, 125, 92), (209, 0, 151), (188, 208, 182), (0, 220, 176), (255, 99, 164),
    (92, 0, 73), (133, 129, 255), (78, 180, 255), (0, 228, 0), (174, 255, 243), (45, 89, 255),
    (134, 134, 103), (145, 148, 174), (255, 208, 186), (197, 226, 255), (171, 134, 1),
    (109, 63, 54), (207, 138, 255), (151, 0, 95), (9, 80, 61), (84, 105, 51), (74, 65, 105),
    (166, 196, 102), (208, 195, 210), (255, 109, 65), (0, 143, 149), (179, 0, 194), (209, 99, 106),
    (5, 121, 0), (227, 255, 205), (147, 186, 208), (153, 69, 1), (3, 95, 161), (163, 255, 0),
    (119, 0, 170), (0, 182, 199), (0, 165, 120), (183, 130, 88), (95, 32, 0), (130, 114, 135),
    (110, 129, 133), (166, 74, 118), (219, 142, 185), (79, 210, 114), (178, 90, 62), (65, 70, 15),
    (127, 167, 115), (59, 105, 106), (142, 108, 45), (196, 172, 0), (95, 54, 80), (128, 76, 255),
    (201, 57, 1), (246, 0, 122), (191, 162, 208), (255, 255, 128), (147, 211, 203),
    (150, 100, 100), (168, 171, 172), (146, 112, 198), (210, 170, 100), (92, 136, 89),
    (218, 88, 184), (241, 129, 0), (217, 17, 255), (124, 74, 181), (70, 70, 70), (255, 228, 255),
    (154, 208, 0), (193, 0, 92), (76, 91, 113), (255, 180, 195), (106, 154, 176), (230, 150, 140),
    (60, 143, 255), (128, 64, 128), (92, 82, 55), (254, 212, 124), (73, 77, 174), (255, 160, 98),
    (255, 255, 255), (104, 84, 109), (169, 164, 131), (225, 199, 255), (137, 54, 74),
    (135, 158, 223), (7, 246, 231), (107, 255, 200), (58, 41, 149), (183, 121, 142), (255, 73, 97),
    (107, 142, 35), (190, 153, 153), (146, 139, 141), (70, 130, 180), (134, 199, 156),
    (209, 226, 140), (96, 36, 108), (96, 96, 96), (64, 170, 64), (152, 251, 152), (208, 229, 228),
    (206, 186, 171), (152, 161, 64), (116, 112, 0), (0, 114, 143), (102, 102, 156),
    (250, 141, 255),
)

COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90, 92, 93, 95, 100, 107, 109, 112, 118, 119, 122, 125, 128, 130, 133, 138,
    141, 144, 145, 147, 148, 149, 151, 154, 155, 156, 159, 161, 166, 168, 171, 175, 176, 177, 178,
    180, 181, 184, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194, 195, 196, 197, 198, 199, 200,
)

# fmt: on

COCO_PANOPTIC = DatasetDescriptor(
    name="coco_panoptic",
    class_names=COCO_CLASS_NAMES,
    colormap=COCO_COLORMAP,
    thing_ids=tuple(range(80)),
    ignore_label=255,
    label_divisor=1000,
    eval_window_frames=(1,),
    split_num_frames=MappingProxyType({"train": 118287, "val": 5000}),
    is_video=False,
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
            CITYSCAPES_PANOPTIC,
            COCO_PANOPTIC,
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

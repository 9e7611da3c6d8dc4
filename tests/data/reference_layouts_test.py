"""SemKITTI-DVPS, Cityscapes panoptic and COCO panoptic on miniature fixtures in their layouts.

The fixtures are synthetic videos written the way the public releases lay out their files
(docs/datasets.md): file names, label encodings, JSON fields. Each is read back through its
layout and converted by its builder; the published split sizes are what the count check
expects.
"""

import json
import shutil

import ml_collections
import numpy as np
import pytest
from PIL import Image

from vipdl import formats, from_config, keys
from vipdl.data import builders, descriptors, layouts, pipeline, synthetic

CFG = synthetic.SyntheticConfig(height=32, width=64, num_frames=3)
S = synthetic.DESCRIPTOR
SEMKITTI = {"road": 8, "sidewalk": 10, "building": 12, "vegetation": 14, "sky": 16,
            "person": 5, "car": 0, "bicycle": 1}
CITYSCAPES = {"road": 0, "sidewalk": 1, "building": 2, "vegetation": 8, "sky": 10,
              "person": 11, "car": 13, "bicycle": 18}
COCO = {"road": "road", "sidewalk": "pavement-merged", "building": "building-other-merged",
        "vegetation": "tree-merged", "sky": "sky-other-merged", "person": "person", "car": "car",
        "bicycle": "bicycle"}
COCO_CLASS = {k: descriptors.COCO_CLASS_NAMES.index(v) for k, v in COCO.items()}


def _videos(split, n=2):
    return [synthetic.generate_video(CFG, synthetic.split_seed(7, split, v)) for v in range(n)]


def _mapped(panoptic, classes, divisor):
    """The synthetic label with classes renamed by `classes` (name -> id) and divisor D."""
    lut = np.array([classes[n] for n in S.class_names])
    semantic, instance = np.divmod(panoptic.astype(np.int64), S.label_divisor)
    void = semantic == S.ignore_label
    return np.where(void, 255 * divisor, lut[np.where(void, 0, semantic)] * divisor + instance)


# --------------------------------------------------------------------------------------------
# SemKITTI-DVPS.


@pytest.fixture(scope="module")
def semkitti(tmp_path_factory):
    root = tmp_path_factory.mktemp("semkitti")
    for split in ("train", "val"):
        base = root / "video_sequence" / split
        for v, video in enumerate(_videos(split)):
            for t in range(CFG.num_frames):
                stem = base / f"{v + 8:06d}_{t:06d}_"
                formats.atomic_write_png(f"{stem}leftImg8bit.png", video.frames[t])
                label = _mapped(video.panoptic[t], SEMKITTI, 65536)
                formats.atomic_write_png(f"{stem}gtFine_class.png",
                                         (label // 65536).astype(np.uint8))
                formats.atomic_write_png(f"{stem}gtFine_instance.png",
                                         (label % 65536).astype(np.uint16))
                formats.write_depth_png(f"{stem}depth_718.8560180664062.png", video.depth[t])
    return root


def test_semkitti_layout_reads_the_release_layout(semkitti):
    layout = layouts.SemKittiDvpsLayout(semkitti)
    assert layout.splits() == ("train", "val")
    with pytest.raises(layouts.DatasetError, match="expected 4071 for semkitti_dvps"):
        layout.videos("val")
    videos = layout.videos("val", expected_frames=-1)
    assert [v.sequence_id for v in videos] == ["000008", "000009"]
    truth = _videos("val")
    for video, tv in zip(videos, truth, strict=True):
        for frame in video.frames:
            image, panoptic, depth = layout.read_frame(frame)
            t = frame.index
            np.testing.assert_array_equal(image, tv.frames[t])
            np.testing.assert_array_equal(panoptic, _mapped(tv.panoptic[t], SEMKITTI, 65536))
            np.testing.assert_allclose(depth, tv.depth[t], atol=1 / 512)


def test_semkitti_missing_instance_file(semkitti, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(semkitti, copy)
    missing = copy / "video_sequence" / "train" / "000008_000001_gtFine_instance.png"
    missing.unlink()
    with pytest.raises(layouts.DatasetError) as e:
        layouts.SemKittiDvpsLayout(copy).videos("train", expected_frames=-1)
    assert "000008_000001_*: missing gtFine_instance*.png" in str(e.value)


def test_semkitti_builder(semkitti, tmp_path):
    builders.prepare("semkitti_dvps", manual_dir=semkitti, data_dir=tmp_path, check_counts=False)
    source = builders.load_source("semkitti_dvps", "train", tmp_path)
    assert len(source) == 2 * (CFG.num_frames - 1)
    ex = source[1]
    truth = _videos("train")[0]
    np.testing.assert_array_equal(ex[keys.NEXT_PANOPTIC], _mapped(truth.panoptic[2], SEMKITTI,
                                                                  65536))
    np.testing.assert_allclose(ex[keys.DEPTH], truth.depth[1], atol=1 / 512)


# --------------------------------------------------------------------------------------------
# Image sets: COCO-panoptic PNG + JSON.


def _write_coco_style(png_path, panoptic, classes, category_of):
    """An RGB segment-id PNG with ids unrelated to the classes; returns its segments_info."""
    rng = np.random.default_rng(abs(hash(png_path.name)) % 2**32)
    ids = np.zeros(panoptic.shape, np.int64)
    segments = []
    for value in np.unique(panoptic):
        semantic, instance = divmod(int(value), S.label_divisor)
        if semantic == S.ignore_label:
            continue
        sid = int(rng.integers(1, 2**24))
        mask = panoptic == value
        ids[mask] = sid
        segments.append({"id": sid, "category_id": category_of(classes[S.class_names[semantic]]),
                         "iscrowd": int(S.is_thing(semantic) and instance == 0),
                         "area": int(mask.sum())})
    formats.write_rgb_ids(png_path, ids)
    return segments


def _renumbered(panoptic, classes, segments_order):
    """Expected in-memory label: classes mapped, instances 1, 2, ... per class in JSON order."""
    out = _mapped(panoptic, classes, 1000)
    counts = {}
    for value in segments_order:
        semantic, instance = divmod(int(value), S.label_divisor)
        if S.is_thing(semantic) and instance:
            cls = classes[S.class_names[semantic]]
            counts[cls] = counts.get(cls, 0) + 1
            out[panoptic == value] = cls * 1000 + counts[cls]
    return out


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    expected = {}
    for split in ("train", "val"):
        annotations = []
        for v, video in enumerate(_videos(split)):
            image_id = f"city{v}_{v + 100 * (split == 'val'):06d}_000019"
            image = root / "leftImg8bit" / split / f"city{v}" / f"{image_id}_leftImg8bit.png"
            formats.atomic_write_png(image, video.frames[0])
            png = f"{image_id}_gtFine_panoptic.png"
            panoptic = video.panoptic[0]
            segments = _write_coco_style(
                root / "gtFine" / f"cityscapes_panoptic_{split}_trainId" / png, panoptic,
                CITYSCAPES, lambda c: c)
            annotations.append({"image_id": image_id, "file_name": png,
                                "segments_info": segments})
            order = [v_ for v_ in np.unique(panoptic) if v_ // 1000 != 255]
            expected[image_id] = (video.frames[0], _renumbered(panoptic, CITYSCAPES, order))
        formats.atomic_write_json(
            root / "gtFine" / f"cityscapes_panoptic_{split}_trainId.json",
            {"annotations": annotations, "categories": []})
    return root, expected


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    expected = {}
    for split in ("train", "val"):
        annotations, images = [], []
        for v, video in enumerate(_videos(split)):
            stem = f"{1000 * (split == 'val') + v + 1:012d}"
            (root / f"{split}2017").mkdir(exist_ok=True)
            Image.fromarray(video.frames[1]).save(root / f"{split}2017" / f"{stem}.jpg")
            panoptic = video.panoptic[1]
            segments = _write_coco_style(
                root / "annotations" / f"panoptic_{split}2017" / f"{stem}.png", panoptic,
                COCO_CLASS, lambda c: descriptors.COCO_CATEGORY_IDS[c])
            images.append({"id": int(stem), "file_name": f"{stem}.jpg"})
            annotations.append({"image_id": int(stem), "file_name": f"{stem}.png",
                                "segments_info": segments})
            order = [v_ for v_ in np.unique(panoptic) if v_ // 1000 != 255]
            expected[stem] = (video.frames[1], _renumbered(panoptic, COCO_CLASS, order))
        formats.atomic_write_json(root / "annotations" / f"panoptic_{split}2017.json",
                                  {"images": images, "annotations": annotations})
    return root, expected


@pytest.mark.parametrize(
    "fixture, make, published, lossless",
    [("cityscapes", layouts.CityscapesPanopticLayout, 2975, True),
     ("coco", layouts.CocoPanopticLayout, 118287, False)],
)
def test_image_layouts_read_each_image_as_a_one_frame_video(request, fixture, make, published,
                                                            lossless):
    root, expected = request.getfixturevalue(fixture)
    layout = make(root)
    assert layout.splits() == ("train", "val")
    with pytest.raises(layouts.DatasetError, match=f"expected {published} for"):
        layout.videos("train")
    for split in ("train", "val"):
        for video in layout.videos(split, expected_frames=-1):
            (frame,) = video.frames
            image, panoptic, depth = layout.read_frame(frame)
            want_image, want = expected[video.sequence_id]
            np.testing.assert_array_equal(panoptic, want)
            assert depth is None and image.shape == want_image.shape
            if lossless:
                np.testing.assert_array_equal(image, want_image)


def test_image_layout_problems_name_the_files(cityscapes, tmp_path):
    root = tmp_path / "cs"
    shutil.copytree(cityscapes[0], root)
    json_path = root / "gtFine" / "cityscapes_panoptic_val_trainId.json"
    obj = json.loads(json_path.read_text())
    obj["annotations"][0]["segments_info"][0]["category_id"] = 40
    obj["annotations"][1]["segments_info"][0]["area"] += 1
    json_path.write_text(json.dumps(obj))
    (root / "leftImg8bit" / "train" / "city1" / "city1_000001_000019_leftImg8bit.png").unlink()
    layout = layouts.CityscapesPanopticLayout(root)
    with pytest.raises(layouts.DatasetError, match="has no image in") as e:
        layout.videos("train", expected_frames=-1)
    assert "city1_000001_000019" in str(e.value)
    with pytest.raises(layouts.DatasetError, match="unknown category_id 40") as e:
        layout.videos("val", expected_frames=-1)
    assert "city0_000100_000019_gtFine_panoptic.png" in str(e.value)
    obj["annotations"][0]["segments_info"][0]["category_id"] = 0
    json_path.write_text(json.dumps(obj))
    video = layout.videos("val", expected_frames=-1)[1]
    with pytest.raises(layouts.DatasetError, match="segment areas differ") as e:
        layout.read_frame(video.frames[0])
    assert "city1_000101_000019_gtFine_panoptic.png" in str(e.value)


def test_image_builder_writes_single_frames(cityscapes, tmp_path):
    root, expected = cityscapes
    builders.prepare("cityscapes_panoptic", manual_dir=root, data_dir=tmp_path,
                     check_counts=False)
    source = builders.load_source("cityscapes_panoptic", "val", tmp_path)
    assert len(source) == 2
    assert keys.NEXT_IMAGE not in source[0] and keys.NEXT_PANOPTIC not in source[0]
    videos = list(pipeline.iter_videos(source))
    assert [(seq, frames.shape[0]) for seq, frames, _ in videos] == [
        ("city0_000100_000019", 1), ("city1_000101_000019", 1)]
    np.testing.assert_array_equal(videos[1][2][0], expected["city1_000101_000019"][1])
    # Images have no next frame: ViP-DeepLab cannot train on them.
    config = ml_collections.ConfigDict({
        "data": {"dataset": "cityscapes_panoptic", "data_dir": str(tmp_path)},
        "model": {"meta_arch": "vip_deeplab"}})
    with pytest.raises(ValueError, match=r"image dataset \(no next frame\).*panoptic_deeplab"):
        from_config.train_iterator(config, mesh=None)


def test_published_split_sizes():
    assert dict(descriptors.CITYSCAPES_PANOPTIC.split_num_frames) == {"train": 2975, "val": 500}
    assert dict(descriptors.COCO_PANOPTIC.split_num_frames) == {"train": 118287, "val": 5000}
    assert dict(descriptors.SEMKITTI_DVPS.split_num_frames) == {"train": 19130, "val": 4071}
    coco = descriptors.COCO_PANOPTIC
    assert coco.num_classes == 133 and coco.thing_ids == tuple(range(80))
    ids = descriptors.COCO_CATEGORY_IDS
    assert len(set(ids)) == 133 and ids[-1] == 200
    assert not coco.is_video and coco.eval_window_frames == (1,)

"""Tests of the raw dataset layouts: synthetic round trips, VIPSeg decoding and bad input."""

import shutil

import numpy as np
import pytest
from PIL import Image

from vipdl import formats
from vipdl.data import descriptors, layouts, synthetic, synthetic_export

D = descriptors.SYNTHETIC
CFG = synthetic.SyntheticConfig(height=32, width=64, num_frames=6, annotation_stride=2)
SPLITS = {"train": 3, "val": 1}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw") / "synthetic"
    synthetic_export.write_dataset(root, split_videos=SPLITS, config=CFG, seed=3)
    return root


@pytest.fixture
def copy(dataset, tmp_path):
    """A private copy of the dataset that a test may break."""
    dst = tmp_path / "copy"
    shutil.copytree(dataset, dst)
    return dst


def _video(split, v):
    return synthetic.generate_video(CFG, synthetic.split_seed(3, split, v))


@pytest.mark.parametrize(
    "make, all_frames",
    [
        (lambda r: layouts.CityscapesVpsLayout(r, D), False),
        (lambda r: layouts.CityscapesDvpsLayout(r, D), False),
        (lambda r: layouts.StepLayout(r, D), True),
    ],
    ids=["cityscapes_vps", "cityscapes_dvps", "kitti_step"],
)
def test_written_layouts_read_back_identically(dataset, make, all_frames):
    layout = make(dataset)
    assert layout.splits() == ("train", "val")
    for split, count in SPLITS.items():
        videos = layout.videos(split)
        assert len(videos) == count
        for v, video in enumerate(videos):
            truth = _video(split, v)
            raw = range(CFG.num_frames) if all_frames else truth.annotated_frames
            assert [f.index for f in video.frames] == list(range(len(raw)))
            for frame, t in zip(video.frames, raw, strict=True):
                image, panoptic, depth = layout.read_frame(frame)
                np.testing.assert_array_equal(image, truth.frames[t])
                np.testing.assert_array_equal(panoptic, truth.panoptic[t])
                assert panoptic.dtype == np.int32
                if layout.has_depth:
                    np.testing.assert_allclose(depth, truth.depth[t], atol=1 / 512)
                else:
                    assert depth is None


def test_metadata(dataset):
    meta = synthetic_export.read_metadata(dataset)
    assert meta["config"] == CFG
    assert meta["split_num_frames"] == {"train": 3 * 3, "val": 3}


def test_write_dataset_refuses_to_overwrite(dataset):
    with pytest.raises(FileExistsError, match="overwrite"):
        synthetic_export.write_dataset(dataset, split_videos={"val": 1}, config=CFG)


# --------------------------------------------------------------------------------------------
# VIPSeg.


def _vipseg_tree(root, videos=("v1", "v2"), frames=("00000001", "00000004")):
    masks = {}
    for video in videos:
        (root / "imgs" / video).mkdir(parents=True)
        (root / "panomasks" / video).mkdir(parents=True)
        for i, frame in enumerate(frames):
            Image.fromarray(np.full((6, 8, 3), 40 * i, np.uint8)).save(
                root / "imgs" / video / f"{frame}.jpg"
            )
            mask = np.zeros((6, 8), np.uint16)
            mask[0, :] = 6  # Stuff class 5 ("escalator").
            mask[1, :] = 6100 + i  # Person (class 60) instances 0 / 1.
            mask[2, :] = 200  # Known bug: thing encoding on stuff class 1 (VIPSeg-Dataset#1).
            masks[(video, frame)] = mask
            Image.fromarray(mask).save(root / "panomasks" / video / f"{frame}.png")
    (root / "train.txt").write_text("\n".join(videos) + "\n")
    return masks


def test_vipseg_layout_decodes_masks(tmp_path):
    _vipseg_tree(tmp_path)
    layout = layouts.VipsegLayout(tmp_path)
    assert layout.splits() == ("train",)
    videos = layout.videos("train")
    assert [v.sequence_id for v in videos] == ["v1", "v2"]
    assert [f.token for f in videos[0].frames] == [1, 4]
    image, panoptic, depth = layout.read_frame(videos[0].frames[1])
    assert image.shape == (6, 8, 3) and depth is None
    vip = descriptors.VIPSEG
    assert vip.is_thing(60) and not vip.is_thing(5) and not vip.is_thing(1)
    np.testing.assert_array_equal(panoptic[0], 5 * 1000)
    np.testing.assert_array_equal(panoptic[1], 60 * 1000 + 2)  # Raw instance 1 -> 2.
    np.testing.assert_array_equal(panoptic[2], 1 * 1000)  # Instance on stuff dropped.
    np.testing.assert_array_equal(panoptic[3:], vip.void_label)


def test_vipseg_missing_video_and_unmatched_frames(tmp_path):
    _vipseg_tree(tmp_path)
    (tmp_path / "train.txt").write_text("v1\nv2\nv3\n")
    (tmp_path / "imgs" / "v1" / "00000004.jpg").unlink()  # As the 720p race drops frames.
    with pytest.raises(layouts.DatasetError) as e:
        layouts.VipsegLayout(tmp_path).videos("train")
    text = str(e.value)
    assert "v3" in text and "train.txt" in text
    assert "00000004.png: no matching image" in text
    assert len(e.value.problems) == 2


# --------------------------------------------------------------------------------------------
# Bad input: each names the file and all problems are reported together.


def _dvps_files(root, split="train"):
    return sorted((root / "video_sequence" / split).iterdir())


def test_corrupt_png(copy):
    layout = layouts.CityscapesDvpsLayout(copy, D)
    frame = layout.videos("train")[0].frames[1]
    data = frame.label.read_bytes()
    frame.label.write_bytes(data[: len(data) // 2])
    with pytest.raises(layouts.DatasetError, match="cannot decode") as e:
        layout.read_frame(frame)
    assert str(frame.label) in str(e.value)
    frame.image.write_bytes(b"not a png")
    with pytest.raises(layouts.DatasetError) as e:
        layout.read_frame(frame)
    assert len(e.value.problems) == 2  # Image and label, reported together.
    assert str(frame.image) in str(e.value)


def test_image_label_size_mismatch(copy):
    layout = layouts.CityscapesDvpsLayout(copy, D)
    frame = layout.videos("val")[0].frames[0]
    Image.fromarray(np.zeros((16, 64, 3), np.uint8)).save(frame.image)
    with pytest.raises(layouts.DatasetError, match="does not match the image") as e:
        layout.read_frame(frame)
    assert str(frame.label) in str(e.value) and str(frame.image) in str(e.value)
    assert str(frame.depth) in str(e.value)


def test_class_id_outside_descriptor(copy):
    layout = layouts.StepLayout(copy, D)
    frame = layout.videos("train")[1].frames[2]
    rgb = np.asarray(Image.open(frame.label)).copy()
    rgb[0, 0] = (12, 0, 0)  # Class 12 does not exist in the synthetic set (8 classes).
    Image.fromarray(rgb).save(frame.label)
    with pytest.raises(layouts.DatasetError, match=r"class ids \[12\]") as e:
        layout.read_frame(frame)
    assert str(frame.label) in str(e.value)


def test_dvps_class_id_outside_descriptor(copy):
    layout = layouts.CityscapesDvpsLayout(copy, D)
    frame = layout.videos("train")[0].frames[0]
    raw = np.asarray(Image.open(frame.label)).copy()
    raw[0, :3] = 19000  # Valid Cityscapes class 19? No: synthetic has 8 classes.
    Image.fromarray(raw).save(frame.label)
    with pytest.raises(layouts.DatasetError, match=r"class ids \[19\]"):
        layout.read_panoptic(frame)


def test_missing_frame_in_sequence(copy):
    # Remove the middle annotated frame of video 1 in both Cityscapes layouts.
    for path in _dvps_files(copy):
        if path.name.startswith("000001_000001_"):
            path.unlink()
    for path in (copy / "train" / "img").iterdir():
        if path.name.startswith("0001_0004_"):
            path.unlink()
    with pytest.raises(layouts.DatasetError, match="missing frame") as e:
        layouts.CityscapesDvpsLayout(copy, D).videos("train")
    assert "000001_000002_synth_000001_000005_leftImg8bit.png" in str(e.value)
    with pytest.raises(layouts.DatasetError) as e:
        layouts.CityscapesVpsLayout(copy, D).videos("train")
    text = str(e.value)
    assert "jumps from frame 2 to 6" in text and "0001_0006_synth_000001_000005" in text
    # The now unmatched ground-truth entry is reported too.
    assert "0001_0004_synth_000001_000003_leftImg8bit.png: image missing" in text


def test_missing_last_frame_detected_by_video_length(copy):
    # No gap is left when the last frame goes, but the video is shorter than its peers.
    for path in _dvps_files(copy):
        if path.name.startswith("000001_000002_"):
            path.unlink()
    with pytest.raises(layouts.DatasetError, match="has 2 frames but most sequences have 3"):
        layouts.CityscapesDvpsLayout(copy, D).videos("train")


def test_label_without_image(copy):
    (copy / "images" / "train" / "0001" / "000005.png").unlink()
    with pytest.raises(layouts.DatasetError, match="no matching image") as e:
        layouts.StepLayout(copy, D).videos("train")
    assert "panoptic_maps/train/0001/000005.png" in str(e.value)


def test_unmatched_label_and_count_mismatch_reported_together(copy):
    labels = [p for p in _dvps_files(copy, "val") if p.name.endswith("instanceTrainIds.png")]
    labels[-1].unlink()
    with pytest.raises(layouts.DatasetError) as e:
        layouts.CityscapesDvpsLayout(copy, D).videos("val", expected_frames=3)
    text = str(e.value)
    assert "missing gtFine_instanceTrainIds.png" in text
    assert "has 2 annotated frames in 1 sequences, expected 3" in text
    assert len(e.value.problems) == 2


def test_count_mismatch_against_descriptor(dataset):
    layout = layouts.StepLayout(dataset, descriptors.KITTI_STEP)
    with pytest.raises(layouts.DatasetError, match="expected 2981 for kitti_step"):
        layout.videos("val")
    assert len(layout.videos("val", expected_frames=-1)) == 1


def test_vps_segment_not_in_json(copy):
    layout = layouts.CityscapesVpsLayout(copy, D)
    frame = layout.videos("val")[0].frames[0]
    rgb = np.asarray(Image.open(frame.label)).copy()
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(frame.label)
    with pytest.raises(layouts.DatasetError, match="not in the ground-truth JSON") as e:
        layout.read_frame(frame)
    assert str(frame.label) in str(e.value)


def test_vps_renumbers_foreign_segment_ids(copy):
    """Real Cityscapes-VPS ids are random colours: instances are renumbered per video."""
    import json

    json_path = copy / "panoptic_gt_val_city_vps.json"
    gt = json.loads(json_path.read_text())
    shift = 77  # Make ids no longer `class * D + instance + 1`.
    remap = {}
    for ann in gt["annotations"]:
        for seg in ann["segments_info"]:
            remap[seg["id"]] = seg["id"] * 3 + shift
            seg["id"] = remap[seg["id"]]
    json_path.write_text(json.dumps(gt))
    layout = layouts.CityscapesVpsLayout(copy, D)
    video = layout.videos("val")[0]
    for frame in video.frames:
        ids = formats.rgb_to_id(np.asarray(Image.open(frame.label)))
        new = np.vectorize(lambda i: remap.get(int(i), 0))(ids)
        Image.fromarray(formats.id_to_rgb(new)).save(frame.label)
    truth = _video("val", 0)
    decoded = [layout.read_panoptic(f) for f in video.frames]
    for got, t in zip(decoded, truth.annotated_frames, strict=True):
        want = truth.panoptic[t]
        # Same partition and classes; instance ids are consistent through the video.
        np.testing.assert_array_equal(got // 1000, want // 1000)
    pairs = {
        (int(a), int(b))
        for d, t in zip(decoded, truth.annotated_frames)
        for a, b in zip(d.ravel(), truth.panoptic[t].ravel())
    }
    assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})


def test_written_ground_truth_is_readable_by_the_evaluation(dataset, tmp_path):
    """Cityscapes-VPS ground truth of the synthetic set feeds `vipdl-eval-vpq` as is."""
    from vipdl.evaluation import readers, vpq, writers

    truth = _video("val", 0)
    layout = layouts.CityscapesVpsLayout(dataset, D)
    with writers.VpsPredictionWriter(
        tmp_path, label_divisor=1000, ignore_label=255, thing_ids=D.thing_ids
    ) as w:
        for frame, t in zip(layout.videos("val")[0].frames, truth.annotated_frames, strict=True):
            w.add(frame.image.name[: -len("_leftImg8bit.png")], truth.panoptic[t])
    data = readers.read_vps(
        dataset / "panoptic_gt_val_city_vps.json", dataset / "val" / "panoptic_video", tmp_path
    )
    assert [len(v) for v in data.videos.values()] == [3]
    result = vpq.evaluate_vps(data, window_sizes=(1, 3), annotation_stride=2)
    assert result.summary()["VPQ"] == pytest.approx(100.0)


def test_vps_image_without_ground_truth_and_bad_json(copy):
    extra = copy / "val" / "img" / "0000_0099_synth_000000_000098_leftImg8bit.png"
    shutil.copyfile(next((copy / "val" / "img").iterdir()), extra)
    with pytest.raises(layouts.DatasetError, match="image has no ground truth") as e:
        layouts.CityscapesVpsLayout(copy, D).videos("val")
    assert str(extra) in str(e.value)
    (copy / "panoptic_gt_val_city_vps.json").write_text("{not json")
    with pytest.raises(layouts.DatasetError, match="not a Cityscapes-VPS ground-truth JSON"):
        layouts.CityscapesVpsLayout(copy, D).videos("val")

"""Your own labelled videos: dataset.json, the three label formats, the checks, the stats, the
conversion (descriptor stored with the data and carried into a run's config) and the CLIs."""

import dataclasses
import json
import shutil

import ml_collections
import numpy as np
import pytest
from PIL import Image

from vipdl import formats, from_config, keys
from vipdl.cli import dataset_stats, prepare_data
from vipdl.data import builders, custom, layouts, stats, synthetic, synthetic_export

CFG = synthetic.SyntheticConfig(height=32, width=64, num_frames=7, annotation_stride=3)
SPLITS = {"train": 2, "val": 1}
SEED = 5


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw") / "mine"
    synthetic_export.write_dataset(root, split_videos=SPLITS, config=CFG, seed=SEED,
                                   layouts=("custom",))
    return root


@pytest.fixture
def copy(raw, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(raw, dst)
    return dst


def _truth(split, v):
    return synthetic.generate_video(CFG, synthetic.split_seed(SEED, split, v))


def _expected(panoptic):
    """The synthetic label mapped to the custom classes (instances up to renumbering)."""
    d = synthetic.DESCRIPTOR.label_divisor
    semantic = panoptic // d
    void = semantic == synthetic.DESCRIPTOR.ignore_label
    mapped = synthetic_export._custom_class_map()[np.where(void, 0, semantic)]
    return np.where(void, 255, mapped)


def _same_objects(a, truth):
    """Whether label map `a` splits the truth's object pixels into the same objects."""
    mask = np.isin(truth // 1000, (5, 6, 7)) & (truth % 1000 > 0)
    pairs = np.unique(np.stack([a[mask], truth[mask]]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def test_layout_reads_the_export(raw):
    layout = custom.make_layout(raw)
    d = layout.descriptor
    assert d.class_names == ("ground", "building", "vegetation", "sky", "person", "vehicle")
    assert d.thing_ids == (4, 5) and d.ignore_label == 255 and d.has_depth
    assert layout.splits() == ("train", "val")
    for split, count in SPLITS.items():
        videos = layout.videos(split)
        assert len(videos) == count
        for v, video in enumerate(videos):
            truth = _truth(split, v)
            # Sparse labels: the tokens are the raw frame numbers of the annotated frames.
            assert [f.token for f in video.frames] == list(truth.annotated_frames) == [2, 5]
            ids = []
            for frame, t in zip(video.frames, truth.annotated_frames, strict=True):
                image, panoptic, depth = layout.read_frame(frame)
                np.testing.assert_array_equal(image, truth.frames[t])
                np.testing.assert_array_equal(panoptic // 1000, _expected(truth.panoptic[t]))
                assert _same_objects(panoptic, truth.panoptic[t])
                np.testing.assert_allclose(depth, truth.depth[t], atol=1 / 512)
                ids.append(panoptic)
            # Instance ids persist: the two frames' labels agree with the truth jointly.
            assert _same_objects(np.concatenate(ids), truth.panoptic[[2, 5]].reshape(-1, 64))
    assert layout.warnings == []


def test_class_instance_and_cityscapes_vps_formats_read_the_same(raw, tmp_path):
    coco = custom.make_layout(raw)
    video = coco.videos("train")[1]
    # class_instance: the same labels as 16-bit `category id * 1000 + instance` PNGs.
    ci = tmp_path / "ci"
    shutil.copytree(raw, ci)
    spec = json.loads((ci / "dataset.json").read_text())
    (ci / "dataset.json").write_text(json.dumps({**spec, "label_format": "class_instance"}))
    cats = np.array([255, *synthetic_export.CUSTOM_CATEGORY_IDS])  # Class 255 = void.
    for frame in video.frames:
        panoptic = coco.read_panoptic(frame)
        raw_ids = cats[np.where(panoptic // 1000 == 255, 0, panoptic // 1000 + 1)] * 1000
        raw_ids = np.where(panoptic // 1000 == 255, 0, raw_ids + panoptic % 1000)
        path = ci / "train" / "000001" / "labels" / frame.label.name
        Image.fromarray(raw_ids.astype(np.uint16)).save(path)
    other = custom.make_layout(ci)
    assert isinstance(other, custom.CustomLayout) and other.spec.label_format == "class_instance"
    for a, b in zip(video.frames, other.videos("train")[1].frames, strict=True):
        np.testing.assert_array_equal(coco.read_panoptic(a), other.read_panoptic(b))

    # cityscapes_vps: the synthetic Cityscapes-VPS export plus a dataset.json of its classes.
    vps = tmp_path / "vps"
    every = synthetic.SyntheticConfig(height=32, width=64, num_frames=6)
    synthetic_export.write_dataset(vps, split_videos={"val": 1}, config=every, seed=SEED,
                                   layouts=("cityscapes_vps",))
    d = synthetic.DESCRIPTOR
    (vps / "dataset.json").write_text(json.dumps({
        "name": "vps_style", "class_names": list(d.class_names), "thing_ids": list(d.thing_ids),
        "label_format": "cityscapes_vps"}))
    gt_path = vps / "panoptic_gt_val_city_vps.json"
    gt = json.loads(gt_path.read_text())
    dropped = {i["id"] for i in gt["images"] if i["id"].startswith(("0000_0003", "0000_0004"))}
    gt["images"] = [i for i in gt["images"] if i["id"] not in dropped]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] not in dropped]
    gt_path.write_text(json.dumps(gt))
    for image_id in dropped:  # Irregular annotation: raw frames 1, 2, 5, 6 labelled.
        (vps / "val" / "img" / f"{image_id}_leftImg8bit.png").unlink()
    layout = custom.make_layout(vps)
    assert isinstance(layout, custom.CustomVpsLayout) and layout.splits() == ("val",)
    (video,) = layout.videos("val")
    assert [f.token for f in video.frames] == [1, 2, 5, 6]  # 1-based raw frame numbers.
    truth = synthetic.generate_video(every, synthetic.split_seed(SEED, "val", 0))
    for frame, t in zip(video.frames, (0, 1, 4, 5), strict=True):
        np.testing.assert_array_equal(layout.read_frame(frame)[1], truth.panoptic[t])


def _spec_problems(obj):
    with pytest.raises(layouts.DatasetError) as e:
        custom.parse_spec(obj, "/data/mine/dataset.json")
    assert str(e.value).startswith("/data/mine/dataset.json")
    return str(e.value)


def test_dataset_json_errors_are_reported_together():
    text = _spec_problems({
        "name": "bad name", "class_names": ["road", "car", "road"], "thing_ids": [1, 3],
        "colors": [[0, 0, 0]], "ignore_label": 2, "category_ids": [0, 2, 4], "colour": 1,
    })
    assert "duplicate names ['road']" in text
    assert "'thing_ids' [3] out of range" in text
    assert "'colors' has 1 entries for 3 class names" in text
    assert "'ignore_label' 2 is also the label id" in text
    assert "unknown field(s) ['colour']" in text
    assert "'name' must be a word" in text
    assert "6 problem(s)" in text  # All listed together.
    assert "'class_names' must be a non-empty list" in _spec_problems({"name": "x"})
    assert "'label_format' must be one of" in _spec_problems(
        {"name": "x", "class_names": ["a"], "label_format": "png"})
    spec = custom.parse_spec({"name": "x", "class_names": ["a", "b"], "thing_ids": [1]}, "d.json")
    assert spec.descriptor.colormap == custom.default_colors(2)
    assert spec.category_ids == (0, 1) and not spec.descriptor.has_depth
    with pytest.raises(layouts.DatasetError, match="dataset.json missing"):
        custom.read_spec("/nonexistent")


def _labels_json(root, video="000000", split="train"):
    path = root / split / video / "labels.json"
    return path, json.loads(path.read_text())


def test_bad_labels_name_their_files(copy):
    # A category id that is not in dataset.json.
    path, obj = _labels_json(copy)
    obj["annotations"][0]["segments_info"][0]["category_id"] = 99
    # An instance (segment id) that changes class between two frames of one video.
    first = {s["id"]: s for s in obj["annotations"][0]["segments_info"] if s["id"] >= 100}
    seg = next(s for s in obj["annotations"][1]["segments_info"] if s["id"] in first)
    names = {10: "person", 11: "vehicle"}
    was, seg["category_id"] = seg["category_id"], 21 - seg["category_id"]
    path.write_text(json.dumps(obj))
    # A label PNG whose size differs from its frame (other video).
    label = copy / "train" / "000001" / "labels" / "000005.png"
    formats.write_rgb_ids(label, np.ones((16, 16), np.int64))
    layout = custom.make_layout(copy)
    with pytest.raises(layouts.DatasetError) as e:
        layout.videos("train")
    text = str(e.value)
    label0 = copy / "train" / "000000" / "labels"
    assert f"{label0 / '000002.png'}: segment 1 has category_id 99" in text
    now = names[seg["category_id"]]
    assert f"{label0 / '000005.png'}: instance (segment id) {seg['id']} is {now!r} here" in text
    assert f"{names[was]!r} in 000002.png" in text
    (video,) = [v for v in layout._list("train", []) if v.sequence_id == "000001"]
    with pytest.raises(layouts.DatasetError, match="size 16x16 does not match the image") as e:
        layout.read_frame(video.frames[1])
    assert str(label) in str(e.value)


def test_missing_and_unlisted_files(copy):
    (copy / "train" / "000000" / "frames" / "000005.png").unlink()
    (copy / "train" / "000001" / "depth" / "000002.png").unlink()
    (copy / "val" / "000000" / "labels.json").unlink()
    with pytest.raises(layouts.DatasetError) as e:
        custom.make_layout(copy).videos("train")
    assert "labels/000005.png: no frame named 000005.* in" in str(e.value)
    assert "depth/000002.png: depth missing" in str(e.value)
    assert "2 problem(s)" in str(e.value)  # Only the causes: their JSON entries are fine.
    with pytest.raises(layouts.DatasetError, match="labels.json: file missing"):
        custom.make_layout(copy).videos("val")


def test_thing_pixels_without_instance_in_class_instance_labels(copy):
    spec = json.loads((copy / "dataset.json").read_text())
    (copy / "dataset.json").write_text(json.dumps({**spec, "label_format": "class_instance"}))
    label = copy / "val" / "000000" / "labels" / "000002.png"
    values = np.full((32, 64), 1000, np.uint16)  # ground
    values[:4, :4] = 10 * 1000  # person, instance 0
    values[4:6, :4] = 12 * 1000 + 1  # class 12 is not in dataset.json
    Image.fromarray(values).save(label)
    layout = custom.make_layout(copy)
    frame = layout.videos("val")[0].frames[0]
    with pytest.raises(layouts.DatasetError, match=r"class ids \[12\] are not in dataset.json"):
        layout.read_frame(frame)
    values[4:6, :4] = 0
    Image.fromarray(values).save(label)
    with pytest.raises(layouts.DatasetError) as e:
        layout.read_frame(frame)
    assert str(label) in str(e.value)
    assert "16 pixels of thing classes ['person'] have instance 0" in str(e.value)


def test_mixed_sizes_split_the_video_and_per_frame_ids_are_reported(copy):
    frames = copy / "val" / "000000" / "frames"
    for name in ("000005.png", "000006.png"):  # The last annotated frame changes size.
        Image.open(frames / name).resize((48, 32)).save(frames / name)
    label = copy / "val" / "000000" / "labels" / "000005.png"
    ids = formats.read_rgb_ids(label)
    formats.write_rgb_ids(label, ids[:, :48])
    path, obj = _labels_json(copy, split="val")
    obj["annotations"][1]["segments_info"] = [
        s for s in obj["annotations"][1]["segments_info"] if s["id"] in set(np.unique(ids[:, :48]))
    ]
    path.write_text(json.dumps(obj))
    layout = custom.make_layout(copy)
    videos = layout.videos("val")
    assert [v.sequence_id for v in videos] == ["000000.part1", "000000.part2"]
    assert [f.index for v in videos for f in v.frames] == [0, 0]
    assert any("frame size 48x32 differs from 64x32" in w and "000005.png" in w
               for w in layout.warnings)
    # Ids numbered per frame (every object a new id in each frame) are noted, not refused.
    path, obj = _labels_json(copy)
    for seg in obj["annotations"][1]["segments_info"]:
        if seg["id"] >= 100:
            seg["id"] += 500
    path.write_text(json.dumps(obj))
    label = copy / "train" / "000000" / "labels" / "000005.png"
    ids = formats.read_rgb_ids(label)
    formats.write_rgb_ids(label, np.where(ids >= 100, ids + 500, ids))
    result = stats.dataset_stats(custom.make_layout(copy), splits=["train"])
    assert result["problems"] == []
    (note,) = result["notes"]
    assert "no instance id of video 000000 appears in more than one annotated frame" in note


def test_stats_count_pixels_instances_tracks_and_stride(raw):
    result = stats.dataset_stats(custom.make_layout(raw))
    train = result["splits"]["train"]
    assert train["videos"] == 2 and train["annotated_frames"] == 4 and train["pairs"] == 2
    assert train["frame_sizes"] == {"64x32": 4} and train["annotation_gaps"] == {3: 2}
    classes = train["classes"]
    assert sum(c["pixel_share"] for c in classes.values()) == pytest.approx(1.0, abs=1e-4)
    assert classes["ground"]["instances"] is None
    tracks = set()
    pixels = np.zeros(6)
    for v in range(2):
        truth = _truth("train", v)
        labels = truth.panoptic[list(truth.annotated_frames)]
        mapped = _expected(labels)
        pixels += np.bincount(mapped[mapped != 255], minlength=6)
        things = np.unique(labels[np.isin(labels // 1000, (5, 6, 7)) & (labels % 1000 > 0)])
        tracks |= {(v, int(t)) for t in things}
    assert classes["person"]["pixel_share"] == pytest.approx(pixels[4] / pixels.sum(), abs=1e-5)
    assert classes["person"]["instances"] + classes["vehicle"]["instances"] == len(tracks)
    assert train["tracks"]["tracks"] == len(tracks) and train["tracks"]["max"] == 2
    text = stats.format_stats(result)
    assert "annotated-frame stride" in text and "problems: none" in text


def test_dataset_stats_cli(raw, copy, capsys, tmp_path):
    out = tmp_path / "stats.json"
    assert dataset_stats.main(["--manual_dir", str(raw), "--json", str(out), "--no-progress"]) == 0
    assert "vehicle" in capsys.readouterr().out
    assert json.loads(out.read_text())["splits"]["val"]["videos"] == 1
    path, obj = _labels_json(copy)
    obj["annotations"][0]["segments_info"][0]["category_id"] = 99
    path.write_text(json.dumps(obj))
    assert dataset_stats.main(["--manual_dir", str(copy), "--no-progress"]) == 1
    assert "problems (1):" in capsys.readouterr().out
    assert dataset_stats.main(["--manual_dir", str(tmp_path / "none")]) == 1
    assert "dataset.json missing" in capsys.readouterr().err


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    builders.prepare("custom", manual_dir=raw, data_dir=data_dir)
    return data_dir


def test_prepare_stores_descriptor_and_raw_frame_numbers(prepared, raw):
    stored = builders.prepared_descriptor("custom", prepared)
    assert stored == dataclasses.replace(custom.read_spec(raw).descriptor, annotation_stride=3)
    source = builders.load_source("custom", "val", prepared)
    assert len(source) == 1
    ex = source[0]
    assert (ex[keys.RAW_FRAME], ex[keys.NEXT_RAW_FRAME]) == (2, 5)
    assert (ex[keys.FRAME_INDEX], ex[keys.NEXT_FRAME_INDEX]) == (0, 1)
    truth = _truth("val", 0)
    np.testing.assert_array_equal(ex[keys.NEXT_IMAGE], truth.frames[5])
    np.testing.assert_array_equal(ex[keys.PANOPTIC] // 1000, _expected(truth.panoptic[2]))
    np.testing.assert_allclose(ex[keys.DEPTH], truth.depth[2], atol=1 / 512)

    # Training reads it from the data; the run's config then carries it (prediction needs no
    # data), and a differing prepared dataset is refused.
    config = ml_collections.ConfigDict(
        {"data": {"dataset": "custom", "data_dir": str(prepared), "custom_descriptor": ""}})
    assert from_config.descriptor(config) == stored
    resolved = from_config.with_dataset_descriptor(config)
    assert config.data.custom_descriptor == ""
    resolved.data.data_dir = "/nonexistent"
    assert from_config.descriptor(resolved) == stored
    other = dataclasses.replace(stored, class_names=("a", "b", "c", "d", "e", "f"))
    resolved.data.custom_descriptor = json.dumps(other.to_dict())
    resolved.data.data_dir = str(prepared)
    with pytest.raises(ValueError, match="differs from the dataset prepared in"):
        from_config.with_dataset_descriptor(resolved)
    config.data.data_dir = ""
    with pytest.raises(ValueError, match="needs config.data.data_dir"):
        from_config.descriptor(config)


def test_prepare_reports_all_problems_and_leaves_nothing(copy, tmp_path, capsys):
    path, obj = _labels_json(copy)
    obj["annotations"][0]["segments_info"][0]["category_id"] = 99
    path.write_text(json.dumps(obj))
    (copy / "val" / "000000" / "depth" / "000005.png").unlink()
    data_dir = tmp_path / "out"
    argv = ["--dataset", "custom", "--manual_dir", str(copy), "--data_dir", str(data_dir)]
    assert prepare_data.main(argv) == 1  # Structure of every split first, in one report.
    err = capsys.readouterr().err
    assert "category_id 99" in err and "train/000000/labels/000002.png" in err
    assert "val/000000/depth/000005.png: depth missing" in err
    assert not builders.is_prepared("custom", data_dir)
    obj["annotations"][0]["segments_info"][0]["category_id"] = 1
    path.write_text(json.dumps(obj))
    shutil.copy(copy / "val" / "000000" / "depth" / "000002.png",
                copy / "val" / "000000" / "depth" / "000005.png")
    bad = copy / "val" / "000000" / "frames" / "000002.png"
    bad.write_bytes(bad.read_bytes()[:40])  # Found only when the frame is decoded.
    assert prepare_data.main(argv) == 1
    assert f"{bad}: cannot decode" in capsys.readouterr().err
    assert not builders.is_prepared("custom", data_dir)
    assert not [p for p in data_dir.rglob("*") if "staging" in p.name or "incomplete" in p.name]


def test_prepare_prints_notes(copy, tmp_path, capsys):
    # Video 000001 keeps one annotated frame: no training pair, reported as a note.
    (copy / "train" / "000001" / "labels" / "000005.png").unlink()
    path, obj = _labels_json(copy, video="000001")
    obj["annotations"] = obj["annotations"][:1]
    path.write_text(json.dumps(obj))
    data_dir = tmp_path / "out"
    argv = ["--dataset", "custom", "--manual_dir", str(copy), "--data_dir", str(data_dir)]
    assert prepare_data.main(argv) == 0
    err = capsys.readouterr().err
    assert "note:" in err and "forms no (t, t+1) training pair" in err
    assert len(builders.load_source("custom", "train", data_dir)) == 1


def test_make_synthetic_custom_cli(tmp_path, capsys):
    from vipdl.cli import make_synthetic

    out = tmp_path / "mine"
    argv = ["--out", str(out), "--layout", "custom", "--train-videos", "1", "--val-videos", "1",
            "--height", "16", "--width", "32", "--frames", "4", "--annotation-stride", "2",
            "--no-progress"]
    assert make_synthetic.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "synthetic.json", "train",
                                                     "val"]
    assert custom.read_spec(out).descriptor.class_names[-1] == "vehicle"
    assert sorted(p.name for p in (out / "val" / "000000" / "labels").iterdir()) == [
        "000001.png", "000003.png"]
    bad = ["--out", str(tmp_path / "x"), "--layouts", "custom,cityscapes_vps"]
    assert make_synthetic.main(bad) == 1
    assert "different --out" in capsys.readouterr().err

"""Tests of the TFDS builders, `prepare`, `load_source` and the data CLIs."""

import json
import pickle
import shutil
import socket

import numpy as np
import pytest
from PIL import Image

from vipdl import keys
from vipdl.cli import make_synthetic, prepare_data
from vipdl.data import builders, layouts, synthetic, synthetic_export

CFG = synthetic.SyntheticConfig(height=32, width=64, num_frames=3)
SPLITS = {"train": 2, "val": 2}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw") / "synthetic"
    synthetic_export.write_dataset(root, split_videos=SPLITS, config=CFG, seed=1)
    return root


def _no_network(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args}")


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    with pytest.MonkeyPatch.context() as mp:  # Conversion and loading must stay offline.
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "getaddrinfo", _no_network)
        path = builders.prepare("synthetic", manual_dir=raw, data_dir=data_dir)
        builders.load_source("synthetic", "val", data_dir)[0]
    return data_dir, path


def _leftovers(data_dir):
    """Anything that is not a finished dataset: staging or TFDS incomplete directories."""
    return [p for p in data_dir.rglob("*") if "staging" in p.name or "incomplete" in p.name]


@pytest.mark.parametrize("split", ["train", "val"])
def test_round_trip_through_load_source(prepared, split):
    data_dir, path = prepared
    assert (path / "dataset_info.json").is_file()
    assert list(path.glob("*.array_record-*"))
    source = builders.load_source("synthetic", split, data_dir)
    assert len(source) == SPLITS[split] * (CFG.num_frames - 1)
    order = []
    for i in range(len(source)):
        ex = source[i]
        v, k = int(ex[keys.SEQUENCE_ID]), ex[keys.FRAME_INDEX]
        order.append((v, k))
        truth = synthetic.generate_video(CFG, synthetic.split_seed(1, split, v))
        assert ex[keys.NEXT_FRAME_INDEX] == k + 1
        np.testing.assert_array_equal(ex[keys.IMAGE], truth.frames[k])
        np.testing.assert_array_equal(ex[keys.NEXT_IMAGE], truth.frames[k + 1])
        np.testing.assert_array_equal(ex[keys.PANOPTIC], truth.panoptic[k])
        np.testing.assert_array_equal(ex[keys.NEXT_PANOPTIC], truth.panoptic[k + 1])
        np.testing.assert_allclose(ex[keys.DEPTH], truth.depth[k], atol=1 / 512)
        assert ex[keys.IMAGE].dtype == np.uint8
        assert ex[keys.PANOPTIC].dtype == np.int32 and ex[keys.DEPTH].dtype == np.float32
        assert isinstance(ex[keys.SEQUENCE_ID], str)
    # Pairs of a video are consecutive and in frame order.
    assert order == sorted(order)
    with pytest.raises(IndexError):
        source[len(source)]
    # In-memory training with the same seed and split sees exactly the prepared data.
    memory = synthetic.SyntheticPairSource(SPLITS[split], config=CFG, seed=1, split=split)
    assert len(memory) == len(source)
    for i in (0, len(source) - 1):
        for key in (keys.IMAGE, keys.NEXT_IMAGE, keys.PANOPTIC, keys.NEXT_PANOPTIC):
            np.testing.assert_array_equal(memory[i][key], source[i][key])
        assert memory[i][keys.SEQUENCE_ID] == source[i][keys.SEQUENCE_ID]


def test_source_pickles(prepared):
    source = builders.load_source("synthetic", "val", prepared[0])
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone[1][keys.PANOPTIC], source[1][keys.PANOPTIC])


def test_load_source_errors(prepared, tmp_path):
    data_dir, _ = prepared
    with pytest.raises(KeyError, match="no split 'test'"):
        builders.load_source("synthetic", "test", data_dir)
    with pytest.raises(FileNotFoundError, match="vipdl-prepare-data"):
        builders.load_source("synthetic", "val", tmp_path)
    with pytest.raises(KeyError, match="unknown dataset"):
        builders.load_source("cityscapes", "val", data_dir)


def test_refuses_to_overwrite_a_complete_dataset(raw, prepared, capsys):
    data_dir, _ = prepared
    with pytest.raises(FileExistsError, match="overwrite"):
        builders.prepare("synthetic", manual_dir=raw, data_dir=data_dir)
    argv = ["--dataset", "synthetic", "--manual_dir", str(raw), "--data_dir", str(data_dir)]
    assert prepare_data.main(argv) == 1
    assert "already prepared" in capsys.readouterr().err


def _break(raw, tmp_path):
    """A copy of `raw` with a corrupt image and a label class outside the descriptor."""
    bad = tmp_path / "bad"
    shutil.copytree(raw, bad)
    files = sorted((bad / "video_sequence" / "val").iterdir())
    corrupt = next(p for p in files if p.name.startswith("000000_000001_") and "left" in p.name)
    corrupt.write_bytes(corrupt.read_bytes()[:50])
    label = next(p for p in files if p.name.startswith("000001_000002_") and "gtFine" in p.name)
    values = np.asarray(Image.open(label)).copy()
    values[0, 0] = 9001  # Class 9 > the 8 synthetic classes.
    Image.fromarray(values).save(label)
    return bad, corrupt, label


def test_bad_input_lists_every_problem_and_leaves_nothing(raw, tmp_path):
    bad, corrupt, label = _break(raw, tmp_path)
    data_dir = tmp_path / "out"
    with pytest.raises(layouts.DatasetError) as e:
        builders.prepare("synthetic", manual_dir=bad, data_dir=data_dir)
    text = str(e.value)
    assert str(corrupt) in text and "cannot decode" in text
    assert str(label) in text and "class ids [9]" in text
    assert not builders.is_prepared("synthetic", data_dir)
    assert not _leftovers(data_dir)


def test_structure_problems_of_all_splits_reported_before_writing(raw, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(raw, bad)
    for split in ("train", "val"):  # One missing middle frame in each split.
        for p in (bad / "video_sequence" / split).glob("000000_000001_*"):
            p.unlink()
    data_dir = tmp_path / "out"
    argv = ["--dataset", "synthetic", "--manual_dir", str(bad), "--data_dir", str(data_dir)]
    assert prepare_data.main(argv) == 1
    err = capsys.readouterr().err
    assert "video_sequence/train/000000_000002_" in err
    assert "video_sequence/val/000000_000002_" in err
    assert not builders.is_prepared("synthetic", data_dir)


def test_interrupted_conversion_keeps_old_dataset_and_leaves_nothing(raw, tmp_path, monkeypatch):
    data_dir = tmp_path / "out"
    path = builders.prepare("synthetic", manual_dir=raw, data_dir=data_dir)
    before = sorted(p.name for p in path.iterdir())
    calls = []
    read_frame = layouts.CityscapesDvpsLayout.read_frame

    def interrupted(self, frame):
        calls.append(frame)
        if len(calls) > 3:
            raise KeyboardInterrupt  # As if the user pressed Ctrl-C mid-conversion.
        return read_frame(self, frame)

    monkeypatch.setattr(layouts.CityscapesDvpsLayout, "read_frame", interrupted)
    with pytest.raises(KeyboardInterrupt):
        builders.prepare("synthetic", manual_dir=raw, data_dir=data_dir, overwrite=True)
    assert len(calls) == 4
    assert not _leftovers(data_dir)
    assert sorted(p.name for p in path.iterdir()) == before  # The old copy is intact.
    assert len(builders.load_source("synthetic", "val", data_dir)) == 4

    # Interrupted first conversion: nothing that looks like a dataset.
    calls.clear()
    fresh = tmp_path / "fresh"
    with pytest.raises(KeyboardInterrupt):
        builders.prepare("synthetic", manual_dir=raw, data_dir=fresh)
    assert not builders.is_prepared("synthetic", fresh)
    assert not list(fresh.rglob("dataset_info.json"))
    assert not _leftovers(fresh)


def test_make_synthetic_cli(tmp_path, capsys):
    out = tmp_path / "synth"
    argv = ["--out", str(out), "--train-videos", "1", "--val-videos", "1", "--height", "16"]
    argv += ["--width", "32", "--frames", "2", "--layouts", "kitti_step", "--no-progress"]
    assert make_synthetic.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["images", "panoptic_maps", "synthetic.json"]
    assert make_synthetic.main(argv) == 1  # Exists.
    assert "overwrite" in capsys.readouterr().err
    assert make_synthetic.main([*argv, "--overwrite", "--object-scale", "0.5"]) == 0
    assert json.loads((out / "synthetic.json").read_text())["config"]["object_scale"] == 0.5
    assert make_synthetic.main([*argv, "--overwrite", "--object-scale", "2"]) == 1
    assert "object_scale must be in [0.1, 1]" in capsys.readouterr().err
    assert (out / "synthetic.json").is_file()  # The refused run left the old dataset alone.
    assert make_synthetic.main(["--out", str(tmp_path / "x"), "--layouts", "coco"]) == 1
    assert "layouts" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    # The synthetic builder needs a Cityscapes layout.
    argv = ["--dataset", "synthetic", "--manual_dir", str(out), "--data_dir", str(tmp_path / "o")]
    assert prepare_data.main(argv) == 1
    assert "cityscapes_dvps or cityscapes_vps" in capsys.readouterr().err


def test_kitti_step_builder_on_the_synthetic_step_layout(raw, tmp_path):
    """A real-dataset builder (no depth): counts checked against the descriptor unless told."""
    data_dir = tmp_path / "out"
    with pytest.raises(layouts.DatasetError, match="expected 5027 for kitti_step"):
        builders.prepare("kitti_step", manual_dir=raw, data_dir=data_dir)
    assert not _leftovers(data_dir)
    builders.prepare("kitti_step", manual_dir=raw, data_dir=data_dir, check_counts=False)
    source = builders.load_source("kitti_step", "train", data_dir)
    assert len(source) == SPLITS["train"] * (CFG.num_frames - 1)
    ex = source[len(source) - 1]
    assert keys.DEPTH not in ex
    truth = synthetic.generate_video(CFG, synthetic.split_seed(1, "train", 1))
    np.testing.assert_array_equal(ex[keys.NEXT_IMAGE], truth.frames[2])
    # KITTI-STEP has no track ids for synthetic classes 5-7 (stuff there): instances dropped.
    np.testing.assert_array_equal(ex[keys.NEXT_PANOPTIC], truth.panoptic[2] // 1000 * 1000)

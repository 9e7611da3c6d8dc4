"""Prediction / ground-truth writers: round trips through the readers, atomicity."""

import json

import numpy as np
import pytest
from PIL import Image

from vipdl import formats
from vipdl.data.descriptors import CITYSCAPES_VPS
from vipdl.evaluation import writers


def _frame():
    p = np.full((4, 6), 255000, np.int32)  # void
    p[0] = 13001  # car 1
    p[1] = 2000  # building
    p[2, :3] = 11000  # person crowd
    return p


def test_prediction_writer_round_trip(tmp_path):
    with writers.VpsPredictionWriter(
        tmp_path, label_divisor=1000, ignore_label=255, thing_ids=range(11, 19)
    ) as w:
        w.add("0001_0000_a", _frame())
        w.add("0001_0001_a", _frame())
    ann = json.loads((tmp_path / "pred.json").read_text())["annotations"]
    assert [a["image_id"] for a in ann] == ["0001_0000_a", "0001_0001_a"]
    ids = formats.read_rgb_ids(tmp_path / "pan_pred/0001_0000_a.png")
    segs = {s["id"]: s for s in ann[0]["segments_info"]}
    # Deterministic ids semantic * D + instance + 1: the same track keeps its id across frames.
    assert set(np.unique(ids)) == {0, 2001, 11001, 13002} and set(segs) == {2001, 11001, 13002}
    assert segs[13002]["category_id"] == 13 and segs[11001]["iscrowd"] == 1
    assert segs[13002]["area"] == 6 and (ids == 0).sum() == 9


def test_prediction_writer_leaves_no_json_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with writers.VpsPredictionWriter(
            tmp_path, label_divisor=1000, ignore_label=255, thing_ids=(11,)
        ) as w:
            w.add("0001_0000_a", _frame())
            raise RuntimeError("interrupted")
    assert not (tmp_path / "pred.json").exists()
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_prediction_writer_rejects_bad_input(tmp_path):
    w = writers.VpsPredictionWriter(tmp_path, label_divisor=1000, ignore_label=255, thing_ids=())
    with pytest.raises(ValueError, match="integer panoptic map"):
        w.add("a_1", np.zeros((2, 2), np.float32))
    w.add("a_1", np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="added twice"):
        w.add("a_1", np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="24-bit"):
        w.add("a_2", np.full((2, 2), 1 << 24, np.int64))


def test_ground_truth_writer(tmp_path):
    frames = [("0003_0001_c_000000_000005", _frame()), ("0003_0000_c_000000_000000", _frame())]
    writers.write_vps_ground_truth(tmp_path, "val", frames, descriptor=CITYSCAPES_VPS)
    gt = json.loads((tmp_path / "panoptic_gt_val_city_vps.json").read_text())
    assert [i["id"] for i in gt["images"]] == sorted(f[0] for f in frames)
    assert gt["images"][0]["file_name"] == "0003_0000_c_000000_000000_leftImg8bit.png"
    assert (gt["images"][0]["height"], gt["images"][0]["width"]) == (4, 6)
    assert len(gt["categories"]) == 19 and gt["categories"][13]["isthing"] == 1
    png = tmp_path / "val/panoptic_video/0003_0000_c_000000_000000_gtFine_color.png"
    ids = formats.rgb_to_id(np.asarray(Image.open(png)))
    segs = {s["id"]: s for s in gt["annotations"][0]["segments_info"]}
    assert {s: int((ids == s).sum()) for s in segs} == {s: v["area"] for s, v in segs.items()}
    with pytest.raises(ValueError, match="<video>_<frame>"):
        writers.write_vps_ground_truth(
            tmp_path, "x", [("noframe", _frame())], descriptor=CITYSCAPES_VPS
        )

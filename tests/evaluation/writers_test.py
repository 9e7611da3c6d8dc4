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
    # Stuff and crowd: class + 1; each track its own id from 256 on, the same in every frame.
    assert set(np.unique(ids)) == {0, 3, 12, 256} and set(segs) == {3, 12, 256}
    assert segs[256]["category_id"] == 13 and segs[256]["track_id"] == 1
    assert segs[12]["iscrowd"] == 1 and "track_id" not in segs[12]
    assert segs[256]["area"] == 6 and (ids == 0).sum() == 9
    assert ann[1]["segments_info"] == ann[0]["segments_info"]
    assert not (tmp_path / writers.VpsPredictionWriter.JOURNAL).exists()


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
    with pytest.raises(formats.FormatLimitError, match="class 300"):
        w.add("a_2", np.full((2, 2), 300_000, np.int64))


def test_prediction_writer_tracks_beyond_the_label_divisor_and_its_limit(tmp_path, monkeypatch):
    w = writers.VpsPredictionWriter(tmp_path, label_divisor=1000, ignore_label=255,
                                    thing_ids=(11,))
    segment_map = np.array([[0, 1, 2]])
    w.add_segments("v_0", segment_map, np.array([11, 11, 0]), np.array([5000, 1, 0]))
    w.add_segments("v_1", segment_map, np.array([11, 11, 0]), np.array([1, 77777, 0]))
    w.add_segments("other_0", segment_map, np.array([11, 11, 0]), np.array([9, 8, 0]))
    w.close()
    ann = json.loads((tmp_path / "pred.json").read_text())["annotations"]
    tracks = [{s["track_id"]: s["id"] for s in a["segments_info"] if "track_id" in s}
              for a in ann]
    assert tracks == [{5000: 256, 1: 257}, {1: 257, 77777: 258}, {9: 256, 8: 257}]
    monkeypatch.setattr(formats, "MAX_RGB_ID", 258)
    w = writers.VpsPredictionWriter(tmp_path / "small", label_divisor=1000, ignore_label=255,
                                    thing_ids=(11,))
    with pytest.raises(formats.FormatLimitError, match="tracks per video"):
        w.add_segments("v_0", segment_map, np.array([11, 11, 11]), np.array([1, 2, 3]))


def test_prediction_writer_resumes_from_its_state(tmp_path):
    kwargs = dict(label_divisor=1000, ignore_label=255, thing_ids=(11, 13))
    frames = [_frame() + (t % 3) * (t > 0) for t in range(5)]
    with writers.VpsPredictionWriter(tmp_path / "whole", **kwargs) as w:
        for t, f in enumerate(frames):
            w.add(f"v_{t}", f)
    w = writers.VpsPredictionWriter(tmp_path / "parts", **kwargs)
    for t, f in enumerate(frames[:3]):
        w.add(f"v_{t}", f)
        if t == 1:
            state = json.loads(json.dumps(w.state()))
    w.write_json()  # pred.json of the frames so far, then the run "dies" after frame 2.
    assert len(json.loads((tmp_path / "parts/pred.json").read_text())["annotations"]) == 3
    w.abort()
    w = writers.VpsPredictionWriter(tmp_path / "parts", resume=state, **kwargs)
    for t, f in enumerate(frames[2:], start=2):  # Frame 2 is redone.
        w.add(f"v_{t}", f)
    w.close()
    assert (tmp_path / "parts/pred.json").read_text() == (tmp_path / "whole/pred.json").read_text()
    with pytest.raises(ValueError, match="expects 9"):
        writers.VpsPredictionWriter(tmp_path / "parts", resume={"lines": 9, "videos": {}},
                                    **kwargs)


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

"""Bad input: every case exits non-zero with a message naming the offending file."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from vipdl import formats
from vipdl.cli import eval_dvpq, eval_stq, eval_vpq


@pytest.fixture(scope="module")
def clean_vps(tmp_path_factory, fixtures_module):
    root = tmp_path_factory.mktemp("clean_vps")
    fixtures_module.make_vps(root, seed=5, num_videos=2, num_frames=3)
    return root


@pytest.fixture
def vps(clean_vps, tmp_path):
    root = tmp_path / "vps"
    shutil.copytree(clean_vps, root)
    return root


def _run_vps(root, capsys, workers=1):
    argv = [
        "--gt-json",
        str(root / "panoptic_gt_val_city_vps.json"),
        "--gt-dir",
        str(root / "val/panoptic_video"),
        "--pred-dir",
        str(root / "pred"),
        "--no-progress",
        "--workers",
        str(workers),
    ]
    code = eval_vpq.main(argv)
    return code, capsys.readouterr().err


FIRST = "0000_0000_city_000000_000000"


def _edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_clean_set_passes(vps, capsys):
    assert _run_vps(vps, capsys)[0] == 0


def test_missing_prediction_png(vps, capsys):
    (vps / "pred/pan_pred" / f"{FIRST}.png").unlink()
    code, err = _run_vps(vps, capsys)
    assert code == 1 and f"{FIRST}.png" in err and "missing" in err


def test_extra_prediction_png(vps, capsys):
    shutil.copy(vps / "pred/pan_pred" / f"{FIRST}.png", vps / "pred/pan_pred/0009_0000_x.png")
    code, err = _run_vps(vps, capsys)
    assert code == 1 and "0009_0000_x.png" in err and "extra" in err


def test_missing_prediction_annotation(vps, capsys):
    _edit_json(vps / "pred/pred.json", lambda d: d["annotations"].pop(0))
    code, err = _run_vps(vps, capsys)
    assert code == 1 and "pred.json" in err and FIRST in err


def test_prediction_size_differs(vps, capsys):
    path = vps / "pred/pan_pred" / f"{FIRST}.png"
    Image.fromarray(np.asarray(Image.open(path))[:, :-2]).save(path)
    code, err = _run_vps(vps, capsys)
    assert code == 1 and f"{FIRST}.png" in err and "size" in err


def test_prediction_png_id_not_in_json(vps, capsys):
    path = vps / "pred/pan_pred" / f"{FIRST}.png"
    ids = formats.rgb_to_id(np.asarray(Image.open(path)))
    ids[0, 0] = 424242
    Image.fromarray(formats.id_to_rgb(ids)).save(path)
    code, err = _run_vps(vps, capsys)
    assert code == 1 and f"{FIRST}.png" in err and "424242" in err and "not in pred.json" in err


def test_prediction_json_id_not_in_png(vps, capsys):
    def add(d):
        d["annotations"][0]["segments_info"].append({"id": 777, "category_id": 0})

    _edit_json(vps / "pred/pred.json", add)
    code, err = _run_vps(vps, capsys)
    assert code == 1 and "777" in err and "not in the PNG" in err


def test_gt_png_id_not_in_json(vps, capsys):
    def drop(d):
        d["annotations"][0]["segments_info"].pop(0)

    _edit_json(vps / "panoptic_gt_val_city_vps.json", drop)
    code, err = _run_vps(vps, capsys)
    assert code == 1 and f"{FIRST}_gtFine_color.png" in err and "not in the GT JSON" in err


def test_gt_area_disagrees_with_png(vps, capsys):
    def grow(d):
        d["annotations"][0]["segments_info"][0]["area"] += 1

    _edit_json(vps / "panoptic_gt_val_city_vps.json", grow)
    code, err = _run_vps(vps, capsys)
    assert code == 1 and "area" in err and "gtFine_color.png" in err


def test_unknown_category(vps, capsys):
    def bad_cat(d):
        d["annotations"][0]["segments_info"][0]["category_id"] = 99

    _edit_json(vps / "pred/pred.json", bad_cat)
    code, err = _run_vps(vps, capsys)
    assert code == 1 and "pred.json" in err and "unknown category_id 99" in err


@pytest.mark.parametrize("workers", [1, 2])
def test_truncated_png(vps, capsys, workers):
    # With 2 workers the error is raised in a worker process and re-raised in the parent.
    path = vps / "val/panoptic_video" / f"{FIRST}_gtFine_color.png"
    path.write_bytes(path.read_bytes()[:60])
    code, err = _run_vps(vps, capsys, workers)
    assert code == 1 and f"{FIRST}_gtFine_color.png" in err and "cannot decode" in err


def test_empty_prediction_directory(vps, capsys):
    shutil.rmtree(vps / "pred")
    (vps / "pred").mkdir()
    code, err = _run_vps(vps, capsys)
    assert code == 1 and "pred.json" in err and "not found" in err


def test_empty_gt_directory(vps, capsys):
    shutil.rmtree(vps / "val/panoptic_video")
    (vps / "val/panoptic_video").mkdir()
    code, err = _run_vps(vps, capsys)
    assert code == 1 and "panoptic_video" in err and "empty" in err


def test_invalid_json(vps, capsys):
    (vps / "pred/pred.json").write_text("{not json")
    code, err = _run_vps(vps, capsys)
    assert code == 1 and "pred.json" in err and "not valid JSON" in err


# --- DVPQ / STQ ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_dvps(tmp_path_factory, fixtures_module):
    root = tmp_path_factory.mktemp("clean_dvps")
    fixtures_module.make_dvps(root, seed=2, num_seqs=2, num_frames=3)
    return root


@pytest.fixture
def dvps(clean_dvps, tmp_path):
    shutil.copytree(clean_dvps, tmp_path / "d")
    return tmp_path / "d"


def _run_dvps(root, capsys, depth=True):
    argv = ["--gt-dir", str(root / "video_sequence/val"), "--pred-dir", str(root / "pan")]
    argv += ["--depth-dir", str(root / "depth")] if depth else []
    code = eval_dvpq.main(argv + ["--no-progress", "--workers", "1"])
    return code, capsys.readouterr().err


def test_dvps_clean_passes(dvps, capsys):
    assert _run_dvps(dvps, capsys)[0] == 0


def test_dvps_frame_count_mismatch(dvps, capsys):
    victim = sorted((dvps / "pan").iterdir())[1]
    victim.unlink()
    code, err = _run_dvps(dvps, capsys)
    assert (
        code == 1 and "sequence 000000 has 2" in err and "has 3" in err and str(dvps / "pan") in err
    )


def test_dvps_depth_missing(dvps, capsys):
    victim = sorted((dvps / "depth").iterdir())[0]
    victim.unlink()
    code, err = _run_dvps(dvps, capsys)
    assert code == 1 and str(dvps / "depth") in err and "missing frames" in err


def test_dvps_bad_predicted_class(dvps, capsys):
    path = sorted((dvps / "pan").iterdir())[0]
    rgb = np.asarray(Image.open(path)).copy()
    rgb[0, 0, 0] = 25
    Image.fromarray(rgb).save(path)
    code, err = _run_dvps(dvps, capsys)
    assert code == 1 and path.name in err and "[25]" in err


def test_dvps_thresholds_need_depth(dvps, capsys):
    argv = [
        "--gt-dir",
        str(dvps / "video_sequence/val"),
        "--pred-dir",
        str(dvps / "pan"),
        "--depth-thresholds",
        "0.5",
        "--no-progress",
    ]
    assert eval_dvpq.main(argv) == 1
    assert "--depth-dir" in capsys.readouterr().err


@pytest.fixture
def step(tmp_path, fixtures_module):
    return fixtures_module.make_step(tmp_path / "s", seed=4, num_seqs=2, num_frames=3)


def _run_step(f, capsys):
    code = eval_stq.main(
        [
            "--gt-dir",
            str(f["gt_dir"]),
            "--pred-dir",
            str(f["pred_dir"]),
            "--no-progress",
            "--workers",
            "1",
        ]
    )
    return code, capsys.readouterr().err


def test_step_frame_count_mismatch(step, capsys):
    (step["pred_dir"] / "0001" / "000002.png").unlink()
    code, err = _run_step(step, capsys)
    assert code == 1 and str(step["pred_dir"] / "0001") in err and "2 predicted frames but 3" in err


def test_step_empty_gt(step, capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = eval_stq.main(["--gt-dir", str(empty), "--pred-dir", str(step["pred_dir"])])
    assert code == 1 and "empty" in capsys.readouterr().err


def test_step_size_mismatch_and_bad_class(step, capsys):
    path = step["pred_dir"] / "0000" / "000001.png"
    rgb = np.asarray(Image.open(path))
    Image.fromarray(rgb[:-1]).save(path)
    code, err = _run_step(step, capsys)
    assert code == 1 and "0000/000001.png" in err and "size" in err
    rgb = rgb.copy()
    rgb[0, 0, 0] = 40
    Image.fromarray(rgb).save(path)
    code, err = _run_step(step, capsys)
    assert code == 1 and "0000/000001.png" in err and "[40]" in err

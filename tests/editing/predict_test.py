"""Mattes from the video predictor: raw outputs, `run_prediction` files, and the CLI flags."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.inference_test import (  # noqa: F401
    OPTIONS,
    OracleModel,
    _Interrupting,
    _tree_bytes,
    make_clip,
    paint,
)
from vipdl import video_io
from vipdl.cli import predict_video
from vipdl.data.descriptors import SYNTHETIC
from vipdl.editing import MatteOptions, cryptomatte, frame_mattes, writers
from vipdl.inference import VideoPredictor

D = SYNTHETIC.label_divisor


@pytest.fixture(scope="module")
def frames():
    return paint(make_clip())


@pytest.fixture(scope="module")
def predictors():
    model = OracleModel()
    out = {}
    for tracker in ("vip", "iou"):
        # Frames 30 x 41 into a 17 x 25 input: working resolution 17 x 23 (resized).
        out[tracker] = VideoPredictor(model, descriptor=SYNTHETIC, postprocess=OPTIONS,
                                      tracker=tracker, eval_crop_size_hw=(17, 25),
                                      return_raw=True)
    return out


@pytest.mark.parametrize("tracker", ["vip", "iou"])
def test_raw_outputs_match_the_tracked_maps(predictors, frames, tracker):
    preds = list(predictors[tracker].predict(iter(frames)))
    assert len(preds) == len(frames)
    for p in preds:
        raw = p.raw
        h, w = raw.ids.shape
        assert (h, w) == (17, 23) and p.segment_map.shape == (30, 41)
        np.testing.assert_array_equal(video_io.resize_nearest_np(raw.ids, (30, 41)),
                                      p.segments[p.segment_map])
        assert raw.semantic_probs.shape == (h, w, SYNTHETIC.num_classes)
        np.testing.assert_allclose(raw.semantic_probs.sum(-1), 1.0, atol=1e-5)
        assert raw.offsets.shape == (h, w, 2) and raw.center_heatmap.shape == (h, w)
        assert raw.centers.shape == (OPTIONS.keep_k_centers, 2)
        assert raw.center_valid.sum() >= 1
    m = frame_mattes(preds[-1], SYNTHETIC, MatteOptions(full_res=True, tile=16))
    assert m.shape == (30, 41)
    np.testing.assert_allclose(m.rank_coverage.sum(0), 1.0, atol=4 / 2**17)
    assert set(np.unique(m.hard())) <= set(preds[-1].segments.tolist())
    # Off by default: nothing changes for other users of the predictor.
    assert VideoPredictor(OracleModel(), descriptor=SYNTHETIC).return_raw is False


def test_run_prediction_writes_mattes_and_cryptomatte(predictors, frames, tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:04d}.png")
    out = tmp_path / "out"
    outputs = predict_video.Outputs(
        out, video_id="clip", mattes=MatteOptions(k=3, full_res=True, softness={"car": 2.0}),
        matte_pngs=True, cryptomatte=True)
    summary = predict_video.run_prediction(predictors["vip"], folder, outputs, progress=False)
    assert "mattes" in summary["outputs"]
    tracks = json.loads((out / "mattes" / "tracks.json").read_text())
    car = next(v for v in tracks.values() if v["class_name"] == "car")
    assert car["cryptomatte_name"] == f"car/{car['track_id']}"
    assert car["frames"] == list(range(len(frames)))
    for t in (0, 4):
        crypto = cryptomatte.read_cryptomatte(out / "mattes" / "cryptomatte" / f"{t:06d}.exr")
        assert crypto.ids.shape == (4, 30, 41)  # K = 3 in two RGBA layers
        for name, hex_id in crypto.manifest.items():
            assert int(hex_id, 16) == cryptomatte.uint32_to_float32_bits(
                cryptomatte.murmurhash3_32(name))
        for folder_name, entry in tracks.items():
            png = out / "mattes" / folder_name / f"{t:06d}.png"
            if t not in entry["frames"]:
                assert not png.exists()
                continue
            alpha = writers.read_alpha_png(png)
            assert np.abs(alpha - crypto.matte(entry["cryptomatte_name"])).max() <= 0.5 / 65535



def test_interrupted_matte_run_resumes_to_the_same_files(predictors, frames, tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:04d}.png")

    def outputs(out):
        return predict_video.Outputs(out, video_id="clip", mattes=MatteOptions(k=2),
                                     matte_pngs=True, cryptomatte=True)

    predict_video.run_prediction(predictors["vip"], folder, outputs(tmp_path / "whole"),
                                 progress=False)
    out = tmp_path / "parts"
    with pytest.raises(predict_video.PredictionInterrupted):
        predict_video.run_prediction(_Interrupting(predictors["vip"], 2), folder, outputs(out),
                                     save_every=2, progress=False)
    # What was written is usable as it is: tracks.json lists the finished frames only.
    partial = json.loads((out / "mattes" / "tracks.json").read_text())
    assert max(t["last_frame"] for t in partial.values()) == 2
    # A stale file of a frame after the saved state (as a kill mid-frame leaves) is redone.
    (out / "mattes" / "cryptomatte" / "000004.exr").write_bytes(b"half")
    with pytest.raises(ValueError, match="other settings"):
        predict_video.run_prediction(
            predictors["vip"], folder,
            predict_video.Outputs(out, video_id="clip", mattes=MatteOptions(k=3),
                                  matte_pngs=True, cryptomatte=True),
            resume=True, progress=False)
    predict_video.run_prediction(predictors["vip"], folder, outputs(out), resume=True,
                                 progress=False)
    got = {k: v for k, v in _tree_bytes(out).items() if k.startswith("mattes")}
    want = {k: v for k, v in _tree_bytes(tmp_path / "whole").items() if k.startswith("mattes")}
    assert sorted(got) == sorted(want) and got == want

def test_matte_flags_parse():
    parse = predict_video.build_parser().parse_args
    args = parse(["--input", "x", "--output", "y", "--mattes", "--matte-k", "2",
                  "--softness", "person=2, car=0.5", "--full-res"])
    assert predict_video._matte_options(args) == MatteOptions(
        k=2, softness={"person": 2.0, "car": 0.5}, full_res=True)
    assert predict_video._matte_options(parse(["--input", "x", "--output", "y"])) is None
    with pytest.raises(ValueError, match="--softness, --full-res need --mattes"):
        predict_video._matte_options(parse(["--input", "x", "--output", "y", "--full-res",
                                            "--softness", "car=1"]))
    with pytest.raises(ValueError, match="k must be >= 1"):
        predict_video._matte_options(parse(["--input", "x", "--output", "y", "--cryptomatte",
                                            "--matte-k", "0"]))


@pytest.mark.slow
def test_cli_matte_flags(tiny_run, tmp_path, capsys):
    workdir, _ = tiny_run
    folder = tmp_path / "v"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    base = ["--workdir", str(workdir), "--input", str(folder), "--output", str(out),
            "--no-progress"]
    assert predict_video.main(base + ["--full-res"]) == 1
    assert "--full-res need --mattes or --cryptomatte" in capsys.readouterr().err
    assert predict_video.main(base + ["--mattes", "--softness", "person"]) == 1
    assert "CLASS=VALUE" in capsys.readouterr().err
    assert predict_video.main(base + ["--mattes", "--softness", "hair=2"]) == 1
    assert "unknown class 'hair'" in capsys.readouterr().err
    assert not out.exists()
    argv = base + ["--mattes", "--cryptomatte", "--matte-k", "2", "--softness", "person=2",
                   "--full-res"]
    assert predict_video.main(argv) == 0
    exrs = sorted((out / "mattes" / "cryptomatte").iterdir())
    assert [p.name for p in exrs] == ["000000.exr", "000001.exr"]
    crypto = cryptomatte.read_cryptomatte(exrs[0])
    assert crypto.ids.shape == (2, 40, 50)
    np.testing.assert_allclose(crypto.coverage.sum(0), 1.0, atol=4 / 2**17)
    assert (out / "mattes" / "tracks.json").is_file()


def test_evaluate_videos_reports_boundary_scores(predictors):
    from vipdl.video_evaluation import evaluate_videos

    clip = make_clip()
    videos = [("a", paint(clip), clip), ("b", paint(clip[::-1]), clip[::-1])]
    summary = evaluate_videos(predictors["iou"], videos, boundary=True)
    assert set(summary["BVPQ"]["per_k"]) == set(summary["per_k"])
    for k, r in summary["per_k"].items():
        assert summary["BVPQ"]["per_k"][k]["BVPQ"] <= r["VPQ"] + 1e-9
    b = summary["boundary_iou"]
    assert b["dilation_ratio"] == 0.02 and b["num_segments"] > 0 and 0 < b["mean"] <= 1
    assert "BVPQ" not in evaluate_videos(predictors["iou"], videos[:1])


@pytest.mark.slow
def test_cli_evaluate_boundary(tiny_run, tmp_path, capsys):
    from vipdl.cli import evaluate

    workdir, _ = tiny_run
    result = tmp_path / "r.json"
    assert evaluate.main(["--workdir", str(workdir), "--out", str(result), "--boundary",
                          "--no-progress"]) == 0
    assert "Boundary IoU" in capsys.readouterr().out
    summary = json.loads(result.read_text())
    assert "BVPQ" in summary["BVPQ"] and "mean" in summary["boundary_iou"]

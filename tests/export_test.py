"""Tests of the model export (vipdl/export.py, vipdl/export_runtime.py, scripts/export.py).

A tiny random ViP-DeepLab (the `runlocal` synthetic config, with a depth head) is exported at two
frame sizes: 40x50 (padded to the 65x97 model input) and 80x120 (resized down to 64x96, then
padded). Fresh subprocesses that import only jax (resp. only TensorFlow) load the artifacts and
must reproduce the live model: identical label maps, raw heads within 1e-5. The exported
`VideoPredictor` must write the same tracked PNGs as the live one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from tests.runs import write_untrained_run
from vipdl import export, keys, video_io
from vipdl.data.descriptors import SYNTHETIC
from vipdl.data.synthetic import SyntheticConfig, generate_video
from vipdl.export_runtime import ExportedPairStep, ExportError, Manifest, TensorSpec
from vipdl.formats import step_rgb_to_panoptic
from vipdl.inference import VideoPredictor
from vipdl.postprocess import PostprocessOptions

ROOT = Path(__file__).resolve().parents[1]
D = SYNTHETIC.label_divisor
EVAL_CROP = (65, 97)
SIZES = ((40, 50), (80, 120))
# A random model's heatmap is ~1e-5: threshold 0 keeps its peaks, so maps hold instances.
OPTIONS = PostprocessOptions(center_threshold=0.0, nms_kernel=3, keep_k_centers=8,
                             stuff_area_limit=0)


def _config(use_depth: bool):
    from configs import synthetic

    config = synthetic.get_config("runlocal")
    config.model.use_depth = use_depth
    return config


@pytest.fixture(scope="module")
def model():
    from vipdl import from_config

    return from_config.create_model(_config(use_depth=True), rngs=nnx.Rngs(0))


def _pairs(hw: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two consecutive pairs of a synthetic video: frames_t, frames_t1 uint8 [2, h, w, 3]."""
    frames = generate_video(SyntheticConfig(height=hw[0], width=hw[1], num_frames=3), seed).frames
    return frames[:2], frames[1:]


def _export(model, out, hw, **kwargs):
    return export.export(model, out, descriptor=SYNTHETIC, frame_hw=hw,
                         eval_crop_size_hw=EVAL_CROP, postprocess=OPTIONS, raw_outputs=True,
                         **kwargs)


class _Exports(dict):
    """(directory, manifest) of the StableHLO export (symbolic batch, raw heads) per frame size,
    made on first use so that the quick tests export one size only."""

    def __init__(self, model, root: Path):
        super().__init__()
        self.model, self.root = model, root

    def __missing__(self, hw):
        directory = self.root / f"{hw[0]}x{hw[1]}"
        self[hw] = (directory, _export(self.model, directory, hw))
        return self[hw]


@pytest.fixture(scope="module")
def stablehlo_dirs(model, tmp_path_factory):
    return _Exports(model, tmp_path_factory.mktemp("stablehlo"))


def _live(model, hw, frames_t, frames_t1) -> tuple[dict, dict]:
    """What the live model gives for the pairs.

    Returns:
      (the label maps of `vipdl.inference.pair_step`, the jitted function the predictor runs;
      the raw heads and frame t+1 depth from `model(concat(t, t+1))` and the numpy geometry
      reference, independently of the export code).
    """
    geometry = video_io.compute_geometry(hw, EVAL_CROP)
    fn, weights = export.pair_function(model, geometry=geometry, descriptor=SYNTHETIC,
                                       postprocess=OPTIONS)
    maps = jax.tree.map(np.asarray, jax.jit(fn)(weights, frames_t, frames_t1))
    inputs = [np.stack([video_io.frame_to_model_input_np(f, geometry) for f in frames])
              for frames in (frames_t, frames_t1)]
    call = jax.jit(model.__call__)
    forward = jax.tree.map(np.asarray, call(np.concatenate(inputs, -1)))
    backward = jax.tree.map(np.asarray, call(np.concatenate(inputs[::-1], -1)))
    rh, rw = geometry.resized_hw
    logits = forward[keys.PRED_SEMANTIC_LOGITS]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    raw = {
        "raw_semantic_probabilities": probs / probs.sum(-1, keepdims=True),
        "raw_center_heatmap": forward[keys.PRED_CENTER_HEATMAP],
        "raw_offset_map": forward[keys.PRED_OFFSET_MAP],
        "raw_next_offset_map": forward[keys.PRED_NEXT_OFFSET_MAP],
        "raw_depth": forward[keys.PRED_DEPTH],
    }
    raw = {k: v[:, :rh, :rw] for k, v in raw.items()}
    raw["depth"] = np.stack([video_io.values_to_frame_np(d, geometry)
                             for d in backward[keys.PRED_DEPTH]])
    return maps, raw


def _assert_matches_live(outputs: dict, live: tuple[dict, dict], context: str) -> None:
    maps, raw = live
    for name in ("panoptic", "concat_next", "next_panoptic"):
        np.testing.assert_array_equal(outputs[name], maps[name], err_msg=f"{context}: {name}")
    things = np.isin(maps["concat_next"] // SYNTHETIC.label_divisor, SYNTHETIC.thing_ids)
    assert (maps["concat_next"][things] % SYNTHETIC.label_divisor).max() > 0, "no instances"
    for name, want in raw.items():
        # 1e-5 absolute; depth (tens of metres) also gets float32 rounding, 1e-6 relative.
        np.testing.assert_allclose(outputs[name], want, atol=1e-5, rtol=1e-6,
                                   err_msg=f"{context}: {name}")


def _run_fresh(code: str, cwd: Path, *, block: tuple[str, ...], with_vipdl: bool = False) -> str:
    """Runs `code` in a fresh interpreter in `cwd` and returns its stdout.

    Importing any module in `block` (or below it) raises ImportError there, which proves the
    code does not need it. Without `with_vipdl` the repository is not on the path.
    """
    prologue = f"""
        import sys
        class _Blocker:
            def find_spec(self, name, path=None, target=None):
                if any(name == b or name.startswith(b + ".") for b in {block!r}):
                    raise ImportError("blocked by the test: " + name)
        sys.meta_path.insert(0, _Blocker())
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    if with_vipdl:
        env["PYTHONPATH"] = str(ROOT)
    source = textwrap.dedent(prologue) + textwrap.dedent(code)
    result = subprocess.run([sys.executable, "-c", source], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# --- StableHLO -------------------------------------------------------------------------------


def test_stablehlo_in_process_equals_the_jitted_pair_function(model, stablehlo_dirs):
    hw = SIZES[0]
    directory, manifest = stablehlo_dirs[hw]
    frames_t, frames_t1 = _pairs(hw)
    step = ExportedPairStep.load(directory)
    outputs = jax.tree.map(np.asarray, step(frames_t, frames_t1))
    assert list(outputs) == sorted(o.name for o in manifest.outputs)
    geometry = video_io.compute_geometry(hw, EVAL_CROP)
    fn, weights = export.pair_function(model, geometry=geometry, descriptor=SYNTHETIC,
                                       postprocess=OPTIONS, raw_outputs=True)
    live = jax.tree.map(np.asarray, jax.jit(fn)(weights, frames_t, frames_t1))
    assert live.keys() == outputs.keys()
    for name, value in live.items():
        np.testing.assert_array_equal(outputs[name], value, err_msg=name)
    # Symbolic batch: one pair or three pairs per call, same per-pair results.
    one = step(frames_t[1:], frames_t1[1:])
    np.testing.assert_array_equal(one["concat_next"][0], outputs["concat_next"][1])


@pytest.mark.slow
def test_stablehlo_in_a_fresh_jax_only_process(model, stablehlo_dirs, tmp_path):
    inputs = {f"{h}x{w}": _pairs((h, w), seed=h) for h, w in SIZES}
    np.savez(tmp_path / "inputs.npz", **{f"{k}_{i}": v[i] for k, v in inputs.items()
                                        for i in range(2)})
    dirs = {f"{h}x{w}": str(stablehlo_dirs[(h, w)][0]) for h, w in SIZES}
    _run_fresh(f"""
        import json, sys
        import numpy as np
        import jax
        inputs = np.load("inputs.npz")
        for name, directory in {dirs!r}.items():
            manifest = json.load(open(directory + "/manifest.json"))
            with open(directory + "/" + manifest["artifact"], "rb") as f:
                exported = jax.export.deserialize(bytearray(f.read()))
            out = exported.call(inputs[name + "_0"], inputs[name + "_1"])
            assert sorted(out) == sorted(o["name"] for o in manifest["outputs"])
            np.savez(name + ".npz", **{{k: np.asarray(v) for k, v in out.items()}})
    """, tmp_path, block=("vipdl", "flax", "tensorflow"))
    for (h, w) in SIZES:
        got = dict(np.load(tmp_path / f"{h}x{w}.npz"))
        live = _live(model, (h, w), *inputs[f"{h}x{w}"])
        _assert_matches_live(got, live, f"jax-only process, {h}x{w}")


def test_manifest_round_trips_and_describes_the_export(stablehlo_dirs):
    directory, manifest = stablehlo_dirs[SIZES[0]]
    assert Manifest.read(directory) == manifest
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest
    assert manifest.format == "stablehlo" and manifest.batch is None
    assert [str(s) for s in manifest.inputs] == ["frame_t: uint8 [b, 40, 50, 3]",
                                                 "frame_t1: uint8 [b, 40, 50, 3]"]
    assert manifest.geometry == video_io.FrameGeometry((40, 50), (40, 50), EVAL_CROP)
    assert manifest.output("panoptic") == TensorSpec(
        "panoptic", ("b", 40, 50), "int32", export._DESCRIPTIONS["panoptic"])
    assert manifest.output("depth").shape == ("b", 40, 50)
    assert manifest.output("raw_semantic_probabilities").shape == ("b", 40, 50, 8)
    assert manifest.labels == SYNTHETIC.labels
    assert manifest.dataset.class_names == SYNTHETIC.class_names
    assert manifest.postprocess == OPTIONS
    assert manifest.versions["jax"] == jax.__version__ and "vipdl" in manifest.versions
    assert set(manifest.custom_calls) <= export.ALLOWED_CUSTOM_CALLS


def test_bad_manifests_are_named(stablehlo_dirs, tmp_path):
    good = stablehlo_dirs[SIZES[0]][1].to_dict()
    cases = [
        ({**good, "kind": "other"}, "not a vipdl export"),
        ({**good, "manifest_version": 99}, "upgrade vipdl"),
        ({k: v for k, v in good.items() if k != "inputs"}, "missing key.*inputs"),
        ({**good, "format": "onnx"}, "'format' must be one of"),
        ({**good, "dataset": {**good["dataset"], "thing_ids": [99]}}, "thing ids"),
        ({**good, "batch": 0}, "'batch'"),
    ]
    for data, message in cases:
        with pytest.raises(ExportError, match=message):
            Manifest.from_dict(data)
    with pytest.raises(FileNotFoundError, match="not a vipdl export"):
        ExportedPairStep.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(ExportError, match="manifest.json: not valid JSON"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(good))
    with pytest.raises(FileNotFoundError, match="model.stablehlo not found"):
        ExportedPairStep.load(tmp_path)
    (tmp_path / "model.stablehlo").write_bytes(b"not a serialized module")
    with pytest.raises(ExportError, match=f"jax {jax.__version__} cannot load it"):
        ExportedPairStep.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({**good, "format": "saved_model"}))
    with pytest.raises(ExportError, match="holds a saved_model export.*TensorFlow"):
        VideoPredictor.from_export(tmp_path)


def test_wrong_inputs_name_the_expected_shape_and_dtype(stablehlo_dirs, tmp_path):
    directory, _ = stablehlo_dirs[SIZES[0]]
    step = ExportedPairStep.load(directory)
    frames_t, frames_t1 = _pairs(SIZES[0])
    with pytest.raises(ExportError, match=r"frame_t: expected uint8 \[b, 40, 50, 3\], got float32"):
        step(frames_t.astype(np.float32), frames_t1)
    with pytest.raises(ExportError, match=r"frame_t1: expected uint8 \[b, 40, 50, 3\], got uint8 "
                                          r"\[2, 40, 49, 3\]"):
        step(frames_t, frames_t1[:, :, :-1])
    with pytest.raises(ExportError, match="batch 1 differs"):
        step(frames_t, frames_t1[:1])
    predictor = VideoPredictor.from_export(directory)
    other = generate_video(SyntheticConfig(height=30, width=50, num_frames=2), 0).frames
    with pytest.raises(ExportError, match="takes frames of 40x50.*--height 30 --width 50"):
        list(predictor.predict(other))


def test_custom_calls_outside_the_allow_list_fail(model, tmp_path, monkeypatch):
    module = ('%0 = stablehlo.custom_call @lapack_sgesdd_ffi(%arg0) : (tensor<4xf32>) -> '
              'tensor<4xf32>\n%1 = "stablehlo.custom_call"(%0) {call_target_name = "Sharding"}')
    assert export.custom_call_targets(module) == ("Sharding", "lapack_sgesdd_ffi")
    with pytest.raises(ExportError, match=r"\['Sharding', 'lapack_sgesdd_ffi'\] outside"):
        export.check_custom_calls(export.custom_call_targets(module))
    export.check_custom_calls(["shape_assertion"])
    # The check runs inside every export: with an empty allow-list, the symbolic batch's
    # shape assertions are refused and nothing is written.
    monkeypatch.setattr(export, "ALLOWED_CUSTOM_CALLS", frozenset())
    with pytest.raises(ExportError, match=r"\['shape_assertion'\] outside"):
        _export(model, tmp_path / "out", SIZES[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_export_arguments_are_checked(model, tmp_path):
    with pytest.raises(ExportError, match="fixed batch"):
        _export(model, tmp_path / "a", SIZES[0], format="saved_model")
    with pytest.raises(ExportError, match="format must be one of"):
        _export(model, tmp_path / "a", SIZES[0], format="onnx")
    with pytest.raises(ExportError, match="batch must be"):
        _export(model, tmp_path / "a", SIZES[0], batch=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        _export(model, tmp_path / "full", SIZES[0])

    class SingleFrame(nnx.Module):
        def __call__(self, images):
            raise AssertionError("not called")

    with pytest.raises(ExportError, match="ViP-DeepLab"):
        _export(SingleFrame(), tmp_path / "a", SIZES[0])


@pytest.mark.slow
def test_exported_predictor_with_depth_and_a_fixed_batch_matches_live(model, stablehlo_dirs,
                                                                     tmp_path):
    hw = SIZES[0]
    frames = generate_video(SyntheticConfig(height=hw[0], width=hw[1], num_frames=5), 1).frames
    live = VideoPredictor(model, descriptor=SYNTHETIC, eval_crop_size_hw=EVAL_CROP,
                          postprocess=OPTIONS)
    want = list(live.predict(frames))
    _export(model, tmp_path / "fixed", hw, batch=2)
    runs = {
        "symbolic batch 3": VideoPredictor.from_export(stablehlo_dirs[hw][0], batch_size=3),
        "fixed batch 2, padded from 1": VideoPredictor.from_export(tmp_path / "fixed",
                                                                   batch_size=1),
    }
    for name, predictor in runs.items():
        got = list(predictor.predict(frames))
        assert [p.index for p in got] == list(range(len(frames))), name
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.panoptic, w.panoptic, err_msg=f"{name} {g.index}")
            np.testing.assert_allclose(g.depth, w.depth, atol=1e-5, rtol=1e-6,
                                       err_msg=f"{name} {g.index}")
    with pytest.raises(ExportError, match="exported for batches of 2"):
        VideoPredictor.from_export(tmp_path / "fixed", batch_size=3)


# --- TensorFlow ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model_dirs(model, tmp_path_factory):
    """SavedModel exports (batch 2, raw heads) at both sizes."""
    root = tmp_path_factory.mktemp("saved_model")
    dirs = {}
    for hw in SIZES:
        dirs[hw] = root / f"{hw[0]}x{hw[1]}"
        _export(model, dirs[hw], hw, format="saved_model", batch=2)
    return dirs


@pytest.mark.slow
def test_saved_model_in_a_fresh_tensorflow_only_process(model, saved_model_dirs, tmp_path):
    inputs = {f"{h}x{w}": _pairs((h, w), seed=h) for h, w in SIZES}
    np.savez(tmp_path / "inputs.npz", **{f"{k}_{i}": v[i] for k, v in inputs.items()
                                        for i in range(2)})
    dirs = {f"{h}x{w}": str(saved_model_dirs[(h, w)]) for h, w in SIZES}
    errors = _run_fresh(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        inputs = np.load("inputs.npz")
        for name, directory in {dirs!r}.items():
            serve = tf.saved_model.load(directory).signatures["serving_default"]
            out = serve(frame_t=tf.constant(inputs[name + "_0"]),
                        frame_t1=tf.constant(inputs[name + "_1"]))
            np.savez(name + ".npz", **{{k: v.numpy() for k, v in out.items()}})
        frame = inputs["40x50_0"]
        serve = tf.saved_model.load({dirs["40x50"]!r}).signatures["serving_default"]
        for bad in (frame.astype(np.float32), frame[:, :, :-1]):
            try:
                serve(frame_t=tf.constant(bad), frame_t1=tf.constant(frame))
            except Exception as e:
                print("ERROR:", " | ".join(str(e).splitlines()))
    """, tmp_path, block=("vipdl", "jax", "flax"))
    for (h, w) in SIZES:
        got = dict(np.load(tmp_path / f"{h}x{w}.npz"))
        live = _live(model, (h, w), *inputs[f"{h}x{w}"])
        _assert_matches_live(got, live, f"TensorFlow-only process, {h}x{w}")
    messages = [line for line in errors.splitlines() if line.startswith("ERROR:")]
    assert len(messages) == 2, errors
    assert "expected to be a uint8 tensor but is a float tensor" in messages[0]
    assert "u8[2,40,50,3]" in messages[1] and "u8[2,40,49,3]" in messages[1]


@pytest.mark.slow
def test_tflite_conversion_is_blocked_by_sort(saved_model_dirs):
    """docs/export.md#tflite names the op; this fails when a TensorFlow release accepts it."""
    with pytest.raises(export.TFLiteConversionError, match="vhlo.sort_v1") as error:
        export.convert_to_tflite(saved_model_dirs[SIZES[0]])
    assert any("'vhlo.sort_v1' op is not part of the vhlo support yet" in e
               for e in error.value.errors)


# --- the exported VideoPredictor and the command line ----------------------------------------


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory):
    """A workdir holding the `runlocal` synthetic config and an (untrained) checkpoint."""
    config = _config(use_depth=False)
    config.postprocess.center_threshold = OPTIONS.center_threshold
    return write_untrained_run(tmp_path_factory.mktemp("run"), config)


def test_cli_rejects_bad_arguments(tiny_workdir, tmp_path, capsys):
    from vipdl.cli import export as cli

    base = ["--workdir", str(tiny_workdir), "--out", str(tmp_path / "out")]
    for extra, message in [
        (["--format", "stablehlo", "--batch", "two"], "--batch must be a positive number"),
        (["--format", "saved_model", "--batch", "symbolic"], "fixed batch"),
        (["--format", "stablehlo", "--tflite"], "--tflite converts a SavedModel"),
        (["--format", "stablehlo", "--height", "40"], "both --height and --width"),
    ]:
        assert cli.main(base + extra) == 1
        assert message in capsys.readouterr().err
    missing = ["--workdir", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--format",
               "stablehlo"]
    assert cli.main(missing) == 1 and "config.json not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_exported_predictor_writes_the_live_predictors_pngs(tiny_workdir, tmp_path, capsys):
    """CLI export, then `vipdl-predict-video --export` in a fresh process vs the live model."""
    from PIL import Image

    from vipdl.cli import export as cli
    from vipdl.cli import predict_video

    hw = (48, 64)
    out = tmp_path / "export"
    argv = ["--workdir", str(tiny_workdir), "--format", "stablehlo", "--out", str(out),
            "--height", str(hw[0]), "--width", str(hw[1])]
    assert cli.main(argv) == 0
    assert "custom calls ['shape_assertion']" in capsys.readouterr().out
    assert cli.main(argv) == 1 and "--overwrite" in capsys.readouterr().err

    frames = generate_video(SyntheticConfig(height=hw[0], width=hw[1], num_frames=7), 3).frames
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    live = tmp_path / "live"
    assert predict_video.main(["--workdir", str(tiny_workdir), "--input", str(folder),
                               "--output", str(live), "--step", "--no-progress"]) == 0
    exported = tmp_path / "exported"
    _run_fresh(f"""
        import sys
        from vipdl.cli import predict_video
        code = predict_video.main(["--export", {str(out)!r}, "--input", {str(folder)!r},
                                   "--output", {str(exported)!r}, "--step", "--batch-size", "3",
                                   "--no-progress"])
        assert code == 0
    """, tmp_path, block=("vipdl.models", "vipdl.from_config", "vipdl.checkpointing",
                          "tensorflow", "orbax"), with_vipdl=True)
    live_pngs = sorted((live / "step").rglob("*.png"))
    assert len(live_pngs) == len(frames)
    for png in live_pngs:
        twin = exported / png.relative_to(live)
        np.testing.assert_array_equal(np.asarray(Image.open(twin)), np.asarray(Image.open(png)),
                                      err_msg=str(png.relative_to(live)))
    panoptic = np.stack([step_rgb_to_panoptic(np.asarray(Image.open(p)), D) for p in live_pngs])
    assert (panoptic % D).max() > 0, "no tracked instances in the video"

"""Tests of the streaming video predictor (vipdl/inference.py).

An "oracle" model reads labels painted into the frames (red = class, green = instance), so the
predictor's output can be checked against the ground truth and against a plain, non-streaming
numpy re-implementation of the reference sequence procedure (docs/postprocessing.md#two-frame-inference + docs/postprocessing.md#sequence-stitching).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from tests.postprocess import numpy_reference as reference
from vipdl import keys, video_io, visualize
from vipdl.cli import predict_video
from vipdl.data.descriptors import SYNTHETIC
from vipdl.data.synthetic import SyntheticConfig, generate_video
from vipdl.formats import rgb_to_id, step_rgb_to_panoptic
from vipdl.inference import FramePrediction, VideoPredictor
from vipdl.postprocess import PostprocessOptions
from vipdl.postprocess.iou_tracker import IoUTracker
from vipdl.postprocess.stitching import VideoStitcher

D = SYNTHETIC.label_divisor
ROAD, SKY, PERSON, CAR, BICYCLE = 0, 4, 5, 6, 7
MAX_INSTANCES = 25  # green = 10 * instance + 5 <= 255
OPTIONS = PostprocessOptions(center_threshold=0.5, nms_kernel=3, keep_k_centers=16, stuff_area_limit=0)


class OracleModel(nnx.Module):
    """A stand-in ViP-DeepLab whose outputs are exact for frames painted by `paint`.

    Class = red // 10 (values >= num_classes read as road, e.g. the 127.5 padding), instance =
    green // 10 on thing pixels. Centers sit at each instance's rounded centroid; offsets point
    there; next-frame offsets point from frame t+1 pixels to the same instance's centroid in
    frame t (0 when the instance is new). Depth = 1 + blue / 10.
    """

    def __init__(self, num_classes: int = SYNTHETIC.num_classes):
        self.num_classes = num_classes
        self.thing = jnp.zeros(num_classes, bool).at[jnp.asarray(SYNTHETIC.thing_ids)].set(True)

    def encode(self, frames):
        return {"image": frames.astype(jnp.float32)}

    def _labels(self, image):
        sem = jnp.floor(image[..., 0] / 10).astype(jnp.int32)
        sem = jnp.where(sem < self.num_classes, sem, ROAD)
        inst = jnp.floor(image[..., 1] / 10).astype(jnp.int32)
        return sem, jnp.where(self.thing[sem], jnp.clip(inst, 0, MAX_INSTANCES), 0)

    @staticmethod
    def _centroids(inst):
        h, w = inst.shape
        yy, xx = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
        seg = inst.ravel()
        count = jax.ops.segment_sum(jnp.ones(h * w), seg, MAX_INSTANCES + 1)
        cy = jax.ops.segment_sum(yy.ravel().astype(jnp.float32), seg, MAX_INSTANCES + 1)
        cx = jax.ops.segment_sum(xx.ravel().astype(jnp.float32), seg, MAX_INSTANCES + 1)
        safe = jnp.maximum(count, 1)
        present = (count > 0).at[0].set(False)
        return jnp.round(cy / safe), jnp.round(cx / safe), present, yy, xx

    def _frame(self, image):
        sem, inst = self._labels(image)
        cy, cx, present, yy, xx = self._centroids(inst)
        heat = jnp.zeros(inst.shape).at[cy.astype(int), cx.astype(int)].max(present * 1.0)
        offsets = jnp.stack([cy[inst] - yy, cx[inst] - xx], -1) * (inst > 0)[..., None]
        return {
            keys.PRED_SEMANTIC_LOGITS: jax.nn.one_hot(sem, self.num_classes) * 10.0,
            keys.PRED_CENTER_HEATMAP: heat,
            keys.PRED_OFFSET_MAP: offsets,
            keys.PRED_DEPTH: 1.0 + image[..., 2] / 10.0,
        }

    def decode_frame(self, features, output_hw):
        assert features["image"].shape[1:3] == tuple(output_hw)
        return jax.vmap(self._frame)(features["image"])

    def _next(self, image_t, image_t1):
        _, inst_t = self._labels(image_t)
        cy, cx, present, _, _ = self._centroids(inst_t)
        _, inst = self._labels(image_t1)
        _, _, _, yy, xx = self._centroids(inst)
        ok = (inst > 0) & present[inst]
        return jnp.stack([cy[inst] - yy, cx[inst] - xx], -1) * ok[..., None]

    def decode_next(self, features_t, features_t1, output_hw):
        return jax.vmap(self._next)(features_t["image"], features_t1["image"])

    def __call__(self, images):
        image_t = self.encode(images[..., :3])
        image_t1 = self.encode(images[..., 3:])
        out = self.decode_frame(image_t, images.shape[1:3])
        out[keys.PRED_NEXT_OFFSET_MAP] = self.decode_next(image_t, image_t1, images.shape[1:3])
        return out


def paint(panoptic: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 [t, h, w, 3] frames that the oracle reads back as `panoptic`."""
    rng = np.random.default_rng(seed)
    sem, inst = panoptic // D, panoptic % D
    frames = np.stack([10 * sem + 5, 10 * inst + 5, rng.integers(0, 256, sem.shape)], -1)
    return frames.astype(np.uint8)


def make_clip(num_frames: int = 6, height: int = 30, width: int = 41) -> np.ndarray:
    """int32 [t, h, w]: sky over road; a moving car, a person, a bicycle entering at t=3."""
    clip = np.full((num_frames, height, width), ROAD * D, np.int32)
    clip[:, :8] = SKY * D
    for t in range(num_frames):
        clip[t, 10:22, 2 + 2 * t : 14 + 2 * t] = CAR * D + 1
        clip[t, 12:26, 28:33] = PERSON * D + 2
        if t >= 3:
            clip[t, 24:28, 16 + t : 21 + t] = BICYCLE * D + 3
    return clip


def make_random_clip(seed: int, num_frames: int, height: int, width: int) -> np.ndarray:
    """int32 [t, h, w]: fast, crossing, entering and leaving things -- the hard cases."""
    rng = np.random.default_rng(seed)
    clip = np.full((num_frames, height, width), ROAD * D, np.int32)
    clip[:, : height // 4] = SKY * D
    for k in range(1, 7):
        cls = rng.choice(SYNTHETIC.thing_ids)
        h, w = rng.integers(4, 11, 2)
        y, x = rng.integers(0, height - h), rng.integers(-w, width)
        vy, vx = rng.integers(-2, 3), rng.integers(-7, 8)
        for t in range(num_frames):
            y0, x0 = y + vy * t, x + vx * t
            clip[t, max(y0, 0) : max(y0 + h, 0), max(x0, 0) : max(x0 + w, 0)] = cls * D + k
    return clip


def assert_same_up_to_track_ids(pred: np.ndarray, gt: np.ndarray) -> None:
    """pred equals gt up to one consistent bijection of thing labels over the whole video."""
    assert pred.shape == gt.shape
    np.testing.assert_array_equal(pred // D, gt // D)  # Classes are exact.
    pairs = np.unique(np.stack([gt.ravel(), pred.ravel()], 1), axis=0)
    assert len(np.unique(pairs[:, 0])) == len(pairs), f"a gt track got several ids: {pairs}"
    assert len(np.unique(pairs[:, 1])) == len(pairs), f"an id covers several gt tracks: {pairs}"
    stuff = pairs[pairs[:, 0] % D == 0]
    np.testing.assert_array_equal(stuff[:, 0], stuff[:, 1])


def reference_sequence(model, frames, *, eval_crop_size_hw=None, mode="clean"):
    """Plain per-pair re-implementation: pad, run the pair, numpy canvas post-processing."""
    geometry = video_io.compute_geometry(frames[0].shape[:2], eval_crop_size_hw)
    inputs = [video_io.frame_to_model_input_np(f, geometry) for f in frames]
    if len(inputs) == 1:
        inputs = inputs * 2
    post = dict(
        thing_ids=SYNTHETIC.thing_ids,
        label_divisor=D,
        ignore_label=SYNTHETIC.ignore_label,
        options=OPTIONS,
    )
    stitcher = VideoStitcher(
        thing_ids=SYNTHETIC.thing_ids,
        label_divisor=D,
        ignore_label=SYNTHETIC.ignore_label,
        mode=mode,
    )
    rh, rw = geometry.resized_hw
    width = geometry.padded_hw[1]
    out = []
    call = jax.jit(model.__call__)  # The model is not under test here; compile it once.
    for t in range(len(inputs) - 1):
        r = jax.tree.map(np.asarray, call(np.concatenate([inputs[t], inputs[t + 1]], -1)[None]))
        r1 = jax.tree.map(np.asarray, call(np.concatenate([inputs[t + 1], inputs[t]], -1)[None]))
        next_off = r[keys.PRED_NEXT_OFFSET_MAP][0] - np.array([0.0, width], np.float32)
        canvas = reference.panoptic_from_predictions(
            np.concatenate([r[keys.PRED_SEMANTIC_LOGITS][0], r1[keys.PRED_SEMANTIC_LOGITS][0]], 1),
            np.concatenate(
                [r[keys.PRED_CENTER_HEATMAP][0], np.zeros_like(r[keys.PRED_CENTER_HEATMAP][0])], 1
            ),
            np.concatenate([r[keys.PRED_OFFSET_MAP][0], next_off], 1),
            **post,
        )
        standalone = reference.panoptic_from_predictions(
            r1[keys.PRED_SEMANTIC_LOGITS][0],
            r1[keys.PRED_CENTER_HEATMAP][0],
            r1[keys.PRED_OFFSET_MAP][0],
            **post,
        )
        crop = (slice(0, rh), slice(0, rw))
        q = stitcher.update(canvas[:, :width][crop], canvas[:, width:][crop], standalone[crop])
        if t == 0:
            out.append(stitcher.first_frame)
        out.append(q)
    out = out[: len(frames)]
    return [
        video_io.resize_nearest_np(o, geometry.frame_hw) if geometry.needs_resize else o
        for o in out
    ]


@pytest.fixture(scope="module")
def oracle():
    return OracleModel()


@pytest.fixture(scope="module")
def clip():
    return make_clip()


_PREDICTORS: dict = {}


def _predictor(model, **kwargs) -> VideoPredictor:
    """One predictor per configuration for the whole module (compiles once)."""
    key = (id(model), tuple(sorted(kwargs.items())))
    if key not in _PREDICTORS:
        _PREDICTORS[key] = VideoPredictor(model, descriptor=SYNTHETIC, postprocess=OPTIONS, **kwargs)
    return _PREDICTORS[key]


@pytest.mark.parametrize("tracker", ["vip", "iou"])
def test_oracle_tracks_match_ground_truth(oracle, clip, tracker):
    frames = paint(clip)
    kwargs = {"tracker": "iou", "batch_size": 4} if tracker == "iou" else {}
    preds = list(_predictor(oracle, **kwargs).predict(iter(frames)))
    assert [p.index for p in preds] == list(range(len(clip)))
    for p, frame in zip(preds, frames):
        assert isinstance(p, FramePrediction)
        assert p.panoptic.dtype == np.int32 and p.panoptic.shape == clip.shape[1:]
        np.testing.assert_array_equal(p.image, frame)
        np.testing.assert_allclose(p.depth, 1.0 + frame[..., 2] / 10.0, rtol=1e-6)
    assert_same_up_to_track_ids(np.stack([p.panoptic for p in preds]), clip)


@pytest.mark.parametrize(
    "batch_size, eval_crop_size_hw, frame_hw",
    [
        (1, None, (30, 41)),  # Padded to 33 x 65 (32k + 1).
        (3, (33, 49), (30, 41)),  # Padded to the eval size; a partial last batch.
        (2, (25, 33), (30, 41)),  # Larger than the eval size: resized down and back.
    ],
)
def test_streaming_equals_per_pair_reference(oracle, batch_size, eval_crop_size_hw, frame_hw):
    frames = paint(make_random_clip(batch_size, 7, *frame_hw), seed=1)
    predictor = _predictor(oracle, batch_size=batch_size, eval_crop_size_hw=eval_crop_size_hw)
    got = [p.panoptic for p in predictor.predict(iter(frames))]
    want = reference_sequence(oracle, frames, eval_crop_size_hw=eval_crop_size_hw)
    assert len(got) == len(want) == len(frames)
    for t, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(g, w, err_msg=f"frame {t}")


def test_reference_stitching_mode_matches_reference(oracle):
    frames = paint(make_random_clip(4, 6, 30, 41), seed=2)
    got = [p.panoptic for p in _predictor(oracle, stitching_mode="reference").predict(frames)]
    for g, w in zip(got, reference_sequence(oracle, frames, mode="reference")):
        np.testing.assert_array_equal(g, w)


def test_iou_mode_equals_per_frame_tracker(oracle):
    frames = paint(make_random_clip(5, 6, 30, 41), seed=3)
    got = [p.panoptic for p in _predictor(oracle, tracker="iou", batch_size=4).predict(frames)]
    tracker = IoUTracker(thing_ids=SYNTHETIC.thing_ids, label_divisor=D)
    post = dict(
        thing_ids=SYNTHETIC.thing_ids,
        label_divisor=D,
        ignore_label=SYNTHETIC.ignore_label,
        options=OPTIONS,
    )
    decode = jax.jit(lambda x: oracle.decode_frame(oracle.encode(x), x.shape[1:3]))
    for frame, g in zip(frames, got):
        pad = video_io.frame_to_model_input_np(frame, video_io.compute_geometry(frame.shape[:2]))
        r = jax.tree.map(np.asarray, decode(pad[None]))
        pan = reference.panoptic_from_predictions(
            r[keys.PRED_SEMANTIC_LOGITS][0],
            r[keys.PRED_CENTER_HEATMAP][0],
            r[keys.PRED_OFFSET_MAP][0],
            **post,
        )
        np.testing.assert_array_equal(g, tracker.update(pan[: frame.shape[0], : frame.shape[1]]))


def test_frames_are_pulled_lazily(oracle):
    """Constant memory: the predictor never runs far ahead of what it has yielded."""
    clip = make_clip(12)
    frames = paint(clip)
    pulled = []

    def generator():
        for i, frame in enumerate(frames):
            pulled.append(i)
            yield frame

    batch_size = 2
    stream = _predictor(oracle, batch_size=batch_size).predict(generator())
    for k, pred in enumerate(stream):
        # Yielded k + 1 frames; at most two device batches (one in flight) read beyond them.
        assert len(pulled) <= k + 1 + 2 * batch_size, (k, len(pulled))
        assert pred.index == k
    assert len(pulled) == len(frames)


def test_single_frame_video(oracle, clip):
    preds = list(_predictor(oracle).predict([paint(clip[:1])[0]]))
    assert len(preds) == 1
    assert_same_up_to_track_ids(preds[0].panoptic[None], clip[:1])


def test_greyscale_and_rgba_frames_are_accepted(oracle, clip):
    frames = paint(clip[:3])
    rgba = np.concatenate([frames, np.full(frames.shape[:3] + (1,), 7, np.uint8)], -1)
    got = [p.panoptic for p in _predictor(oracle).predict(list(rgba))]
    want = [p.panoptic for p in _predictor(oracle).predict(list(frames))]
    np.testing.assert_array_equal(np.stack(got), np.stack(want))
    grey = [p for p in _predictor(oracle).predict([f[..., 0] for f in frames])]
    assert grey[0].image.shape == frames[0].shape
    np.testing.assert_array_equal(grey[0].image[..., 1], frames[0][..., 0])


def test_bad_inputs_raise(oracle, clip):
    predictor = _predictor(oracle)
    with pytest.raises(video_io.VideoReadError, match="no frames"):
        list(predictor.predict(iter([])))
    frames = list(paint(clip[:2]))
    with pytest.raises(video_io.VideoReadError, match="frame 1"):
        list(predictor.predict([frames[0], frames[1][:-1]]))
    with pytest.raises(video_io.VideoReadError, match="float"):
        list(predictor.predict([frames[0].astype(np.float32)]))
    with pytest.raises(ValueError, match="tracker"):
        VideoPredictor(oracle, descriptor=SYNTHETIC, tracker="sort")


def test_vip_tracker_needs_streaming_methods():
    class SingleFrame(nnx.Module):
        def __call__(self, images):
            raise AssertionError("not called")

    with pytest.raises(ValueError, match="decode_next"):
        VideoPredictor(SingleFrame(), descriptor=SYNTHETIC)


# --- command line -------------------------------------------------------------------------


def _write_folder(path, frames):
    path.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(path / f"{i:04d}.png")
    return path


def test_run_prediction_writes_all_layouts(oracle, clip, tmp_path):
    frames = paint(clip)
    folder = _write_folder(tmp_path / "in_frames", frames)
    out = tmp_path / "out"
    outputs = predict_video.Outputs(
        out,
        vps=True,
        step=True,
        masks=True,
        depth=True,
        overlay=out / "overlay.gif",
        video_id="clip",
        sheet_frames=4,
    )
    predictor = _predictor(oracle)
    summary = predict_video.run_prediction(predictor, folder, outputs, progress=False)
    assert summary["frames"] == len(clip) and summary["tracks"] == 3
    want = [p.panoptic for p in predictor.predict(frames)]

    pred_json = json.loads((out / "vps" / "pred.json").read_text())
    assert [a["image_id"] for a in pred_json["annotations"]] == [f"clip_{t:06d}" for t in range(6)]
    for t, panoptic in enumerate(want):
        step = np.asarray(Image.open(out / "step" / "clip" / f"{t:06d}.png"))
        np.testing.assert_array_equal(step_rgb_to_panoptic(step, D), panoptic)
        vps = rgb_to_id(np.asarray(Image.open(out / "vps" / "pan_pred" / f"clip_{t:06d}.png")))
        np.testing.assert_array_equal(vps, panoptic + 1)  # Segment id = label + 1, void = 0.
        depth = np.asarray(Image.open(out / "depth" / f"{t:06d}.png"))
        np.testing.assert_allclose(depth / 256.0, 1.0 + frames[t][..., 2] / 10.0, atol=1 / 256)
    tracks = json.loads((out / "masks" / "tracks.json").read_text())
    car = next(v for v in tracks.values() if v["class_name"] == "car")
    assert (car["first_frame"], car["last_frame"], car["num_frames"]) == (0, 5, 6)
    folder_name = next(k for k, v in tracks.items() if v is car)
    mask = np.asarray(Image.open(out / "masks" / folder_name / "000002.png"))
    np.testing.assert_array_equal(mask == 255, want[2] == car["panoptic_id"])
    overlays = list(video_io.read_frames(out / "overlay.gif"))
    assert len(overlays) == len(clip)
    sheet = np.asarray(Image.open(out / "overlay_frames.png"))
    h, w = frames[0].shape[:2]
    assert sheet.shape == (2 * h + 2, 3 * w + 4, 3)  # 4 frames, 3 per row, 2-pixel gaps.
    np.testing.assert_array_equal(
        sheet[h + 2:, :w], visualize.overlay(frames[3], want[3], descriptor=SYNTHETIC)
    )
    assert json.loads((out / "summary.json").read_text())["frames"] == len(clip)


def test_run_prediction_refuses_existing_output_and_keeps_it_on_failure(oracle, clip, tmp_path):
    folder = _write_folder(tmp_path / "frames", paint(clip[:3]))
    out = tmp_path / "out"
    outputs = predict_video.Outputs(out, step=True, video_id="v")
    predictor = _predictor(oracle)
    predict_video.run_prediction(predictor, folder, outputs, progress=False)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(FileExistsError, match="--overwrite"):
        predict_video.run_prediction(predictor, folder, outputs, progress=False)
    (folder / "0003.png").write_bytes(b"corrupt")  # Fails mid-video.
    with pytest.raises(video_io.VideoReadError, match="0003.png"):
        predict_video.run_prediction(predictor, folder, outputs, overwrite=True, progress=False)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "out"]  # No partial dirs.
    (folder / "0003.png").unlink()
    predict_video.run_prediction(predictor, folder, outputs, overwrite=True, progress=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A workdir holding the `runlocal` synthetic config and an (untrained) checkpoint."""
    import grain
    import optax

    from configs import synthetic as synthetic_config
    from vipdl import checkpointing, from_config

    workdir = tmp_path_factory.mktemp("run")
    config = synthetic_config.get_config("runlocal")
    model = from_config.create_model(config, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    manager = checkpointing.create_manager(checkpointing.checkpoint_dir(str(workdir)), keep=1)
    data_iter = iter(grain.MapDataset.range(2).to_iter_dataset())
    checkpointing.save_checkpoint(manager, 0, model, optimizer, data_iter, force=True)
    manager.wait_until_finished()
    manager.close()
    checkpointing.save_config(config, str(workdir))
    return workdir, config


def test_cli_predict_video_on_image_folder(tiny_run, tmp_path, capsys):
    workdir, _ = tiny_run
    frames = generate_video(SyntheticConfig(height=40, width=50, num_frames=3), 0).frames
    folder = _write_folder(tmp_path / "my_clip", frames)
    out = tmp_path / "out"
    argv = [
        "--workdir",
        str(workdir),
        "--input",
        str(folder),
        "--output",
        str(out),
        "--no-progress",
    ]
    assert predict_video.main(argv) == 0
    assert "3 frames" in capsys.readouterr().out
    # Default outputs: the VPS layout and an overlay video.
    assert len(list((out / "vps" / "pan_pred").iterdir())) == 3
    assert (out / "vps" / "pan_pred" / "my-clip_000000.png").is_file()
    assert len(list(video_io.read_frames(out / "overlay.mp4"))) == 3
    assert predict_video.main(argv) == 1  # Existing results are refused...
    assert "--overwrite" in capsys.readouterr().err
    assert predict_video.main(argv + ["--overwrite", "--step", "--tracker", "iou"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["step", "summary.json"]
    assert predict_video.main(argv + ["--overwrite", "--sheet", "-1"]) == 1
    assert "--sheet must be >= 0" in capsys.readouterr().err
    assert (out / "step").is_dir()  # The refused run kept the previous results.
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert (
        predict_video.main(
            ["--workdir", str(workdir), "--input", str(empty), "--output", str(tmp_path / "o2")]
        )
        == 1
    )
    assert "empty" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_checkpoint_that_does_not_match_the_config(tiny_run):
    workdir, config = tiny_run
    other = config.copy_and_resolve_references()
    other.model.aspp_channels = config.model.aspp_channels + 4
    with pytest.raises(ValueError, match=r"aspp.*expected") as error:
        VideoPredictor.from_checkpoint(other, workdir)
    # One changed width breaks many arrays; the message names the first few and counts the rest.
    message = str(error.value)
    assert "another model config" in message
    assert len(message.splitlines()) <= 10 and "more" in message.splitlines()[-1]
    with pytest.raises(ValueError, match="checkpoint"):
        VideoPredictor.from_checkpoint(config)


def test_cli_evaluate_reports_vpq_and_stq(tiny_run, tmp_path, capsys):
    from vipdl.cli import evaluate

    workdir, _ = tiny_run
    result, pred_dir = tmp_path / "result.json", tmp_path / "pred"
    argv = [
        "--workdir",
        str(workdir),
        "--out",
        str(result),
        "--pred-dir",
        str(pred_dir),
        "--no-progress",
    ]
    assert evaluate.main(argv) == 0
    assert "VPQ" in capsys.readouterr().out
    summary = json.loads(result.read_text())
    assert summary["num_videos"] == 1 and summary["num_frames"] == 3
    assert set(summary["per_k"]) == {"0", "1", "2", "3"} and "STQ" in summary["STQ"]
    assert (pred_dir / "vps" / "pred" / "pred.json").is_file()
    assert len(list((pred_dir / "step" / "gt" / "000000").iterdir())) == 3
    assert evaluate.main(argv) == 1  # --pred-dir already holds results.


def test_config_file_and_video_id_helpers(tmp_path):
    config_file = tmp_path / "configs" / "mine.py"
    config_file.parent.mkdir()
    config_file.write_text(
        "import ml_collections\n\n\ndef get_config(arg=None):\n"
        "    return ml_collections.ConfigDict({'arg': arg or 'none'})\n"
    )
    assert predict_video.load_config_file(str(config_file)).arg == "none"
    assert predict_video.load_config_file(f"{config_file}:runlocal").arg == "runlocal"
    with pytest.raises(FileNotFoundError):
        predict_video.load_config_file(str(tmp_path / "missing.py"))
    (tmp_path / "c.yaml").write_text("x: 1")
    with pytest.raises(ValueError, match=".py or .json"):
        predict_video.load_config_file(str(tmp_path / "c.yaml"))
    assert predict_video.default_video_id("/data/my_clip 01.mp4") == "my-clip-01"


def test_load_weights_swaps_weights_and_refuses_another_architecture(tiny_run):
    from vipdl import from_config

    _, config = tiny_run
    frames = generate_video(SyntheticConfig(height=40, width=50, num_frames=3), 0).frames
    kwargs = dict(descriptor=SYNTHETIC, postprocess=OPTIONS)
    first = from_config.create_model(config, rngs=nnx.Rngs(0))
    second = from_config.create_model(config, rngs=nnx.Rngs(1))
    want = [p.panoptic for p in VideoPredictor(second, **kwargs).predict(frames)]
    predictor = VideoPredictor(first, **kwargs)
    predictor.load_weights(second)
    for got, expected in zip(predictor.predict(frames), want):
        np.testing.assert_array_equal(got.panoptic, expected)
    other = config.copy_and_resolve_references()
    other.model.aspp_channels = config.model.aspp_channels + 4
    with pytest.raises(ValueError, match="architecture"):
        predictor.load_weights(from_config.create_model(other, rngs=nnx.Rngs(0)))


def test_predictor_step_is_traced_once_per_frame_size(oracle, monkeypatch):
    """The jitted pair step compiles once and is reused for every later frame (no retrace)."""
    from vipdl import inference

    traces = []
    original = inference._DeviceFunctions._step

    def counting_step(self, state, cache, frames):
        traces.append(frames.shape)  # Runs only while JAX traces the function.
        return original(self, state, cache, frames)

    monkeypatch.setattr(inference._DeviceFunctions, "_step", counting_step)
    # A frame size no other test uses, so the step is built (and traced) here.
    frames = paint(make_random_clip(7, 7, 27, 35), seed=1)
    predictor = VideoPredictor(oracle, descriptor=SYNTHETIC, postprocess=OPTIONS)
    assert len(list(predictor.predict(frames))) == 7
    assert len(list(predictor.predict(frames[:3]))) == 3
    assert len(traces) == 1, traces

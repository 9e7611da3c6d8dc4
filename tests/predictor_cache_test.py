"""Tests of the predictor's start-up cache (vipdl/predictor_cache.py and its use in
`VideoPredictor.from_checkpoint`): cached predictors equal live ones bit for bit, a warm start
neither restores nor traces, stale or damaged entries are never used."""

from __future__ import annotations

import logging
import os
import shutil

import ml_dtypes
import numpy as np
import pytest

from vipdl import checkpointing, from_config, inference, predictor_cache
from vipdl.data.synthetic import SyntheticConfig, generate_video
from vipdl.inference import VideoPredictor


@pytest.fixture(scope="module")
def frames():
    return generate_video(SyntheticConfig(height=40, width=50, num_frames=4), 3).frames


def _tables(predictor, frames, **kwargs):
    return [(p.segment_map, p.segments, p.depth) for p in predictor.predict(list(frames), **kwargs)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            if u is None or v is None:
                assert u is None and v is None
            else:
                np.testing.assert_array_equal(u, v)


@pytest.fixture(scope="module")
def live(tiny_run, frames):
    workdir, _ = tiny_run
    return _tables(VideoPredictor.from_checkpoint(workdir), frames)


def _forbid_model_loading(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a warm start restored or traced the model")

    monkeypatch.setattr(from_config, "restored_model", fail)
    monkeypatch.setattr(inference, "_export_functions", fail)


def test_cold_and_warm_predictors_equal_the_live_one(tiny_run, frames, live, tmp_path, monkeypatch):
    workdir, _ = tiny_run
    cache = tmp_path / "cache"
    cold = VideoPredictor.from_checkpoint(workdir, cache_dir=cache)
    _assert_same(_tables(cold, frames), live)
    (entry,) = (cache / predictor_cache.SUBDIR).iterdir()
    assert (entry / predictor_cache.WEIGHTS_FILE).is_file()
    assert len(list((entry / predictor_cache.FUNCTIONS_DIR).iterdir())) == 1

    _forbid_model_loading(monkeypatch)
    warm = VideoPredictor.from_checkpoint(workdir, cache_dir=cache)
    assert warm.descriptor == cold.descriptor and warm.postprocess == cold.postprocess
    assert warm.eval_crop_size_hw == cold.eval_crop_size_hw and warm.tracker == "vip"
    _assert_same(_tables(warm, frames), live)
    # A resumed stream uses the cached step to rebuild the previous frame's features.
    stream = warm.predict(list(frames))
    head = [next(stream) for _ in range(2)]
    state = stream.state()
    rest = list(warm.predict(list(frames[1:]), resume=state))
    _assert_same([(p.segment_map, p.segments, p.depth) for p in head + rest], live)


def test_other_settings_get_their_own_functions(tiny_run, frames, tmp_path):
    workdir, _ = tiny_run
    cache = tmp_path / "cache"
    iou_live = VideoPredictor.from_checkpoint(workdir, tracker="iou")
    iou_cached = VideoPredictor.from_checkpoint(workdir, cache_dir=cache, tracker="iou")
    _assert_same(_tables(iou_cached, frames), _tables(iou_live, frames))
    raw_live = VideoPredictor.from_checkpoint(workdir, return_raw=True)
    # Warm entry (the weights), new functions: the model is restored to trace them.
    raw_cached = VideoPredictor.from_checkpoint(workdir, cache_dir=cache, return_raw=True)
    for a, b in zip(raw_live.predict(list(frames)), raw_cached.predict(list(frames))):
        np.testing.assert_array_equal(a.segment_map, b.segment_map)
        for name in ("ids", "semantic_probs", "center_heatmap", "offsets", "centers"):
            np.testing.assert_array_equal(getattr(a.raw, name), getattr(b.raw, name))
    (entry,) = (cache / predictor_cache.SUBDIR).iterdir()
    assert len(list((entry / predictor_cache.FUNCTIONS_DIR).iterdir())) == 2


def test_damaged_entries_are_rebuilt(tiny_run, frames, live, tmp_path, caplog):
    workdir, _ = tiny_run
    cache = tmp_path / "cache"
    list(VideoPredictor.from_checkpoint(workdir, cache_dir=cache).predict(list(frames[:1])))
    (entry,) = (cache / predictor_cache.SUBDIR).iterdir()
    (fn_file,) = (entry / predictor_cache.FUNCTIONS_DIR).iterdir()
    fn_file.write_bytes(fn_file.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        _assert_same(_tables(VideoPredictor.from_checkpoint(workdir, cache_dir=cache), frames),
                     live)
    assert "cannot load the cached functions" in caplog.text and str(fn_file) in caplog.text
    weights = entry / predictor_cache.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _assert_same(_tables(VideoPredictor.from_checkpoint(workdir, cache_dir=cache), frames),
                     live)
    assert "cannot read the cached weights" in caplog.text
    np.load(weights).close()  # Rewritten whole.
    (entry / predictor_cache.ENTRY_FILE).write_text("{not json")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        VideoPredictor.from_checkpoint(workdir, cache_dir=cache)
    assert "unreadable" in caplog.text
    assert predictor_cache.Store(cache).open(entry.name) is not None


def test_unwritable_cache_directory_runs_without_the_cache(tiny_run, frames, live, tmp_path,
                                                           caplog):
    workdir, _ = tiny_run
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with caplog.at_level(logging.WARNING):
        predictor = VideoPredictor.from_checkpoint(workdir, cache_dir=blocked)
    assert "this run goes without it" in caplog.text
    _assert_same(_tables(predictor, frames), live)


def test_entry_names_follow_checkpoint_config_and_step(tiny_run, tmp_path):
    workdir, config = tiny_run
    run = tmp_path / "run"
    shutil.copytree(workdir, run)
    step = predictor_cache.quick_step_dir(run, "latest")
    assert step == run / "checkpoints" / "0"
    assert str(step) == checkpointing.resolve_step_dir(str(run))
    assert predictor_cache.quick_step_dir(step, "latest") == step
    assert predictor_cache.quick_step_dir(run / "checkpoints", "latest") == step
    assert predictor_cache.quick_step_dir(run, "best") is None
    assert predictor_cache.quick_step_dir("gs://bucket/run", "latest") is None
    text = (run / "config.json").read_text()
    name = predictor_cache.entry_name(step, text)
    assert predictor_cache.entry_name(step, text) == name
    assert predictor_cache.entry_name(step, text + " ") != name
    # A newer step is what "latest" means; an overwritten file changes the fingerprint.
    shutil.copytree(step, run / "checkpoints" / "7")
    assert predictor_cache.quick_step_dir(run, "latest") == run / "checkpoints" / "7"
    assert checkpointing.resolve_step_dir(str(run)) == str(run / "checkpoints" / "7")
    some_file = next(p for p in (step / "state").rglob("*") if p.is_file())
    stat = some_file.stat()
    os.utime(some_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert predictor_cache.entry_name(step, text) != name
    # An unfinished (temporary) step directory is not a step.
    (run / "checkpoints" / "9.orbax-checkpoint-tmp-1").mkdir()
    assert predictor_cache.quick_step_dir(run, "latest") == run / "checkpoints" / "7"


def test_store_keeps_dtypes_and_prunes_least_recently_used(tmp_path):
    store = predictor_cache.Store(tmp_path, max_entries=2)
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3),
               np.array([1.5, -2.25], ml_dtypes.bfloat16), np.array(3, np.int64)]
    entry = store.create("a", settings={"x": 1}, weight_paths=["p/kernel", "p/bias", "n"],
                         weights=weights, source={})
    back = entry.weights()
    assert [w.dtype for w in back] == [w.dtype for w in weights]
    for w, b in zip(weights, back):
        np.testing.assert_array_equal(np.asarray(w, np.float64), np.asarray(b, np.float64))
    assert entry.settings == {"x": 1} and entry.weight_paths == ("p/kernel", "p/bias", "n")
    for i, name in enumerate(("b", "c")):
        os.utime(store.root / ("a" if i == 0 else "b"), (1000 + i, 1000 + i))
        store.create(name, settings={}, weight_paths=[], weights=[], source={})
    assert sorted(p.name for p in store.root.iterdir()) == ["b", "c"]
    assert store.open("a") is None
    # A directory left by a crash before entry.json was written is not an entry.
    (store.root / "d").mkdir()
    assert store.open("d") is None and not (store.root / "d").exists()


def test_a_warm_start_imports_neither_flax_nor_orbax(tiny_run, frames, tmp_path):
    import subprocess
    import sys

    workdir, _ = tiny_run
    cache = tmp_path / "cache"
    list(VideoPredictor.from_checkpoint(workdir, cache_dir=cache).predict(list(frames[:2])))
    code = (
        "import sys, jax, numpy as np\n"
        "jax.config.update('jax_disable_most_optimizations', True)\n"
        "from vipdl.inference import VideoPredictor\n"
        f"p = VideoPredictor.from_checkpoint({str(workdir)!r}, cache_dir={str(cache)!r})\n"
        f"n = len(list(p.predict(list(np.load({str(tmp_path / 'f.npy')!r})))))\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'flax', 'orbax', 'optax'})\n"
        "print(n, heavy)\n")
    np.save(tmp_path / "f.npy", np.asarray(frames[:2]))
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split("\n")[0] == "2 []", out.stdout + out.stderr

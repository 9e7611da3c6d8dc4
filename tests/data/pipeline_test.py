import json

import numpy as np
import pytest

from tests.data import eval_batches
from vipdl import keys
from vipdl.data import descriptors, pipeline, synthetic, targets

DESC = descriptors.SYNTHETIC
VOID = DESC.void_label
CROP = (17, 33)
TRAIN_KEYS = {
    keys.GT_IMAGE,
    keys.GT_PANOPTIC,
    keys.GT_NEXT_PANOPTIC,
    keys.GT_SEMANTIC,
    keys.GT_SEMANTIC_WEIGHTS,
    keys.GT_CENTER_HEATMAP,
    keys.GT_CENTER_WEIGHTS,
    keys.GT_OFFSET,
    keys.GT_OFFSET_WEIGHTS,
    keys.GT_NEXT_OFFSET,
    keys.GT_NEXT_OFFSET_WEIGHTS,
}
NEXT_KEYS = {keys.GT_NEXT_PANOPTIC, keys.GT_NEXT_OFFSET, keys.GT_NEXT_OFFSET_WEIGHTS}


@pytest.fixture(scope="module")
def source():
    config = synthetic.SyntheticConfig(height=24, width=40, num_frames=4)
    return synthetic.SyntheticPairSource(2, config=config, seed=0)


@pytest.fixture(scope="module")
def examples(source):
    # A list is a picklable random-access source (needed by worker processes).
    return [source[i] for i in range(len(source))]


def _loader(src, **kwargs):
    options = dict(descriptor=DESC, crop_size_hw=CROP, batch_size=2, seed=7)
    options.update(kwargs)
    return pipeline.make_train_loader(src, **options)


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _assert_batches_equal(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_train_batch_contract_and_targets_equal_reference(source):
    batch = next(_loader(source, use_depth=True))
    assert set(batch) == TRAIN_KEYS | {keys.GT_DEPTH}
    int_keys = {keys.GT_PANOPTIC, keys.GT_NEXT_PANOPTIC, keys.GT_SEMANTIC}
    for key, value in batch.items():
        assert value.dtype == (np.int32 if key in int_keys else np.float32), key
        assert value.shape[:3] == (2, *CROP), key
    assert batch[keys.GT_IMAGE].shape == (2, *CROP, 6)
    assert batch[keys.GT_OFFSET].shape == batch[keys.GT_NEXT_OFFSET].shape == (2, *CROP, 2)
    assert batch[keys.GT_IMAGE].min() >= 0 and batch[keys.GT_IMAGE].max() <= 255
    for b in range(2):
        expected = targets.make_targets_reference(
            batch[keys.GT_PANOPTIC][b],
            batch[keys.GT_NEXT_PANOPTIC][b],
            thing_ids=DESC.thing_ids,
            label_divisor=DESC.label_divisor,
            ignore_label=DESC.ignore_label,
        )
        for key, value in expected.items():
            np.testing.assert_array_equal(batch[key][b], value, err_msg=key)
    # Real instances reach the targets (the synthetic world always has things).
    assert batch[keys.GT_CENTER_HEATMAP].max() == 1.0


def test_padding_is_shared_by_frames_labels_and_depth(source):
    # At scale 0.5 the 24 x 40 frames become 12 x 20, smaller than the crop: padding is certain.
    batch = next(_loader(source, use_depth=True, scales=(0.5,)))
    pad = np.all(batch[keys.GT_IMAGE] == 127.5, axis=-1)
    assert pad.any() and not pad.all()
    assert np.all(batch[keys.GT_PANOPTIC][pad] == VOID)
    assert np.all(batch[keys.GT_NEXT_PANOPTIC][pad] == VOID)
    assert not batch[keys.GT_DEPTH][pad].any()
    for b in range(2):
        ys, xs = np.nonzero(~pad[b])
        assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == (12, 20)


def test_single_frame_batches(source):
    batch = next(_loader(source, use_next_frame=False))
    assert set(batch) == TRAIN_KEYS - NEXT_KEYS
    assert batch[keys.GT_IMAGE].shape == (2, *CROP, 3)


def test_state_restore_resumes_on_the_exact_next_batch(source):
    iterator = _loader(source)
    _take(iterator, 2)
    state = iterator.get_state()
    json.dumps(state)  # checkpointable as JSON
    expected = _take(iterator, 3)
    restored = _loader(source)
    restored.set_state(state)
    for a, b in zip(_take(restored, 3), expected):
        _assert_batches_equal(a, b)
    # Another seed gives other batches (the comparison above can fail).
    other = next(_loader(source, seed=8))
    assert not np.array_equal(other[keys.GT_IMAGE], expected[0][keys.GT_IMAGE])


def test_global_stream_is_independent_of_the_process_count(source):
    whole = _take(_loader(source, batch_size=4), 3)
    shards = [_take(_loader(source, shard_index=p, shard_count=2), 3) for p in range(2)]
    for step in range(3):
        for key in whole[step]:
            # Process p holds global elements p, p + 2, ... of every global batch.
            merged = np.empty_like(whole[step][key])
            merged[0::2] = shards[0][step][key]
            merged[1::2] = shards[1][step][key]
            np.testing.assert_array_equal(merged, whole[step][key], err_msg=key)


def _numbered_source(count):
    """Examples whose image value is their index: identifiable after a scale-1 full crop."""
    pan = np.zeros((4, 6), np.int32)
    return [
        {
            keys.IMAGE: np.full((4, 6, 3), i, np.uint8),
            keys.NEXT_IMAGE: np.full((4, 6, 3), i, np.uint8),
            keys.PANOPTIC: pan,
            keys.NEXT_PANOPTIC: pan,
            keys.SEQUENCE_ID: f"v{i}",
            keys.FRAME_INDEX: 0,
            keys.NEXT_FRAME_INDEX: 1,
        }
        for i in range(count)
    ]


def test_epochs_cover_the_source_and_are_reshuffled():
    src = _numbered_source(6)
    iterator = _loader(src, crop_size_hw=(4, 6), scales=(1.0,), batch_size=3, num_epochs=2)
    order = [int(v) for batch in iterator for v in batch[keys.GT_IMAGE][:, 0, 0, 0]]
    assert sorted(order[:6]) == sorted(order[6:]) == list(range(6))
    assert order[:6] != order[6:]
    with pytest.raises(ValueError, match="cannot fill one global batch"):
        _loader(src, batch_size=4, shard_count=2, num_epochs=1)


def test_worker_processes_give_the_same_batches_and_restore(examples):
    expected = _take(_loader(examples), 4)
    iterator = _loader(examples, num_workers=2)
    try:
        first = next(iterator)
        state = iterator.get_state()
        rest = _take(iterator, 2)
    finally:
        iterator.close()
    # A restarted job: a fresh iterator with the same workers, restored from the saved state.
    restarted = _loader(examples, num_workers=2)
    try:
        restarted.set_state(json.loads(json.dumps(state)))
        again = _take(restarted, 2)
    finally:
        restarted.close()
    for a, b in zip([first, *rest, *again], [*expected[:3], *expected[1:3]]):
        _assert_batches_equal(a, b)


def _bad(example, **changes):
    bad = dict(example)
    bad.update(changes)
    return bad


def test_validation_errors_name_the_field_sequence_and_frame(examples):
    kw = dict(
        num_classes=DESC.num_classes,
        ignore_label=DESC.ignore_label,
        label_divisor=DESC.label_divisor,
    )
    example = examples[1]  # sequence "000000", frames 1 -> 2
    pipeline.validate_example(example, **kw, use_depth=True)
    with pytest.raises(
        ValueError, match=r"panoptic of sequence '000000' frame 1: .*size \(24, 40\)"
    ):
        pipeline.validate_example(_bad(example, panoptic=example[keys.PANOPTIC][:, :30]), **kw)
    bad_class = example[keys.NEXT_PANOPTIC].copy()
    bad_class[0, 0] = 20 * DESC.label_divisor
    with pytest.raises(ValueError, match=r"next_panoptic of sequence '000000' frame 2: 1 pixels"):
        pipeline.validate_example(_bad(example, next_panoptic=bad_class), **kw)
    with pytest.raises(ValueError, match="next_image of sequence '000000' frame 2"):
        pipeline.validate_example(_bad(example, next_image=example[keys.IMAGE][:10]), **kw)
    with pytest.raises(ValueError, match="image of sequence '000000' frame 1: expected uint8"):
        pipeline.validate_example(_bad(example, image=example[keys.IMAGE].astype(float)), **kw)
    with pytest.raises(ValueError, match="missing fields \\['depth'\\]"):
        pipeline.validate_example(
            {k: v for k, v in example.items() if k != keys.DEPTH}, **kw, use_depth=True
        )
    negative = _bad(example, depth=np.full((24, 40), -1.0, np.float32))
    with pytest.raises(ValueError, match="depth of sequence '000000' frame 1"):
        pipeline.validate_example(negative, **kw, use_depth=True)
    # Through the loader, the error surfaces with the same message.
    broken = [
        _bad(e, panoptic=np.full((24, 40), 9 * DESC.label_divisor, np.int32)) for e in examples
    ]
    with pytest.raises(ValueError, match="class ids outside \\[0, 8\\)"):
        next(_loader(broken))


def test_eval_batches_keep_order_pad_and_mask():
    rng = np.random.default_rng(0)
    src = []
    for i in range(5):
        pan = rng.integers(0, 5, (10, 12)).astype(np.int32) * 1000
        src.append(
            {
                keys.IMAGE: rng.integers(0, 256, (10, 12, 3)).astype(np.uint8),
                keys.NEXT_IMAGE: rng.integers(0, 256, (10, 12, 3)).astype(np.uint8),
                keys.PANOPTIC: pan,
                keys.NEXT_PANOPTIC: pan[::-1].copy(),
                keys.SEQUENCE_ID: "a" if i < 3 else "b",
                keys.FRAME_INDEX: i,
                keys.NEXT_FRAME_INDEX: i + 1,
            }
        )
    kw = dict(descriptor=DESC, crop_size_hw=(13, 17), batch_size=2, shard_count=2)
    shards = [list(eval_batches.make_eval_batches(src, shard_index=p, **kw)) for p in range(2)]
    assert [len(s) for s in shards] == [2, 2]
    assert eval_batches.num_eval_batches(5, batch_size=2, shard_count=2) == 2
    valid = [np.concatenate([b[eval_batches.VALID] for b in s]).tolist() for s in shards]
    assert valid == [[True, True, True, False], [True, True, False, False]]
    frames = [np.concatenate([b[keys.FRAME_INDEX] for b in s]).tolist() for s in shards]
    assert frames == [[0, 1, 2, -1], [3, 4, -1, -1]]
    batch = shards[1][0]
    assert batch[keys.SEQUENCE_ID].tolist() == ["b", "b"]
    np.testing.assert_array_equal(batch[eval_batches.IMAGE_SIZE], [[10, 12], [10, 12]])
    image = batch[keys.GT_IMAGE]
    assert image.shape == (2, 13, 17, 6) and image.dtype == np.float32
    np.testing.assert_array_equal(image[0, :10, :12, :3], src[3][keys.IMAGE])
    np.testing.assert_array_equal(image[1, :10, :12, 3:], src[4][keys.NEXT_IMAGE])
    assert np.all(image[:, 10:] == 127.5) and np.all(image[:, :, 12:] == 127.5)
    np.testing.assert_array_equal(
        batch[keys.GT_NEXT_PANOPTIC][0, :10, :12], src[3][keys.NEXT_PANOPTIC]
    )
    assert np.all(batch[keys.GT_PANOPTIC][:, 10:] == VOID)
    padding = shards[1][1]
    assert np.all(padding[keys.GT_PANOPTIC] == VOID) and np.all(padding[keys.GT_IMAGE] == 127.5)
    assert not padding[keys.GT_CENTER_WEIGHTS].any()
    # Eval batches carry the training keys too (for an eval loss).
    assert TRAIN_KEYS <= set(batch)
    with_depth = [{**e, keys.DEPTH: np.full((10, 12), 4.5, np.float32)} for e in src]
    single = next(
        iter(
            eval_batches.make_eval_batches(
                with_depth,
                descriptor=DESC,
                crop_size_hw=(11, 12),
                batch_size=5,
                use_next_frame=False,
                use_depth=True,
                with_targets=False,
            )
        )
    )
    assert single[keys.GT_IMAGE].shape == (5, 11, 12, 3)
    assert np.all(single[keys.GT_DEPTH][:, :10] == 4.5) and not single[keys.GT_DEPTH][:, 10:].any()
    assert not (set(single) & (NEXT_KEYS | {keys.GT_CENTER_HEATMAP, keys.NEXT_FRAME_INDEX}))
    with pytest.raises(ValueError, match="exceeds the eval crop"):
        next(
            iter(
                eval_batches.make_eval_batches(src, descriptor=DESC, crop_size_hw=(9, 12), batch_size=1)
            )
        )


def test_iter_videos_rebuilds_whole_videos(source, examples):
    videos = list(pipeline.iter_videos(examples))
    assert [v[0] for v in videos] == ["000000", "000001"]
    for index, (_, frames, panoptic) in enumerate(videos):
        video = source.video(index)
        annotated = list(video.annotated_frames)
        assert frames.shape == (4, 24, 40, 3) and frames.dtype == np.uint8
        assert panoptic.dtype == np.int32
        np.testing.assert_array_equal(frames, np.stack([video.frames[t] for t in annotated]))
        np.testing.assert_array_equal(panoptic, np.stack([video.panoptic[t] for t in annotated]))
    with pytest.raises(
        ValueError, match="pair 1 starts at frame 2 but the previous pair ends at frame 1"
    ):
        list(pipeline.iter_videos([examples[0], examples[2], examples[1]]))
    with pytest.raises(ValueError, match="'000000': its pairs are not consecutive"):
        list(pipeline.iter_videos([examples[0], examples[3], examples[1]]))

"""Tests of the synthetic video world."""

import dataclasses
import pickle

import numpy as np
import pytest

from vipdl import keys
from vipdl.data import descriptors, synthetic

D = descriptors.SYNTHETIC
SMALL = synthetic.SyntheticConfig(height=64, width=128, num_frames=8)


@pytest.fixture(scope="module")
def videos():
    return [synthetic.generate_video(SMALL, (0, i)) for i in range(12)]


def test_shapes_dtypes_and_label_convention(videos):
    v = videos[0]
    assert v.frames.shape == (8, 64, 128, 3) and v.frames.dtype == np.uint8
    assert v.panoptic.shape == (8, 64, 128) and v.panoptic.dtype == np.int32
    assert v.depth.shape == (8, 64, 128) and v.depth.dtype == np.float32
    for v in videos:
        sem, inst = v.panoptic // D.label_divisor, v.panoptic % D.label_divisor
        void = sem == D.ignore_label
        assert np.all((sem < D.num_classes) | void)
        assert np.all(inst[void] == 0)
        stuff = np.isin(sem, D.stuff_ids)
        assert np.all(inst[stuff] == 0)
        assert np.all(inst[np.isin(sem, D.thing_ids)] > 0)  # No crowd in the synthetic world.
        # Depth: positive where labelled, 0 only on void.
        assert np.all(v.depth[~void] > 0) and np.all(v.depth[void] == 0)
        assert v.depth.max() <= D.max_depth


def test_deterministic_and_seed_dependent():
    a = synthetic.generate_video(SMALL, (3, 1))
    b = synthetic.generate_video(SMALL, (3, 1))
    c = synthetic.generate_video(SMALL, (3, 2))
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.panoptic, b.panoptic)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert not np.array_equal(a.frames, c.frames)


def test_all_classes_occur(videos):
    present = set(np.unique(np.concatenate([v.panoptic.ravel() for v in videos]) // 1000))
    assert set(range(D.num_classes)) | {D.ignore_label} == present


def test_instance_ids_follow_their_object(videos):
    for v in videos:
        for track in v.tracks:
            code = track.class_id * D.label_divisor + track.instance_id
            for t in range(v.panoptic.shape[0]):
                mask = v.panoptic[t] == code
                if not mask.any():
                    continue
                ys, xs = np.nonzero(mask)
                y0, x0, y1, x1 = track.boxes[t]
                # Every pixel of an id lies inside the box of the object that owns the id.
                assert ys.min() >= np.floor(y0) and ys.max() < np.ceil(y1)
                assert xs.min() >= np.floor(x0) and xs.max() < np.ceil(x1)
        ids = {int(x) for x in np.unique(v.panoptic) if x // 1000 in D.thing_ids}
        assert ids <= {t.class_id * 1000 + t.instance_id for t in v.tracks}


def test_objects_are_large_enough(videos):
    # At 64x128 most visible thing masks must exceed ~150 pixels to be learnable.
    areas = np.concatenate([t.visible_pixels for v in videos for t in v.tracks])
    areas = areas[areas > 0]
    assert np.mean(areas > 150) > 0.6, np.percentile(areas, [10, 50, 90])


@pytest.fixture(scope="module")
def far_videos():
    # The demo's world (configs/synthetic.py): objects further away, at 0.6 of the size.
    cfg = dataclasses.replace(SMALL, object_scale=0.6)
    return [synthetic.generate_video(cfg, (0, i)) for i in range(12)]


def test_object_scale_shrinks_objects_only(videos, far_videos):
    for near, far in zip(videos, far_videos):
        np.testing.assert_array_equal(near.frames[0][:8], far.frames[0][:8])  # Same sky.
        assert len(near.tracks) == len(far.tracks)
        for a, b in zip(near.tracks, far.tracks):
            ha, hb = a.boxes[:, 2] - a.boxes[:, 0], b.boxes[:, 2] - b.boxes[:, 0]
            np.testing.assert_allclose(hb, 0.6 * ha, rtol=1e-4)
    with pytest.raises(ValueError, match="object_scale must be in"):
        dataclasses.replace(SMALL, object_scale=0.0)


@pytest.mark.parametrize("which", ["videos", "far_videos"])
def test_video_events_enter_leave_occlude_reappear(which, request):
    videos = request.getfixturevalue(which)
    entered = left = reappeared = fully_occluded = crossing = 0
    for v in videos:
        for track in v.tracks:
            vis = track.visible_pixels > 0
            inside = track.in_frame(SMALL.height, SMALL.width)
            if not inside[0] and inside.any():
                entered += 1
            if inside[0] and not inside[-1]:
                left += 1
            hidden = inside & ~vis  # In the frame but not a single pixel visible.
            if hidden.any():
                fully_occluded += 1
                first, last = np.nonzero(vis)[0][[0, -1]] if vis.any() else (0, 0)
                if any(first < t < last for t in np.nonzero(hidden)[0]):
                    reappeared += 1
        # Two instances of the same class overlapping in some frame (partial occlusion).
        for t in range(SMALL.num_frames):
            for a in v.tracks:
                for b in v.tracks:
                    if a.instance_id < b.instance_id and a.class_id == b.class_id:
                        ya0, xa0, ya1, xa1 = a.boxes[t]
                        yb0, xb0, yb1, xb1 = b.boxes[t]
                        if min(xa1, xb1) > max(xa0, xb0) and min(ya1, yb1) > max(ya0, yb0):
                            crossing += 1
    assert entered > 0 and left > 0
    assert fully_occluded > 0 and reappeared > 0
    assert crossing > 0
    # Objects approach or recede: box heights change by more than 10% over some videos.
    heights = [t.boxes[:, 2] - t.boxes[:, 0] for v in videos for t in v.tracks]
    assert sum(abs(h[-1] / h[0] - 1) > 0.1 for h in heights) >= 3


def test_camera_pans(videos):
    # Static stuff moves between frames in some videos: the building/sky boundary shifts.
    shifted = 0
    for v in videos:
        a, b = v.panoptic[0] // 1000, v.panoptic[-1] // 1000
        stuff = np.isin(a, D.stuff_ids) & np.isin(b, D.stuff_ids)
        shifted += np.mean(a[stuff] != b[stuff]) > 0.01
    assert shifted >= len(videos) // 3


def test_annotation_stride():
    cfg = dataclasses.replace(SMALL, num_frames=10, annotation_stride=5)
    assert cfg.annotated_frames == (4, 9)
    with pytest.raises(ValueError, match="fewer than 2 annotated frames"):
        dataclasses.replace(SMALL, num_frames=9, annotation_stride=5)


def test_pair_source():
    cfg = dataclasses.replace(SMALL, num_frames=6, annotation_stride=2)
    src = synthetic.SyntheticPairSource(3, config=cfg, seed=5)
    assert len(src) == 3 * 2
    ex = src[3]
    assert set(ex) == {
        keys.IMAGE,
        keys.NEXT_IMAGE,
        keys.PANOPTIC,
        keys.NEXT_PANOPTIC,
        keys.DEPTH,
        keys.SEQUENCE_ID,
        keys.FRAME_INDEX,
        keys.NEXT_FRAME_INDEX,
    }
    video = synthetic.generate_video(cfg, (5, 1))
    assert ex[keys.SEQUENCE_ID] == synthetic.sequence_id(1)
    assert (ex[keys.FRAME_INDEX], ex[keys.NEXT_FRAME_INDEX]) == (1, 2)
    np.testing.assert_array_equal(ex[keys.IMAGE], video.frames[3])
    np.testing.assert_array_equal(ex[keys.NEXT_IMAGE], video.frames[5])
    np.testing.assert_array_equal(ex[keys.PANOPTIC], video.panoptic[3])
    np.testing.assert_array_equal(ex[keys.NEXT_PANOPTIC], video.panoptic[5])
    np.testing.assert_array_equal(ex[keys.DEPTH], video.depth[3])
    assert ex[keys.IMAGE].dtype == np.uint8 and ex[keys.PANOPTIC].dtype == np.int32
    np.testing.assert_array_equal(src[-1][keys.NEXT_IMAGE], src.video(2).frames[5])
    with pytest.raises(IndexError):
        src[6]


def test_pair_source_pickles_without_its_cache():
    src = synthetic.SyntheticPairSource(2, config=SMALL, seed=1)
    first = src[0]
    clone = pickle.loads(pickle.dumps(src))
    assert not clone._cache and len(clone) == len(src)
    np.testing.assert_array_equal(clone[0][keys.IMAGE], first[keys.IMAGE])

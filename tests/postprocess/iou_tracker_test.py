"""IoU tracker of the tracking-free baseline (docs/postprocessing.md#iou-tracker)."""

import numpy as np
import pytest

from vipdl.postprocess.iou_tracker import IoUTracker
from vipdl.postprocess.stitching import TrackIdOverflowError

D = 1000
PERSON, CAR = 11, 13


def _row(*segments, width=20):
    """A 1 x width map; segments are (label, start, stop) column ranges; the rest is road 0."""
    out = np.zeros((1, width), np.int32)
    for label, start, stop in segments:
        out[0, start:stop] = label
    return out


def test_moving_objects_keep_ids_and_low_iou_starts_a_new_track():
    tracker = IoUTracker(thing_ids=(PERSON, CAR), label_divisor=D)
    # Frame 0: person (cols 0-9) and car (cols 12-15); raw ids 7 and 7. Tracks are numbered
    # by one counter over classes (persons first, the order of thing_ids): person 1, car 2.
    out = tracker.update(_row((11007, 0, 10), (13007, 12, 16)))
    np.testing.assert_array_equal(out, _row((11001, 0, 10), (13002, 12, 16)))
    # Frame 1: the person moves 2 columns: IoU 8 / 12 = 0.67 > 0.3, same track. The car moves
    # to cols 15-19: IoU 1 / 8 = 0.125, a new track 3.
    out = tracker.update(_row((11003, 2, 12), (13001, 15, 20)))
    np.testing.assert_array_equal(out, _row((11001, 2, 12), (13003, 15, 20)))


def test_iou_threshold_is_strict():
    # Cols 0-5 then cols 3-9: intersection 3, union 6 + 7 - 3 = 10, IoU exactly 0.3: no match.
    tracker = IoUTracker(thing_ids=(PERSON,), label_divisor=D, iou_threshold=0.3)
    tracker.update(_row((11001, 0, 6)))
    out = tracker.update(_row((11001, 3, 10)))
    np.testing.assert_array_equal(out, _row((11002, 3, 10)))


def test_hungarian_assignment_beats_greedy():
    # Tracks T1 = cols 0-9 (id 1), T2 = cols 10-15 (id 2). New instances: I1 = cols 4-13,
    # I2 = cols 0-3. IoUs: I1-T1 6/14 = 0.43, I1-T2 4/12 = 0.33, I2-T1 4/10 = 0.4, I2-T2 0.
    # Greedy would take I1-T1 and leave I2 unmatched; the optimal assignment (sum 0.73) is
    # I1 -> T2, I2 -> T1, both above 0.3.
    tracker = IoUTracker(thing_ids=(PERSON,), label_divisor=D)
    tracker.update(_row((11001, 0, 10), (11002, 10, 16)))
    out = tracker.update(_row((11005, 4, 14), (11006, 0, 4)))
    np.testing.assert_array_equal(out, _row((11002, 4, 14), (11001, 0, 4)))


def test_inactive_tracks_are_kept_for_max_inactive_frames():
    person = _row((11001, 0, 4))
    empty = _row()
    for gap, same in [(2, True), (3, False)]:
        tracker = IoUTracker(thing_ids=(PERSON,), label_divisor=D, max_inactive_frames=2)
        tracker.update(person)
        for _ in range(gap):
            tracker.update(empty)  # a class without instances ages all its tracks
        # After 2 missing frames the track is inactive for 2 (not > 2): kept, matched again.
        # After 3 it was deleted, so the person starts track 2.
        out = tracker.update(person)
        assert out[0, 0] == (11001 if same else 11002)


def test_classes_stuff_and_crowd_are_separate():
    tracker = IoUTracker(thing_ids=(PERSON, CAR), label_divisor=D)
    tracker.update(_row((11001, 0, 5)))
    # Same pixels, now a car: no match across classes. Crowd (13000) and stuff pass through.
    out = tracker.update(_row((13004, 0, 5), (13000, 6, 8), (2000, 8, 12), (32000, 12, 14)))
    np.testing.assert_array_equal(
        out, _row((13002, 0, 5), (13000, 6, 8), (2000, 8, 12), (32000, 12, 14))
    )
    assert tracker.active_tracks == {PERSON: [1], CAR: [2]}


def test_overflow_raises_and_keeps_state():
    tracker = IoUTracker(thing_ids=(1,), label_divisor=10)
    tracker.update(np.array([[11, 12, 13, 14, 15, 16, 17, 18, 19, 0]]))  # tracks 1-9
    with pytest.raises(TrackIdOverflowError, match="label_divisor=10"):
        tracker.update(np.array([[0, 0, 0, 0, 0, 0, 0, 0, 0, 11]]))
    # State unchanged: the same frame as before still matches all nine tracks.
    out = tracker.update(np.array([[11, 12, 13, 14, 15, 16, 17, 18, 19, 0]]))
    np.testing.assert_array_equal(out, [[11, 12, 13, 14, 15, 16, 17, 18, 19, 0]])


def test_bad_inputs():
    tracker = IoUTracker(thing_ids=(PERSON,), label_divisor=D)
    with pytest.raises(ValueError, match="height, width"):
        tracker.update(np.zeros((1, 2, 3), np.int32))
    tracker.update(_row())
    with pytest.raises(ValueError, match="reset"):
        tracker.update(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="iou_threshold"):
        IoUTracker(thing_ids=(PERSON,), label_divisor=D, iou_threshold=1.0)


def test_iou_tracker_equals_the_loop_implementation_and_resumes():
    from tests.postprocess.loop_reference import LoopIoUTracker
    from tests.postprocess.stitching_test import _random_scene_pairs

    frames = [n for _, _, n in _random_scene_pairs(3, 16)]
    new = IoUTracker(thing_ids=(11, 13), label_divisor=1000, max_inactive_frames=2)
    old = LoopIoUTracker(thing_ids=(11, 13), label_divisor=1000, max_inactive_frames=2)
    wide = []
    for t, frame in enumerate(frames):
        got = new.update(frame)
        np.testing.assert_array_equal(got, old.update(frame), err_msg=f"frame {t}")
        wide.append(got)
        if t == 7:
            state = {k: np.copy(v) for k, v in new.state_dict().items()}
    resumed = IoUTracker(thing_ids=(11, 13), label_divisor=1000, max_inactive_frames=2)
    resumed.load_state_dict(state)
    for t in range(8, len(frames)):
        out = resumed.update_wide(frames[t])
        np.testing.assert_array_equal((out >> 32) * 1000 + (out & 0xFFFFFFFF), wide[t])

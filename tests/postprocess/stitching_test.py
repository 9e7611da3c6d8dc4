"""Sequence stitching: clean vs the notebook's literal procedure (docs/postprocessing.md#sequence-stitching), re-identification
after occlusion, and track-id overflow."""

import numpy as np
import pytest

from vipdl.postprocess import two_frame
from vipdl.postprocess.stitching import TrackIdOverflowError, VideoStitcher

D = 1000
PERSON, CAR, ROAD = 11, 13, 0
KW = dict(thing_ids=(11, 12, 13), label_divisor=D, ignore_label=32)


def _scene(t: int) -> dict[str, tuple[int, tuple[slice, slice]]]:
    """Ground-truth objects of frame t: name -> (class, region) on a 6 x 12 map."""
    objects = {
        "A": (PERSON, (slice(1, 4), slice(t, t + 3))),  # walks right one column per frame
        "B": (CAR, (slice(2, 5), slice(8, 11))),  # parked
    }
    if t >= 3:
        objects["C"] = (PERSON, (slice(4, 6), slice(0, 2)))  # enters at frame 3
    return objects


def _render(objects, numbering: dict[str, int]) -> np.ndarray:
    out = np.full((6, 12), ROAD * D, np.int32)
    for name, (cls, region) in objects.items():
        out[region] = cls * D + numbering[name]
    return out


def _pair_outputs(num_frames: int):
    """What two-frame inference would give: P_t and concat C_{t+1} share a per-pair numbering;
    the standalone N_{t+1} numbers its instances independently."""
    pairs = []
    for t in range(num_frames - 1):
        shared = {"A": 1 + t % 2, "B": 1, "C": 2 - t % 2}  # changes from pair to pair
        raw = {"A": 2, "B": 3, "C": 1}
        pairs.append(
            (
                _render(_scene(t), shared),
                _render(_scene(t + 1), shared),
                _render(_scene(t + 1), raw),
            )
        )
    return pairs


def test_clean_mode_gives_each_object_one_consecutive_global_id():
    stitcher = VideoStitcher(**KW)
    frames = []
    for t, (p, c, n) in enumerate(_pair_outputs(5)):
        if t == 0:
            frames.append(stitcher.first(p))
        frames.append(stitcher.update(p, c, n))
    # Frame 0 numbers tracks in row-major order of first appearance: A (first pixel (1, 0))
    # gets 1, B ((2, 8)) gets 2; C, new at frame 3, gets the next id, 3. Road stays 0.
    expected_ids = {"A": 1, "B": 2, "C": 3}
    for t, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, _render(_scene(t), expected_ids))
    assert stitcher.num_tracks == 3 and stitcher.num_frames == 5


def test_update_forms_agree():
    """first() + update(P, C, N) == update without first(), whose frame 0 is `first_frame`."""
    pairs = _pair_outputs(4)
    a, c = VideoStitcher(**KW), VideoStitcher(**KW)
    first_a = a.first(pairs[0][0])
    for p, concat, nxt in pairs:
        out_a = a.update(p, concat, nxt)
        out_c = c.update(p, concat, nxt)
        np.testing.assert_array_equal(out_a, out_c)
    np.testing.assert_array_equal(first_a, c.first_frame)
    with pytest.raises(ValueError, match="reset"):
        a.first(pairs[0][0])


def _run(mode: str, frames01: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two pairs where every stitch_pair is the identity (concat == standalone): the first pair
    makes `frames01` the stitched frame 1 ("last"); the second pair brings P_1 = `p1` and frame
    2 equal to it. Returns (tracked frame 1, tracked frame 2)."""
    stitcher = VideoStitcher(**KW, mode=mode)
    out1 = stitcher.update(frames01, frames01, frames01)
    out2 = stitcher.update(p1, p1, p1)
    return out1, out2


def test_hazard_a_smallest_overlap_wins_in_reference_mode():
    # last = [A, B, B, B] (A = person 1, B = person 2); P_1 = one person 5 over all 4 pixels.
    # Notebook: pairs by ascending count: (A, 5) x1 first rewrites every 5 to A, then (B, 5) x3
    # finds no 5 left. The one-pixel overlap wins.
    last = np.array([[11001, 11002, 11002, 11002]])
    p1 = np.array([[11005, 11005, 11005, 11005]])
    _, ref = _run("reference", last, p1)
    np.testing.assert_array_equal(ref, [[11001] * 4])
    # Clean: largest overlap, so the 3-pixel track B continues.
    out1, clean = _run("clean", last, p1)
    np.testing.assert_array_equal(clean, np.full((1, 4), out1[0, 1]))
    assert out1[0, 1] != out1[0, 0]


def test_hazard_b_chained_replacements_merge_two_objects_in_reference_mode():
    # last = [L2, L3, L3] with L2 = person 2, L3 = person 3; P_1 = [p1, p2, p2] with p1 = person
    # 1, p2 = person 2 (the same number as L2). Notebook: (L2, p1) x1 rewrites p1 -> 11002;
    # then (L3, p2) x2 rewrites every 11002 -> 11003, including the pixel just written. Two
    # objects end up as one.
    last = np.array([[11002, 11003, 11003]])
    p1 = np.array([[11001, 11002, 11002]])
    _, ref = _run("reference", last, p1)
    np.testing.assert_array_equal(ref, [[11003, 11003, 11003]])
    # Clean: simultaneous one-to-one mapping keeps the two objects apart, each on its track.
    out1, clean = _run("clean", last, p1)
    np.testing.assert_array_equal(clean, out1)
    assert clean[0, 0] != clean[0, 1]


def test_hazard_c_stuff_voided_in_reference_mode():
    # last has sidewalk (class 1) void — the standalone pass found it too small — while P_1,
    # whose stuff area was counted over two frames, kept it (1000). Notebook: (void, 1000) x2
    # rewrites every sidewalk pixel of the next frame to void.
    void = 32 * D
    last = np.array([[void, void, 11001]])
    p1 = np.array([[1000, 1000, 11001]])
    _, ref = _run("reference", last, p1)
    np.testing.assert_array_equal(ref[0, :2], [void, void])
    out1, clean = _run("clean", last, p1)
    np.testing.assert_array_equal(clean, [[1000, 1000, out1[0, 2]]])


def _occlusion_pairs(x_class: int = PERSON):
    """Person X (columns 0-1) is hidden in frames 2 and 3; car Y (columns 4-5) stays.

    In frame 4 X comes back (as `x_class`). The concat map of pair (t, t+1) only holds X if X
    has a center in frame t, so X's standalone segment in frame 4 is unmatched and comes out
    of the pair stitcher as new.
    """

    def frame(t, x_id, y_id, with_x=True):
        out = np.zeros((2, 6), np.int32)
        out[:, 4:] = CAR * D + y_id
        if with_x and t not in (2, 3):
            out[:, :2] = (PERSON if t < 4 else x_class) * D + x_id
        return out

    return [
        (frame(t, 1, 1), frame(t + 1, 1, 1, with_x=t not in (2, 3)), frame(t + 1, 4, 2))
        for t in range(4)
    ]


@pytest.mark.parametrize("memory_frames,reidentified", [(0, False), (2, False), (3, True)])
def test_reidentification_after_occlusion(memory_frames, reidentified):
    stitcher = VideoStitcher(**KW, memory_frames=memory_frames, reid_iou=0.5)
    outs = [stitcher.update(*pair) for pair in _occlusion_pairs()]
    frames = [stitcher.first_frame, *outs]
    x0, y0 = frames[0][0, 0], frames[0][0, 4]
    assert all(f[0, 4] == y0 for f in frames)  # the car is tracked throughout
    # X was last seen at frame 1 and reappears at frame 4, 3 frames later: remembered only
    # with memory_frames >= 3. Otherwise it gets a fresh id (3, after X = 1 and Y = 2).
    assert frames[4][0, 0] == (x0 if reidentified else PERSON * D + 3)


def test_reid_needs_same_class():
    # X comes back as a car exactly where the person was: IoU 1, but another class, so it is a
    # new track (3) rather than the person's track 1.
    stitcher = VideoStitcher(**KW, memory_frames=5)
    for pair in _occlusion_pairs(x_class=CAR):
        out = stitcher.update(*pair)
    assert stitcher.first_frame[0, 0] == PERSON * D + 1
    assert out[0, 0] == CAR * D + 3
    with pytest.raises(ValueError, match="reid_iou"):
        VideoStitcher(**KW, reid_iou=1.5)


def test_reid_needs_enough_overlap():
    # X comes back shifted by one column: IoU with its last mask = 2 / 6 (2 of 4 pixels shared
    # out of 6 in the union) = 0.33, below reid_iou 0.5, above 0.3.
    pairs = _occlusion_pairs()
    p3, c4, n4 = (m.copy() for m in pairs[-1])
    n4[:, :2] = ROAD * D
    n4[:, 1:3] = PERSON * D + 4
    outs = {}
    for reid_iou in (0.5, 0.3):
        stitcher = VideoStitcher(**KW, memory_frames=5, reid_iou=reid_iou)
        for pair in [*pairs[:-1], (p3, c4, n4)]:
            outs[reid_iou] = stitcher.update(*pair)
    assert outs[0.5][0, 1] == PERSON * D + 3
    assert outs[0.3][0, 1] == PERSON * D + 1


def _overflow_pairs():
    """D = 10: every frame brings 4 new persons (ids 1-4 in the standalone map, none in the
    concat map), so frames 0, 1, 2 need 2, 4, 4 new ids: 1-2, 3-6, then 7-10."""
    p0 = np.array([[11, 12, 0, 0, 0]])  # persons 1 and 2 (class 1, D = 10)
    empty = np.zeros((1, 5), np.int32)
    four = np.array([[11, 12, 13, 14, 0]])
    return p0, empty, four


@pytest.mark.parametrize("mode", ["clean", "reference"])
def test_track_ids_never_reach_the_label_divisor(mode):
    p0, empty, four = _overflow_pairs()
    stitcher = VideoStitcher(thing_ids=(1,), label_divisor=10, ignore_label=9, mode=mode)
    stitcher.update(p0, empty, four)
    with pytest.raises(TrackIdOverflowError, match="label_divisor=10"):
        for _ in range(3):
            stitcher.update(empty, empty, four)
    if mode == "clean":
        # The failed call changed nothing: ids 7-9 are still free for three new persons.
        assert stitcher.num_tracks == 6 and stitcher.num_frames == 2
        out = stitcher.update(empty, empty, np.array([[11, 12, 13, 0, 0]]))
        np.testing.assert_array_equal(out, [[17, 18, 19, 0, 0]])


def test_bad_inputs():
    with pytest.raises(ValueError, match="mode"):
        VideoStitcher(**KW, mode="literal")
    with pytest.raises(ValueError, match="clean mode"):
        VideoStitcher(**KW, mode="reference", memory_frames=2)
    stitcher = VideoStitcher(**KW)
    a = np.zeros((2, 3), np.int32)
    with pytest.raises(ValueError, match="concat_next_t1"):
        stitcher.update(a, np.zeros((3, 3), np.int32), a)
    with pytest.raises(ValueError, match="integer"):
        stitcher.update(a, a.astype(np.float32), a)
    with pytest.raises(ValueError, match="next_panoptic_t1 labels"):
        stitcher.update(a, a, a - 1)
    stitcher.update(a, a, a)
    with pytest.raises(ValueError, match="reset"):
        stitcher.update(*[np.zeros((4, 4), np.int32)] * 3)


@pytest.mark.parametrize("memory_frames", [0, 3])
def test_random_pairs_keep_segments_distinct_and_ids_consecutive(memory_frames):
    rng = np.random.default_rng(memory_frames)

    def random_map():
        cls = rng.choice([ROAD, PERSON, CAR], (5, 6)).repeat(2, 0).repeat(2, 1)
        ins = rng.integers(0, 4, (5, 6)).repeat(2, 0).repeat(2, 1)
        return (cls * D + np.where(cls == ROAD, 0, ins)).astype(np.int32)

    stitcher = VideoStitcher(**KW, memory_frames=memory_frames)
    seen = set()
    for _ in range(8):
        p, c, n = random_map(), random_map(), random_map()
        out = stitcher.update(p, c, n)
        stitched = two_frame.stitch_pair(c, n, label_divisor=D)
        # The relabelling is one-to-one: as many distinct segments as before, same classes,
        # stuff and crowd untouched.
        assert len(np.unique(out)) == len(np.unique(stitched))
        np.testing.assert_array_equal(out // D, stitched // D)
        np.testing.assert_array_equal(out[stitched % D == 0], stitched[stitched % D == 0])
        seen |= {int(v) % D for v in np.unique(out) if v % D}
    seen |= {int(v) % D for v in np.unique(stitcher.first_frame) if v % D}
    # Track ids are exactly 1..num_tracks (every id handed out is used at least once).
    assert seen == set(range(1, stitcher.num_tracks + 1))


def test_reference_mode_first_frame_and_new_ids_as_the_notebook():
    # Pair 0: P_0 = persons 1, 2; the standalone frame 1 has persons 1 (matches concat 1) and
    # 2 (no partner: 2 + 500 after the pair stitch). Notebook: frame 0 is P_0 unchanged;
    # max_id = max(P_0 ids) = 2, so the new person becomes 502 - 500 + 2 = 4.
    p0 = np.array([[11001, 11002, 0, 0]])
    c1 = np.array([[11001, 0, 0, 0]])
    n1 = np.array([[11001, 0, 0, 11002]])
    stitcher = VideoStitcher(**KW, mode="reference")
    np.testing.assert_array_equal(stitcher.first(p0), p0)
    np.testing.assert_array_equal(stitcher.update(p0, c1, n1), [[11001, 0, 0, 11004]])

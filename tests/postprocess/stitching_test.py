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


# --- vectorised tables == the loop-based implementation ------------------------------------


def _random_scene_pairs(seed: int, num_frames: int, height: int = 24, width: int = 32):
    """Pair outputs of many small moving, entering and leaving objects, with noisy fragments
    (partial overlaps, equal-IoU ties, stuff and void): the cases the tables must get right."""
    rng = np.random.default_rng(seed)
    objects = []

    def frame(t, numbering):
        out = np.where(rng.random((height, width)) < 0.1, 32 * D, ROAD * D).astype(np.int32)
        out[: height // 5] = 2 * D  # stuff
        for k, (cls, y, x, vy, vx, h, w, born, dies) in enumerate(objects):
            if not born <= t < dies:
                continue
            y0, x0 = int(y + vy * t), int(x + vx * t)
            out[max(y0, 0) : max(y0 + h, 0), max(x0, 0) : max(x0 + w, 0)] = (
                cls * D + numbering[k]
            )
        return out

    for _ in range(14):
        objects.append((int(rng.choice([PERSON, CAR])), rng.integers(0, height), rng.integers(0, width),
                        rng.integers(-2, 3), rng.integers(-3, 4), rng.integers(2, 7),
                        rng.integers(2, 7), rng.integers(0, num_frames),
                        rng.integers(0, num_frames + 3)))
    pairs = []
    for t in range(num_frames - 1):
        shared = rng.permutation(len(objects)) % 9 + 1  # collisions merge some objects
        raw = rng.permutation(len(objects)) + 1
        p, c, n = frame(t, shared), frame(t + 1, shared), frame(t + 1, raw)
        # A few fragments split off the standalone map, and crowd pixels.
        n[rng.random(n.shape) < 0.03] = PERSON * D + 20
        n[rng.random(n.shape) < 0.02] = CAR * D
        pairs.append((p, c, n))
    return pairs


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"memory_frames": 3, "reid_iou": 0.2}, {"mode": "reference"}],
    ids=["clean", "clean-memory", "reference"],
)
def test_tables_equal_the_loop_implementation(kwargs):
    from tests.postprocess.loop_reference import LoopVideoStitcher

    for seed in range(6):
        pairs = _random_scene_pairs(seed, 12)
        new, old = VideoStitcher(**KW, **kwargs), LoopVideoStitcher(**KW, **kwargs)
        first = seed % 2 == 0
        if first:
            np.testing.assert_array_equal(new.first(pairs[0][0]), old.first(pairs[0][0]))
        for t, pair in enumerate(pairs):
            np.testing.assert_array_equal(new.update(*pair), old.update(*pair),
                                          err_msg=f"seed {seed} pair {t}")
        np.testing.assert_array_equal(new.first_frame, old.first_frame)
        assert new.num_tracks == old.num_tracks


def test_pair_stitch_equals_the_loop_implementation():
    from tests.postprocess import loop_reference

    for seed in range(8):
        for _, c, n in _random_scene_pairs(seed, 6):
            np.testing.assert_array_equal(
                two_frame.stitch_pair(c, n, label_divisor=D),
                loop_reference.stitch_pair(c, n, label_divisor=D),
            )
            assert two_frame.pair_matches(c, n, label_divisor=D) == loop_reference.pair_matches(
                c, n, label_divisor=D
            )


@pytest.mark.parametrize(
    "kwargs", [{}, {"memory_frames": 3, "reid_iou": 0.2}, {"mode": "reference"}]
)
def test_saved_state_continues_identically(kwargs):
    pairs = _random_scene_pairs(7, 14)
    whole = VideoStitcher(**KW, **kwargs)
    want = [whole.update_wide(*pair) for pair in pairs]
    head = VideoStitcher(**KW, **kwargs)
    for pair in pairs[:6]:
        head.update_wide(*pair)
    state = {k: np.copy(v) for k, v in head.state_dict().items()}
    tail = VideoStitcher(**KW, **kwargs)
    tail.load_state_dict(state)
    for t, pair in enumerate(pairs[6:], start=6):
        np.testing.assert_array_equal(tail.update_wide(*pair), want[t])
    with pytest.raises(ValueError, match="label_divisor"):
        VideoStitcher(thing_ids=(11,), label_divisor=100).load_state_dict(state)


def test_track_ids_have_no_ceiling_with_wide_ids():
    """Every frame brings 4 new persons; with D = 10 the narrow API stops at id 9, the wide
    one keeps counting, and the class is kept."""
    p0, empty, four = _overflow_pairs()
    stitcher = VideoStitcher(thing_ids=(1,), label_divisor=10, ignore_label=9)
    stitcher.first_wide(p0)
    outs = [stitcher.update_wide(p0 if t == 0 else empty, empty, four) for t in range(40)]
    last = outs[-1]
    assert np.all(last[0, :4] >> 32 == 1) and np.all(last[0, 4] == 0)
    assert (last[0, :4] & 0xFFFFFFFF).tolist() == [159, 160, 161, 162]
    assert stitcher.num_tracks == 162

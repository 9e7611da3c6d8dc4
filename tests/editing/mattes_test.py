"""Soft mattes: alphas sum to 1 and argmax is the hard map; softness 0 is the hard mask; ranks;
tiled full resolution equals untiled; the predictor's raw outputs feed them."""

import numpy as np
import pytest

from vipdl.data.descriptors import SYNTHETIC
from vipdl.editing import mattes, softness
from vipdl.inference import FramePrediction, RawOutputs
from vipdl.postprocess import labels

# Maps below hold wide ids `class << 32 | track`, as the predictor's tracked segments.
D = 1 << labels.TRACK_BITS
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, PERSON, CAR, BICYCLE = range(8)
VOID = SYNTHETIC.ignore_label * D
H, W = 24, 32


def _scene() -> np.ndarray:
    pan = np.full((H, W), ROAD * D, np.int64)
    pan[:8] = SKY * D
    pan[8:12] = BUILDING * D
    pan[6:20, 4:11] = PERSON * D + 3
    pan[10:18, 9:22] = CAR * D + 1  # Overlaps the person.
    pan[14:22, 24:28] = PERSON * D + 5
    pan[2:24, 29] = VOID  # A thin void pole.
    return pan


def _blur(x: np.ndarray, n: int = 2) -> np.ndarray:
    for _ in range(n):
        x = (x + np.roll(x, 1, 0) + np.roll(x, -1, 0) + np.roll(x, 1, 1) + np.roll(x, -1, 1)) / 5
    return x


def _raw(pan: np.ndarray, seed: int = 0, sharpness: float = 4.0) -> RawOutputs:
    """Plausible soft model outputs for a panoptic map: blurred logits, noisy offsets."""
    rng = np.random.default_rng(seed)
    sem = np.where(pan == VOID, ROAD, pan // D)
    logits = np.eye(SYNTHETIC.num_classes)[sem] * sharpness
    logits = _blur(logits) + rng.normal(0, 0.3, logits.shape)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    ys, xs = np.mgrid[:H, :W].astype(np.float32)
    offsets = rng.normal(0, 0.7, (H, W, 2)).astype(np.float32)
    centers = np.zeros((8, 2), np.int32)
    valid = np.zeros(8, bool)
    for k, inst in enumerate(np.unique(pan[np.isin(pan // D, SYNTHETIC.thing_ids)])):
        m = pan == inst
        cy, cx = int(round(ys[m].mean())), int(round(xs[m].mean()))
        offsets[m] += np.stack([cy - ys[m], cx - xs[m]], -1)
        centers[k], valid[k] = (cy, cx), True
    return RawOutputs(
        ids=pan.astype(np.int64), semantic_probs=probs.astype(np.float32),
        center_heatmap=np.zeros((H, W), np.float32), offsets=offsets, centers=centers,
        center_valid=valid)


def _frame(ids: np.ndarray, image: np.ndarray, raw: RawOutputs | None, index: int = 0):
    """A `FramePrediction` whose frame-size segments are `ids` (wide ids [h, w])."""
    segments, segment_map = np.unique(ids, return_inverse=True)
    return FramePrediction(index, segment_map.reshape(ids.shape).astype(np.int32), segments,
                           None, image, SYNTHETIC.label_divisor, raw)


def _prediction(raw: RawOutputs, image: np.ndarray | None = None, index: int = 0):
    if image is None:
        image = np.zeros((H, W, 3), np.uint8)
    scale = image.shape[0] // raw.ids.shape[0]
    return _frame(np.kron(raw.ids, np.ones((scale, scale), np.int64)), image, raw, index)


@pytest.fixture(scope="module")
def raw():
    return _raw(_scene())


def _all(value: float) -> dict:
    return {n: value for n in list(SYNTHETIC.class_names) + ["void"]}


@pytest.mark.parametrize("value", [0.3, 1.0, 2.5, None])
def test_alphas_sum_to_one_and_argmax_is_the_hard_map(raw, value):
    opts = mattes.MatteOptions(softness=None if value is None else _all(value))
    segments, alpha = mattes.working_alphas(_prediction(raw), SYNTHETIC, opts)
    assert alpha.shape == (len(segments), H, W)
    np.testing.assert_allclose(alpha.sum(0), 1.0, atol=2e-6)
    assert alpha.min() >= 0 and alpha.max() <= 1 + 1e-6
    np.testing.assert_array_equal(segments.ids[alpha.argmax(0)], raw.ids)
    assert segments.names[-1] == "void" and segments.ids[-1] == VOID
    # The mattes are soft somewhere (the border band), not one-hot everywhere.
    assert (alpha.max(0) < 0.95).mean() > 0.05


def test_argmax_holds_where_the_model_disagrees_with_the_map():
    # The map says person where the probabilities say road: the hard segment is lifted.
    pan = _scene()
    raw = _raw(pan)
    wrong = pan.copy()
    wrong[20:24, 0:6] = PERSON * D + 3
    raw = RawOutputs(**{**raw.__dict__, "ids": wrong})
    segments, alpha = mattes.working_alphas(_prediction(raw), SYNTHETIC)
    np.testing.assert_array_equal(segments.ids[alpha.argmax(0)], wrong)
    np.testing.assert_allclose(alpha.sum(0), 1.0, atol=2e-6)


def test_softness_zero_reproduces_the_hard_masks(raw):
    opts = mattes.MatteOptions(softness=_all(0.0))
    segments, alpha = mattes.working_alphas(_prediction(raw), SYNTHETIC, opts)
    hard = segments.ids[:, None, None] == raw.ids[None]
    np.testing.assert_array_equal(alpha, hard.astype(np.float32))
    ranks = mattes.frame_mattes(_prediction(raw), SYNTHETIC, opts)
    for s, name in enumerate(segments.names):
        np.testing.assert_array_equal(ranks.matte(name), hard[s].astype(np.float32))


def test_softness_one_keeps_the_model_distribution(raw):
    segments, alpha = mattes.working_alphas(_prediction(raw), SYNTHETIC,
                                            mattes.MatteOptions(softness=_all(1.0)))
    _, index = mattes._segments_and_index(raw, SYNTHETIC, mattes.MatteOptions())
    q = np.asarray(mattes.model_distribution(raw, SYNTHETIC, segments, index, 2.0))
    np.testing.assert_allclose(alpha, q[: len(segments)], atol=2e-6)


def test_softer_classes_blend_wider(raw):
    def border_mass(value):
        opts = mattes.MatteOptions(softness={**_all(0.0), "person": value})
        segments, alpha = mattes.working_alphas(_prediction(raw), SYNTHETIC, opts)
        return alpha[segments.names.index("person/3")][raw.ids != PERSON * D + 3].sum()

    masses = [border_mass(v) for v in (0.0, 0.5, 1.0, 3.0)]
    assert masses[0] == 0.0
    assert masses == sorted(masses) and masses[-1] > masses[1] > 0
    # A crisp class stays crisp where it meets another crisp class (road / sky: both 0).
    opts = mattes.MatteOptions(softness={**_all(0.0), "person": 3.0}, blend_radius=3)
    segments, alpha = mattes.working_alphas(_prediction(raw), SYNTHETIC, opts)
    assert set(np.unique(alpha[segments.names.index("sky")][:, 14:20])) <= {0.0, 1.0}


def test_ranks_are_sorted_normalised_and_rank0_is_the_hard_map(raw):
    m = mattes.frame_mattes(_prediction(raw), SYNTHETIC, mattes.MatteOptions(k=3))
    assert m.rank_ids.shape == (3, H, W) and m.rank_coverage.dtype == np.float32
    np.testing.assert_allclose(m.rank_coverage.sum(0), 1.0, atol=3 / 2**17)
    np.testing.assert_array_equal(m.rank_coverage * 2**16, np.round(m.rank_coverage * 2**16))
    faint = (m.rank_coverage > 0) & (m.rank_coverage < mattes.MatteOptions().min_alpha - 2**-16)
    assert not faint.any()  # Tails below min_alpha are cut.
    assert (np.diff(m.rank_coverage, axis=0) <= 0).all()
    np.testing.assert_array_equal(m.hard(), raw.ids)
    assert ((m.rank_ids >= 0) == (m.rank_coverage > 0)).all()
    # K larger than the number of segments: the extra ranks are empty.
    big = mattes.frame_mattes(_prediction(raw), SYNTHETIC, mattes.MatteOptions(k=12))
    assert big.rank_ids.shape[0] == 12 and (big.rank_ids[-1] == -1).all()


def _frame_image(seed: int = 1) -> np.ndarray:
    """A 2x frame whose colours follow the scene (so the guide has edges), plus noise."""
    rng = np.random.default_rng(seed)
    pan = np.kron(_scene(), np.ones((2, 2), np.int64))
    colour = (np.asarray(SYNTHETIC.colormap + ((0, 0, 0),) * 256, np.float32)[
        np.minimum(pan // D, 255)])
    colour += (pan % D)[..., None] * 20.0 + rng.normal(0, 6, colour.shape)
    return np.clip(colour, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("upsample", ["guided", "bilinear"])
def test_tiled_full_resolution_equals_untiled(raw, upsample):
    image = _frame_image()
    pred = _prediction(raw, image)
    one = mattes.frame_mattes(pred, SYNTHETIC, mattes.MatteOptions(
        full_res=True, upsample=upsample, tile=4096))
    tiled = mattes.frame_mattes(pred, SYNTHETIC, mattes.MatteOptions(
        full_res=True, upsample=upsample, tile=20))
    assert one.shape == tiled.shape == (2 * H, 2 * W)
    np.testing.assert_allclose(tiled.rank_coverage.sum(0), 1.0, atol=4 / 2**17)
    for name in one.segments.names:
        # Equal up to one coverage step (a last-bit difference can round the other way).
        np.testing.assert_allclose(tiled.matte(name), one.matte(name), atol=2**-16 + 1e-7)


def test_full_resolution_with_softness_zero_is_binary(raw):
    m = mattes.frame_mattes(_prediction(raw, _frame_image()), SYNTHETIC,
                            mattes.MatteOptions(full_res=True, softness=_all(0.0), tile=24))
    assert set(np.unique(m.rank_coverage[0])) == {1.0}
    assert (m.rank_ids[1:] == -1).all()
    # Away from borders the refined hard map is the nearest-neighbour upsampled one.
    upsampled = np.kron(raw.ids, np.ones((2, 2), np.int64))
    assert (m.hard() == upsampled).mean() > 0.9


def test_full_resolution_guided_follows_image_edges():
    # Working map 12 x 16 with a vertical border between road and building at column 7.5; the
    # frame (4x) has its colour edge two pixels to the right of where that border lands: the
    # guided matte moves to the image edge, bilinear upsampling cannot.
    pan = np.full((12, 16), ROAD * D, np.int64)
    pan[:, 8:] = BUILDING * D
    logits = np.eye(SYNTHETIC.num_classes)[pan // D] * 3.0
    logits = _blur(logits, 1)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    raw = RawOutputs(pan, probs.astype(np.float32), np.zeros((12, 16), np.float32),
                     np.zeros((12, 16, 2), np.float32), np.zeros((1, 2), np.int32),
                     np.zeros(1, bool))
    image = np.full((48, 64, 3), 40, np.uint8)
    image[:, 34:] = 200
    pred = _frame(np.kron(pan, np.ones((4, 4), np.int64)), image, raw)
    opts = dict(full_res=True, softness=_all(1.0))
    guided = mattes.frame_mattes(pred, SYNTHETIC, mattes.MatteOptions(**opts)).matte("road")
    linear = mattes.frame_mattes(pred, SYNTHETIC, mattes.MatteOptions(**opts, upsample="bilinear"))
    linear = linear.matte("road")
    # The 0.5 crossing: the model's border maps to column 7.5 * 63 / 15 = 31.5.
    assert ((guided < 0.5).argmax(1) == 34).all()
    assert ((linear < 0.5).argmax(1) == 32).all()


def test_predictions_without_raw_outputs_are_refused(raw):
    pred = _frame(raw.ids, np.zeros((H, W, 3), np.uint8), None)
    with pytest.raises(ValueError, match="return_raw=True"):
        mattes.frame_mattes(pred, SYNTHETIC)


def test_bad_options():
    with pytest.raises(ValueError, match="k must be"):
        mattes.MatteOptions(k=0)
    with pytest.raises(ValueError, match="upsample"):
        mattes.MatteOptions(upsample="nearest")
    with pytest.raises(ValueError, match="min_alpha"):
        mattes.MatteOptions(min_alpha=0.5)
    with pytest.raises(ValueError, match="unknown class 'hair'"):
        softness.softness_table(SYNTHETIC.class_names, {"hair": 1.0})


def test_softness_parsing_and_defaults():
    assert softness.parse_softness("person=1.5, traffic light=0") == {
        "person": 1.5, "traffic light": 0.0}
    for bad, match in (("person", "CLASS=VALUE"), ("person=x", "not a number"),
                       ("person=-1", ">= 0"), ("=2", "CLASS=VALUE")):
        with pytest.raises(ValueError, match=match):
            softness.parse_softness(bad)
    table = softness.softness_table(SYNTHETIC.class_names, {"Person": 2, "VOID": 0.25})
    assert table[PERSON] == 2 and table[-1] == 0.25
    crisp = softness.CRISP_SOFTNESS
    assert table[ROAD] == table[SKY] == table[BUILDING] == crisp < table[VEGETATION]
    assert table[CAR] == softness.OTHER_SOFTNESS
    assert mattes.segment_name(PERSON * D + 7, SYNTHETIC) == "person/7"
    assert mattes.segment_name(ROAD * D, SYNTHETIC) == "road"
    assert mattes.folder_name("traffic light") == "traffic-light"
    assert mattes.folder_name("person/7") == "person-7"

"""Tests of colouring and overlays (vipdl/visualize.py)."""

from __future__ import annotations

import numpy as np
import pytest

from vipdl import visualize
from vipdl.data.descriptors import SYNTHETIC

D = SYNTHETIC.label_divisor
ROAD, SKY, PERSON, CAR = 0, 4, 5, 6
VOID = SYNTHETIC.void_label


def _scene() -> np.ndarray:
    pan = np.full((40, 60), ROAD * D, np.int32)
    pan[:8] = SKY * D
    pan[10:30, 5:25] = CAR * D + 1
    pan[12:34, 40:50] = CAR * D + 2
    pan[36:, :] = VOID
    return pan


def test_track_colors_are_consistent_and_distinct():
    ids = np.array([CAR * D + 1, CAR * D + 2, CAR * D + 1, ROAD * D, CAR * D, VOID, 99 * D])
    colors = visualize.track_colors(ids, descriptor=SYNTHETIC)
    assert colors.dtype == np.uint8 and colors.shape == (7, 3)
    np.testing.assert_array_equal(colors[0], colors[2])  # Same track, same colour.
    assert (colors[0] != colors[1]).any()  # Two cars differ.
    np.testing.assert_array_equal(colors[3], SYNTHETIC.colormap[ROAD])  # Stuff: class colour.
    np.testing.assert_array_equal(colors[4], SYNTHETIC.colormap[CAR])  # Crowd: class colour.
    np.testing.assert_array_equal(colors[5], visualize.VOID_COLOR)
    np.testing.assert_array_equal(colors[6], visualize.VOID_COLOR)  # Unknown class.
    # Jitter stays within the bound around the class colour.
    base = np.asarray(SYNTHETIC.colormap[CAR])
    assert (np.abs(colors[:2].astype(int) - base) <= 60).all()
    # Many tracks of one class: colours are mostly distinct (a hash, not a palette of 3).
    many = visualize.track_colors(CAR * D + np.arange(1, 101), descriptor=SYNTHETIC)
    assert len({tuple(c) for c in many}) > 90


def test_colorize_panoptic_is_frame_independent():
    pan = _scene()
    image = visualize.colorize_panoptic(pan, descriptor=SYNTHETIC)
    assert image.shape == (40, 60, 3) and image.dtype == np.uint8
    # The same track in another frame, alone and elsewhere, keeps its colour.
    other = np.full((10, 10), CAR * D + 2, np.int32)
    np.testing.assert_array_equal(
        visualize.colorize_panoptic(other, descriptor=SYNTHETIC)[0, 0], image[20, 45]
    )
    with pytest.raises(ValueError, match="height, width"):
        visualize.colorize_panoptic(pan[None], descriptor=SYNTHETIC)


def test_segment_anchor_lies_inside_non_convex_segment():
    pan = np.zeros((30, 30), np.int32)
    pan[5:25, 5:25] = CAR * D + 1
    pan[10:20, 10:20] = 0  # A ring: its centroid is in the hole.
    ids, areas, ys, xs = visualize.segment_anchors(pan)
    k = list(ids).index(CAR * D + 1)
    assert pan[ys[k], xs[k]] == CAR * D + 1
    assert areas[k] == 400 - 100


def test_overlay_blends_and_labels():
    pan = _scene()
    frame = np.full((40, 60, 3), 90, np.uint8)
    plain = visualize.overlay(
        frame, pan, descriptor=SYNTHETIC, alpha=0.0, draw_labels=False, draw_boundaries=False
    )
    np.testing.assert_array_equal(plain, frame)
    full = visualize.overlay(
        frame, pan, descriptor=SYNTHETIC, alpha=1.0, draw_labels=False, draw_boundaries=False
    )
    colors = visualize.colorize_panoptic(pan, descriptor=SYNTHETIC)
    np.testing.assert_array_equal(full[pan != VOID], colors[pan != VOID])
    np.testing.assert_array_equal(full[pan == VOID], frame[pan == VOID])  # Void keeps the frame.
    edges = visualize.overlay(frame, pan, descriptor=SYNTHETIC, alpha=1.0, draw_labels=False)
    boundary = visualize.segment_boundaries(pan)
    assert (edges[boundary] == 255).all() and boundary.sum() > 0
    labelled = visualize.overlay(frame, pan, descriptor=SYNTHETIC, alpha=1.0, min_label_area=50)
    changed = (labelled != edges).any(-1)
    assert changed[10:30, 5:25].any() and changed[12:34, 40:50].any()  # "car 1", "car 2".
    assert not changed[36:].any()  # No label on void.


def test_overlay_rejects_bad_inputs():
    pan = _scene()
    with pytest.raises(ValueError, match="does not match"):
        visualize.overlay(np.zeros((40, 61, 3), np.uint8), pan, descriptor=SYNTHETIC)
    with pytest.raises(ValueError, match="uint8"):
        visualize.overlay(np.zeros((40, 60, 3), np.float32), pan, descriptor=SYNTHETIC)
    with pytest.raises(ValueError, match="alpha"):
        visualize.overlay(np.zeros((40, 60, 3), np.uint8), pan, descriptor=SYNTHETIC, alpha=2)


def test_segment_label_text():
    assert visualize.segment_label(CAR * D + 3, SYNTHETIC) == "car 3"
    assert visualize.segment_label(SKY * D, SYNTHETIC) == "sky"
    assert visualize.segment_label(VOID, SYNTHETIC) is None


def test_depth_to_rgb():
    rgb = visualize.depth_to_rgb(np.array([[0.0, 44.0, 88.0, 200.0]]), max_depth=88.0)
    assert rgb.shape == (1, 4, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 2], rgb[0, 3])  # Clipped at max_depth.
    assert (rgb[0, 0] != rgb[0, 2]).any()


def test_contact_sheet_tiles_frames_in_rows():
    frames = [np.full((4, 5, 3), 10 * (i + 1), np.uint8) for i in range(5)]
    sheet = visualize.contact_sheet(frames, columns=3, gap=1)
    assert sheet.shape == (2 * 4 + 1, 3 * 5 + 2, 3) and sheet.dtype == np.uint8
    np.testing.assert_array_equal(sheet[:4, :5], frames[0])
    np.testing.assert_array_equal(sheet[5:9, 6:11], frames[4])  # Row 2, column 2.
    assert (sheet[4] == 255).all() and (sheet[5:, 12:] == 255).all()  # Gap and empty cell.
    assert visualize.contact_sheet(frames[:2], columns=3).shape == (4, 12, 3)
    with pytest.raises(ValueError, match="at least one frame"):
        visualize.contact_sheet([])
    with pytest.raises(ValueError, match="frame 1 is"):
        visualize.contact_sheet([frames[0], np.zeros((4, 6, 3), np.uint8)])

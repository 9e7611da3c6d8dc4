"""VPQ windows: hand-made videos, grouping by video id, window options."""

import json

import numpy as np
import pytest

from vipdl.cli import eval_vpq
from vipdl.data.descriptors import CITYSCAPES_VPS
from vipdl.evaluation import readers, vpq, writers

KW = dict(num_classes=19, thing_ids=tuple(range(11, 19)), label_divisor=1000, ignore_label=255)


def _video(num_frames, swap_at=None):
    """A road with two cars; the prediction swaps the cars' ids from frame `swap_at` on."""
    gts, preds = [], []
    for t in range(num_frames):
        gt = np.full((4, 8), 0, np.int64)  # road = class 0, instance 0
        gt[:2, :3] = 13001
        gt[2:, 5:] = 13002
        pred = gt.copy()
        if swap_at is not None and t >= swap_at:
            pred = np.where(gt == 13001, 13002, np.where(gt == 13002, 13001, gt))
        gts.append(gt)
        preds.append(pred)
    return gts, preds


def test_id_swap_lowers_vpq_for_k_above_0_only():
    result = vpq.evaluate_arrays([_video(4, swap_at=2)], annotation_stride=5, **KW)
    per_k = result.summary()["per_k"]
    assert per_k["0"]["VPQ"] == 100.0
    # k = 5: windows (0,1), (1,2), (2,3); the one crossing the swap has IoU 1/2 for each car
    # tube (not > 0.5): 2 FP + 2 FN. Cars: TP 4, FP 2, FN 2 -> PQ 4 / 6; road PQ 1.
    car = per_k["5"]["per_class"]["13"]
    assert (car["tp"], car["fp"], car["fn"]) == (4, 2, 2)
    assert per_k["5"]["VPQ"] == pytest.approx(100 * (1 + 4 / 6) / 2)
    assert per_k["5"]["VPQ_th"] == pytest.approx(100 * 4 / 6)
    # k = 15: the single window spans the swap, tube IoU 2/4 -> no match.
    assert per_k["15"]["per_class"]["13"]["tp"] == 0
    assert per_k["15"]["VPQ_th"] == 0.0
    no_swap = vpq.evaluate_arrays([_video(4)], annotation_stride=5, **KW).summary()
    assert no_swap["VPQ"] == 100.0


def test_windows_longer_than_a_video_contribute_nothing():
    result = vpq.evaluate_arrays([_video(2), _video(3)], window_sizes=(1, 3), **KW)
    # n = 1: 5 windows; n = 3: only the 3-frame video has one window.
    assert result.stats[1].tp[0] == 5 and result.stats[3].tp[0] == 1


@pytest.fixture(scope="module")
def uneven_set(tmp_path_factory, fixtures_module):
    """Videos of 4, 7 and 5 frames written in shuffled order."""
    root = tmp_path_factory.mktemp("uneven")
    rng = np.random.default_rng(3)
    videos = [fixtures_module.random_video(rng, n) for n in (4, 7, 5)]
    frames = []
    for v, (gts, preds) in enumerate(videos):
        for t, (g, p) in enumerate(zip(gts, preds)):
            frames.append((f"{v:04d}_{t:04d}_city_000000_{t:06d}", g, p))
    order = rng.permutation(len(frames))
    writers.write_vps_ground_truth(
        root, "val", [(frames[i][0], frames[i][1]) for i in order], descriptor=CITYSCAPES_VPS
    )
    with writers.VpsPredictionWriter(
        root / "pred", label_divisor=1000, ignore_label=255, thing_ids=range(11, 19)
    ) as w:
        for i in order[::-1]:  # pred.json in a different order from the GT JSON.
            w.add(frames[i][0], frames[i][2])
    return root, videos


def test_videos_grouped_by_id_not_by_six(uneven_set):
    root, videos = uneven_set
    ds = readers.read_vps(
        root / "panoptic_gt_val_city_vps.json", root / "val/panoptic_video", root / "pred"
    )
    assert [len(f) for f in ds.videos.values()] == [4, 7, 5]
    from_files = vpq.evaluate_vps(ds, window_sizes=(1, 2, 4))
    in_memory = vpq.evaluate_arrays(videos, window_sizes=(1, 2, 4), **KW)
    for n in (1, 2, 4):
        a, b = from_files.stats[n], in_memory.stats[n]
        assert (a.tp.tolist(), a.fp.tolist(), a.fn.tolist()) == (
            b.tp.tolist(),
            b.fp.tolist(),
            b.fn.tolist(),
        )
        np.testing.assert_allclose(a.iou, b.iou, atol=1e-12)


def test_cli_window_options_and_plot(uneven_set, tmp_path):
    root, _ = uneven_set
    out, plot = tmp_path / "r.json", tmp_path / "vpq.png"
    argv = [
        "--gt-json",
        str(root / "panoptic_gt_val_city_vps.json"),
        "--gt-dir",
        str(root / "val/panoptic_video"),
        "--pred-dir",
        str(root / "pred"),
        "--out",
        str(out),
        "--window-sizes",
        "1,3",
        "--annotation-stride",
        "2",
        "--plot",
        str(plot),
        "--no-progress",
        "--workers",
        "1",
        "--per-class",
    ]
    assert eval_vpq.main(argv) == 0
    summary = json.loads(out.read_text())
    assert list(summary["per_k"]) == ["0", "4"]
    assert summary["VPQ"] == pytest.approx(
        (summary["per_k"]["0"]["VPQ"] + summary["per_k"]["4"]["VPQ"]) / 2
    )
    assert plot.stat().st_size > 1000

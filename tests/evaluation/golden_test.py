"""Parity with the official scripts: golden numbers produced by running them on the fixtures.

See docs/evaluation.md ("Golden numbers") for how `golden_official.json` was produced. The
fixtures are regenerated here from the same seeds (tests/evaluation/fixtures.py).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from vipdl.cli import eval_dvpq, eval_stq, eval_vpq
from vipdl.evaluation import dvpq, readers, stq, vpq

GOLDEN = json.loads(Path(__file__).with_name("golden_official.json").read_text())
TOL = 1e-6  # Percentage points (the brief's parity tolerance); observed differences ~1e-14.


@pytest.fixture(scope="module", params=[0, 1])
def vps_set(request, tmp_path_factory, fixtures_module):
    root = tmp_path_factory.mktemp(f"vps{request.param}")
    return request.param, fixtures_module.make_vps(root, request.param)


def test_vpq_matches_official(vps_set):
    seed, f = vps_set
    golden = GOLDEN["vpq"][str(seed)]
    result = vpq.evaluate_vps(readers.read_vps(f["gt_json"], f["gt_dir"], f["pred_dir"]))
    summary = result.summary()
    for n, g in golden["per_n"].items():
        stats = result.stats[int(n)]
        active = {str(c) for c in np.flatnonzero(stats.tp + stats.fp + stats.fn)}
        assert active == set(g["per_class"])
        for c, (iou, tp, fp, fn) in g["per_class"].items():
            c = int(c)
            assert (stats.tp[c], stats.fp[c], stats.fn[c]) == (tp, fp, fn), (n, c)
            assert stats.iou[c] == pytest.approx(iou, abs=1e-12)
        k = summary["per_k"][str((int(n) - 1) * 5)]
        for key in ("VPQ", "VPQ_th", "VPQ_st"):
            assert k[key] == pytest.approx(g[key], abs=TOL)
    for key, value in zip(("VPQ", "VPQ_th", "VPQ_st"), golden["final"]):
        assert summary[key] == pytest.approx(value, abs=TOL)


def test_vpq_cli_json_matches_official(vps_set, tmp_path, capsys):
    seed, f = vps_set
    out = tmp_path / "result.json"
    argv = ["--gt-json", str(f["gt_json"]), "--gt-dir", str(f["gt_dir"])]
    argv += ["--pred-dir", str(f["pred_dir"]), "--out", str(out), "--workers", "2", "--no-progress"]
    assert eval_vpq.main(argv) == 0
    summary = json.loads(out.read_text())
    golden = GOLDEN["vpq"][str(seed)]
    assert summary["VPQ"] == pytest.approx(golden["final"][0], abs=TOL)
    per_class = summary["per_k"]["15"]["per_class"]
    for c, (_, tp, fp, fn) in golden["per_n"]["4"]["per_class"].items():
        assert [per_class[c][k] for k in ("tp", "fp", "fn")] == [tp, fp, fn]
    assert f"{golden['final'][0]:.2f}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def dvps_set(tmp_path_factory, fixtures_module):
    return fixtures_module.make_dvps(tmp_path_factory.mktemp("dvps"), 0)


def test_dvpq_matches_official(dvps_set):
    f = dvps_set
    sequences = readers.read_dvps(f["gt_dir"], f["pred_dir"], f["depth_dir"])
    result = dvpq.evaluate_dvps(sequences, dvpq.DvpqOptions(depth_thresholds=(0, 0.5, 0.25, 0.1)))
    for key, g in GOLDEN["dvpq"]["0"].items():
        thr, n = key.split("/")
        stats = result.runs[float(thr)].stats[int(n)]
        assert stats.tp[:19].tolist() == g["tp"], key
        assert stats.fp[:19].tolist() == g["fp"], key
        assert stats.fn[:19].tolist() == g["fn"], key
        np.testing.assert_allclose(stats.iou[:19], g["iou"], rtol=0, atol=1e-12)
        if float(thr) > 0:  # The official script computes AbsRel only for thresholds > 0.
            assert result.abs_rel == pytest.approx(g["abs_rel"], abs=1e-12)


def test_dvpq_cli(dvps_set, tmp_path):
    f = dvps_set
    out = tmp_path / "d.json"
    argv = ["--gt-dir", str(f["gt_dir"]), "--pred-dir", str(f["pred_dir"])]
    argv += ["--depth-dir", str(f["depth_dir"]), "--out", str(out), "--no-progress"]
    argv += ["--plot", str(tmp_path / "d.png")]
    assert eval_dvpq.main(argv) == 0
    summary = json.loads(out.read_text())
    assert set(summary["runs"]) == {"0", "0.5", "0.25", "0.1"}
    g = GOLDEN["dvpq"]["0"]["0.25/2"]
    per_class = summary["runs"]["0.25"]["5"]["per_class"]
    assert [per_class[str(c)]["tp"] for c in range(19)] == g["tp"]
    assert summary["abs_rel"] == pytest.approx(g["abs_rel"], abs=1e-12)
    # DVPQ = mean over k and thresholds > 0; VPQ = the threshold-0 run's mean over k.
    runs = summary["runs"]
    values = [runs[t][k]["DVPQ"] for t in ("0.5", "0.25", "0.1") for k in ("0", "5", "10", "15")]
    assert summary["DVPQ"] == pytest.approx(np.mean(values), abs=1e-9)
    plain = [runs["0"][k]["DVPQ"] for k in ("0", "5", "10", "15")]
    assert summary["VPQ"] == pytest.approx(np.mean(plain), abs=1e-9)
    assert summary["per_threshold"]["0"]["DVPQ"] == summary["VPQ"]
    assert (tmp_path / "d.png").stat().st_size > 1000


@pytest.fixture(scope="module", params=[0, 1])
def step_set(request, tmp_path_factory, fixtures_module):
    root = tmp_path_factory.mktemp(f"step{request.param}")
    return request.param, fixtures_module.make_step(root, request.param)


def test_stq_matches_official(step_set, tmp_path):
    seed, f = step_set
    golden = GOLDEN["stq"][str(seed)]
    summary = stq.evaluate_step(readers.read_step(f["gt_dir"], f["pred_dir"])).summary()
    assert summary["STQ"] == pytest.approx(golden["STQ"], abs=1e-12)
    assert summary["AQ"] == pytest.approx(golden["AQ"], abs=1e-12)
    assert summary["SQ"] == pytest.approx(golden["IoU"], abs=1e-12)
    seqs = sorted(summary["per_seq"])
    for i, seq in enumerate(seqs):
        assert summary["per_seq"][seq]["STQ"] == pytest.approx(golden["STQ_per_seq"][i], abs=1e-12)
        assert summary["per_seq"][seq]["AQ"] == pytest.approx(golden["AQ_per_seq"][i], abs=1e-12)
        assert summary["per_seq"][seq]["SQ"] == pytest.approx(golden["IoU_per_seq"][i], abs=1e-12)
    out = tmp_path / "s.json"
    argv = ["--gt-dir", str(f["gt_dir"]), "--pred-dir", str(f["pred_dir"]), "--out", str(out)]
    assert eval_stq.main(argv + ["--no-progress", "--workers", "1"]) == 0
    assert json.loads(out.read_text())["STQ"] == pytest.approx(golden["STQ"], abs=1e-12)

"""The README's first command, `bash scripts/demo.sh`, end to end on a short schedule (slow).

The full demo trains for about ten minutes; here the same script runs with a handful of steps
(extra arguments go to the trainer), which exercises every stage: dataset generation from the
config, TFDS conversion, training with evaluation, `scripts/evaluate.py`, `predict_video.py` with
its overlay GIF and picture, the final summary, and a rerun that reuses the data and resumes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vipdl import video_io

REPO = Path(__file__).resolve().parent.parent
STEPS = [
    "--config.train.num_steps=4",
    "--config.train.eval_every_steps=4",
    "--config.train.checkpoint_every_steps=4",
    "--config.train.log_every_steps=2",
    "--config.train.image_every_steps=0",
]


def _run_demo(out: Path) -> str:
    env = {**os.environ, "DEMO_OUT": str(out), "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # The demo runs on the machine's real devices.
    proc = subprocess.run(
        ["bash", "scripts/demo.sh", *STEPS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


@pytest.mark.slow
def test_demo_script_end_to_end(tmp_path):
    out = tmp_path / "demo"
    stdout = _run_demo(out)
    result = json.loads((out / "eval.json").read_text())
    assert result["num_videos"] == 8 and set(result["per_k"]) == {"0", "1", "2", "3"}
    assert 0.0 <= result["VPQ"] <= 100.0 and 0.0 <= result["STQ"]["STQ"] <= 1.0
    assert len(list(video_io.read_frames(out / "overlay.gif"))) == 6
    sheet = np.asarray(Image.open(out / "prediction" / "overlay_frames.png"))
    assert sheet.shape == (2 * 128 + 2, 3 * 256 + 4, 3)
    assert (out / "prediction" / "masks" / "tracks.json").is_file()
    for expected in ("TensorBoard", "eval.json", "overlay.gif", "VPQ"):
        assert expected in stdout, stdout[-2000:]

    # A rerun reuses the generated and prepared data and resumes the finished run.
    stdout = _run_demo(out)
    assert "(already generated)" in stdout and "(already prepared)" in stdout
    assert json.loads((out / "eval.json").read_text())["VPQ"] == result["VPQ"]

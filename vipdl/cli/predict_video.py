"""Run a trained model on a video file or image folder and write tracked panoptic results.

    vipdl-predict-video --workdir RUN --input video.mp4 --output OUT \
        [--vps] [--step] [--overlay OUT/overlay.mp4] [--masks] [--depth] [--sheet N] \
        [--mattes] [--cryptomatte] [--matte-k 4] [--softness person=1.5,car=0.5] [--full-res] \
        [--tracker vip|iou] [--batch-size N] [--on-bad-frame stop|skip|repeat|keep] \
        [--resume | --overwrite]
    vipdl-predict-video --config configs/synthetic.py --checkpoint RUN/checkpoints ...
    vipdl-predict-video --export EXPORT_DIR ...       # a StableHLO export (scripts/export.py)

Outputs (any combination; with none chosen: --vps and an overlay video in OUT):
  --vps      OUT/vps/pan_pred/<video>_<frame>.png + OUT/vps/pred.json, the Cityscapes-VPS
             prediction layout (scored by scripts/eval_vpq.py); up to 16.7 million tracks
  --step     OUT/step/<video>/<frame>.png, the KITTI-STEP layout (scripts/eval_stq.py); track
             ids up to 65535
  --overlay  an mp4 or gif with track-consistent colours, boundaries and class/id labels
  --masks    OUT/masks/<class>-<track>/<frame>.png, one binary mask per segment and frame (0/255,
             frames where the segment is absent have no file) + OUT/masks/tracks.json
  --depth    OUT/depth/<frame>.png, uint16 metres * 256 (models with a depth head)
  --sheet N  OUT/overlay_frames.png, the first N overlay frames tiled three per row (a picture
             for docs; the demo's README figure)
  --mattes   OUT/mattes/<class>-<track>/<frame>.png, soft 16-bit alpha mattes per segment
             (docs/editing.md) + OUT/mattes/tracks.json; --cryptomatte adds
             OUT/mattes/cryptomatte/<frame>.exr (Nuke, Resolve/Fusion, Blender, After Effects);
             --matte-k ranked segments per pixel, --softness per-class softness, --full-res
             mattes at the input's resolution (edge-aware upsampling) instead of the model's
Files are named by the input frame index. Track ids have no upper limit (docs/inference.md).

Nothing is lost when a run stops: every frame's files are written as soon as it is done (each
file atomically) and OUT/progress.json says how far it got. On Ctrl-C, SIGTERM, a bad frame or an
error, everything up to the last finished frame stays in OUT, the message says where the run
stopped, and `--resume` continues it from the next frame with the same track ids (the tracking
state is kept in OUT/.resume, saved every --save-every frames and when the run stops).
Bad frames (frames the decoder reports as damaged or cannot decode, unreadable images) are
reported by index; --on-bad-frame says what to do: stop (default, keeping what was written),
skip them, repeat the previous frame, or keep damaged frames as decoded.

An existing non-empty OUT (or overlay file) is refused unless --overwrite (which deletes it first)
or --resume. Compiled programs are cached (docs/inference.md#start-up). Exit code 1 on bad input
or a stop at a bad frame, 130 / 143 when interrupted by Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from vipdl import video_io
from vipdl.cli import console

PROGRESS_FILE = "progress.json"
RESUME_DIR = ".resume"
STATE_FILE = "state.npz"
_MANIFEST_VERSION = 1
_MAX_LISTED_BAD_FRAMES = 100


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vipdl-predict-video",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    model = p.add_argument_group("model")
    model.add_argument("--workdir", help="training workdir (config.json + checkpoints)")
    model.add_argument("--config", help="config file (.py with get_config(), or .json); "
                       "'file.py:arg' passes arg to get_config")
    model.add_argument("--checkpoint", help="checkpoint dir (default: the workdir)")
    model.add_argument("--which", choices=("latest", "best"), default="latest")
    model.add_argument("--export", help="a StableHLO export (scripts/export.py) instead of a "
                       "workdir: no model code or checkpoint needed")
    p.add_argument("--input", required=True, help="video file (mp4, avi, ...), image folder or image")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--vps", action="store_true", help="Cityscapes-VPS prediction layout")
    p.add_argument("--step", action="store_true", help="KITTI-STEP prediction layout")
    p.add_argument("--overlay", help="overlay video path (.mp4 or .gif)")
    p.add_argument("--masks", action="store_true", help="one binary PNG per segment per frame")
    p.add_argument("--sheet", type=int, default=0, metavar="N",
                   help="also write OUT/overlay_frames.png: the first N overlay frames tiled "
                   "three per row")
    p.add_argument("--depth", action="store_true", help="depth PNGs (uint16, metres * 256)")
    edit = p.add_argument_group("editing mattes (docs/editing.md)")
    edit.add_argument("--mattes", action="store_true", help="16-bit PNG alpha per segment")
    edit.add_argument("--cryptomatte", action="store_true", help="Cryptomatte EXR per frame")
    edit.add_argument("--matte-k", type=int, default=4, help="segments kept per pixel")
    edit.add_argument("--softness", default="", metavar="CLASS=T,...",
                      help="per-class softness (0 = hard, 1 = model probabilities)")
    edit.add_argument("--full-res", action="store_true",
                      help="mattes at the input resolution (guided upsampling)")
    p.add_argument("--video-id", help="video name in output file names (default: input name)")
    p.add_argument("--tracker", choices=("vip", "iou"), help="default: from the model type")
    p.add_argument("--stitching-mode", choices=("clean", "reference"), default="clean")
    p.add_argument("--batch-size", type=int, default=1, help="frames per device call")
    p.add_argument("--fps", type=float, help="overlay frame rate (default: the input's, or 10)")
    p.add_argument("--on-bad-frame", choices=video_io.BAD_FRAME_POLICIES, default="stop",
                   help="frames the decoder reports as damaged or cannot decode: stop (keeping "
                   "what was written), skip them, repeat the previous frame, or keep damaged "
                   "ones as decoded (default: stop)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --output from its next frame")
    p.add_argument("--save-every", type=int, default=100, metavar="N",
                   help="save the tracking state for --resume every N frames (default 100)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


@dataclasses.dataclass(frozen=True)
class Outputs:
    """Which results to write, and where."""

    directory: Path
    vps: bool = False
    step: bool = False
    overlay: Path | None = None
    masks: bool = False
    depth: bool = False
    video_id: str = "video"
    fps: float | None = None
    sheet_frames: int = 0
    mattes: Any = None  # vipdl.editing.MatteOptions: write soft mattes
    matte_pngs: bool = True
    cryptomatte: bool = False


def default_video_id(input_path: str | os.PathLike) -> str:
    """A file-name-safe video name; no underscores (the VPS layout splits ids on them)."""
    name = Path(input_path).resolve().stem or "video"
    return re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-") or "video"


def check_output_dir(directory: Path, *, overwrite: bool, resume: bool = False) -> None:
    """Refuses an existing non-empty output directory unless `overwrite` or `resume`, and a
    `resume` without an interrupted run there."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"--output {directory} exists and is not a directory")
    if resume:
        if overwrite:
            raise ValueError("--resume continues the run in --output; it cannot be combined "
                             "with --overwrite")
        manifest = read_progress(directory)
        if manifest.get("complete"):
            raise ValueError(f"{directory}: the run there is complete; nothing to resume")
        return
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        hint = ""
        if (directory / PROGRESS_FILE).is_file() and not read_progress(directory).get("complete"):
            hint = " or --resume to continue the interrupted run there"
        raise FileExistsError(
            f"output directory {directory} already holds results; pass --overwrite to replace "
            f"them{hint}"
        )


def read_progress(directory: Path) -> dict[str, Any]:
    """The progress manifest of an output directory."""
    path = Path(directory) / PROGRESS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} holds no vipdl-predict-video run "
                                "to resume")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None
    if manifest.get("version") != _MANIFEST_VERSION:
        raise ValueError(f"{path}: unknown manifest version {manifest.get('version')!r}")
    return manifest


def _mask_folder(semantic: int, track: int, descriptor) -> str:
    name = (descriptor.class_names[semantic] if 0 <= semantic < descriptor.num_classes
            else f"class{semantic}")
    name = re.sub(r"[^A-Za-z0-9]+", "-", name)
    return f"{name}-{track:03d}" if track > 0 else name


class _MaskWriter:
    """Per-segment binary masks. Keeps nothing per track in memory: each folder holds a
    `track.json` written when the folder is made, and `close()` indexes the folders."""

    def __init__(self, directory: Path, descriptor):
        self.directory = directory
        self.descriptor = descriptor

    def add(self, index: int, segment_map: np.ndarray, semantic: np.ndarray,
            track: np.ndarray) -> None:
        from scipy import ndimage

        from vipdl import formats

        boxes = ndimage.find_objects(segment_map + 1, max_label=len(semantic))
        for k, box in enumerate(boxes):
            c, t = int(semantic[k]), int(track[k])
            if box is None or c == self.descriptor.ignore_label:
                continue
            folder = self.directory / _mask_folder(c, t, self.descriptor)
            if not (folder / "track.json").is_file():
                name = (self.descriptor.class_names[c] if 0 <= c < self.descriptor.num_classes
                        else None)
                formats.atomic_write_json(folder / "track.json",
                                          {"class_id": c, "class_name": name, "track_id": t})
            mask = np.zeros(segment_map.shape, np.uint8)
            mask[box] = (segment_map[box] == k) * np.uint8(255)
            formats.atomic_write_png(folder / f"{index:06d}.png", mask, compress_level=1)

    def drop_after(self, last_index: int) -> None:
        """Deletes masks of frames after `last_index` (they are redone by a resumed run)."""
        if not self.directory.is_dir():
            return
        for folder in self.directory.iterdir():
            if folder.is_dir():
                for png in folder.glob("*.png"):
                    if int(png.stem) > last_index:
                        png.unlink()

    def close(self) -> None:
        """Writes tracks.json: per folder its class, track and first / last frame."""
        from vipdl import formats

        tracks: dict[str, Any] = {}
        if self.directory.is_dir():
            for folder in sorted(self.directory.iterdir()):
                if not folder.is_dir():
                    continue
                frames = sorted(int(p.stem) for p in folder.glob("*.png"))
                if not frames:
                    continue
                entry = json.loads((folder / "track.json").read_text())
                entry.update(first_frame=frames[0], last_frame=frames[-1], num_frames=len(frames))
                tracks[folder.name] = entry
        formats.atomic_write_json(self.directory / "tracks.json", tracks)


class _OverlayParts:
    """The overlay video, written as parts that end at every state save (so a resumed run
    appends parts) and joined into the final file at the end."""

    def __init__(self, path: Path, parts_dir: Path, fps: float, closed_parts: int = 0,
                 closed_frames: int = 0):
        self.path = path
        self.parts_dir = parts_dir
        self.fps = fps
        self.closed = closed_parts
        self.frames = closed_frames  # frames in the closed parts and the open one
        self.closed_frames = closed_frames
        self._writer: video_io.VideoWriter | None = None
        parts_dir.mkdir(parents=True, exist_ok=True)
        for stale in self._part_files()[closed_parts:]:  # Frames after the saved state.
            stale.unlink()

    def _part(self, n: int) -> Path:
        return self.parts_dir / f"part-{n:05d}{self.path.suffix}"

    def _part_files(self) -> list[Path]:
        return sorted(p for p in self.parts_dir.glob(f"part-*{self.path.suffix}"))

    def write(self, picture: np.ndarray) -> None:
        if self._writer is None:
            self._writer = video_io.VideoWriter(self._part(self.closed), fps=self.fps,
                                                overwrite=True)
        self._writer.write(picture)
        self.frames += 1

    def cut(self) -> None:
        """Ends the current part (at a state save)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self.closed += 1
            self.closed_frames = self.frames

    def abort(self) -> None:
        """Drops the open part (its frames are redone by a resumed run)."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self.frames = self.closed_frames

    def finish(self) -> None:
        """Joins the parts into `path` (atomically)."""
        self.cut()
        parts = self._part_files()
        if not parts:
            raise ValueError(f"{self.path}: no overlay frames were written")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if len(parts) == 1:
            os.replace(parts[0], self.path)
            return
        if self.path.suffix.lower() == ".gif":  # One palette for the whole clip: re-encode.
            with video_io.VideoWriter(self.path, fps=self.fps, overwrite=True) as writer:
                for part in parts:
                    for frame in video_io.read_frames(part):
                        writer.write(frame)
            return
        import imageio_ffmpeg

        listing = self.parts_dir / "parts.txt"
        listing.write_text("".join(f"file '{p.resolve()}'\n" for p in parts))
        tmp = self.path.with_name(f".{self.path.stem}.joining{self.path.suffix}")
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(tmp)]
        with video_io._quiet_fork():
            result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise ValueError(f"{self.path}: joining the overlay parts failed: "
                             f"{result.stderr.strip()[-300:]}")
        os.replace(tmp, self.path)


class PredictionInterrupted(Exception):
    """The run was stopped by Ctrl-C or SIGTERM after saving what it had; `summary` says where."""

    def __init__(self, summary: dict[str, Any], signal_name: str):
        super().__init__(f"interrupted by {signal_name}")
        self.summary = summary
        self.signal_name = signal_name


class _Signals:
    """Ctrl-C and SIGTERM ask the run to stop after the current frame; a second Ctrl-C stops
    at once (the run then resumes from its last saved state)."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _settings(predictor, input_path, outputs: Outputs) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one."""
    return {
        "input": str(Path(input_path).resolve()),
        "video_id": outputs.video_id,
        "dataset": predictor.descriptor.name,
        "tracker": predictor.tracker,
        "stitching_mode": predictor.stitching_mode,
        "memory_frames": predictor.memory_frames,
        "vps": outputs.vps,
        "step": outputs.step,
        "masks": outputs.masks,
        "depth": outputs.depth,
        "overlay": None if outputs.overlay is None else str(Path(outputs.overlay).resolve()),
        "sheet_frames": outputs.sheet_frames,
        # Round-tripped through JSON so it compares equal to the manifest's copy.
        "mattes": (None if outputs.mattes is None else
                   json.loads(json.dumps(dataclasses.asdict(outputs.mattes), default=str))),
        "matte_pngs": outputs.matte_pngs if outputs.mattes is not None else None,
        "cryptomatte": outputs.cryptomatte if outputs.mattes is not None else None,
    }


def format_limits(outputs: Outputs) -> str | None:
    """The track limits of the chosen formats, said when a run starts."""
    from vipdl import formats
    from vipdl.evaluation import writers

    parts = []
    if outputs.vps:
        parts.append(f"VPS layout holds {writers.VPS_MAX_TRACKS:,} tracks per video")
    if outputs.step:
        parts.append(f"STEP layout holds track ids up to {formats.STEP_MAX_INSTANCE:,} "
                     "(16 bits)")
    if not parts:
        return None
    return "; ".join(parts) + "; a run that needs more stops at that frame, keeping the rest"


def _save_state(path: Path, tracking: dict[str, np.ndarray], cli: dict[str, Any]) -> None:
    from vipdl import formats

    buffer = io.BytesIO()
    np.savez(buffer, **tracking, **{"cli/state": np.array(json.dumps(cli))})
    formats.atomic_write_bytes(path, buffer.getvalue())


def _load_state(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved state to resume from (the run stopped before "
                                "its first frame); start it again with --overwrite")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    cli = json.loads(str(arrays.pop("cli/state")))
    return arrays, cli


def _print_message(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_prediction(predictor, input_path: str | os.PathLike, outputs: Outputs, *,
                   overwrite: bool = False, resume: bool = False, on_bad_frame: str = "stop",
                   save_every: int = 100, progress: bool = True,
                   resume_command: str | None = None, log=None,
                   on_frame=None) -> dict[str, Any]:
    """Runs `predictor` on a video file / image folder and writes the chosen outputs frame by
    frame, resumably.

    Args:
      predictor: a `vipdl.inference.VideoPredictor`.
      input_path: video file, image folder or image.
      outputs: what to write.
      overwrite: delete an existing output directory / overlay file first.
      resume: continue the interrupted run in `outputs.directory` (same input and outputs).
      on_bad_frame: see `video_io.FrameReader`.
      save_every: frames between saves of the tracking state.
      progress: show a progress bar (tqdm, with frames per second).
      resume_command: the command that continues this run, for messages.
      log: called with each message line (default: print to stderr).
      on_frame: called with the number of finished frames after each frame.

    Returns:
      A summary: frames, seconds, frames per second, number of tracks, bad frames, written
      paths; `complete` is False and `stopped` says where when a bad frame stopped the run.

    Raises:
      PredictionInterrupted: after Ctrl-C / SIGTERM (what was done is kept and resumable).
      Anything else that goes wrong is re-raised after the state of the last finished frame is
      saved and OUT/progress.json records the error.
    """
    if save_every < 1:
        raise ValueError(f"save_every must be >= 1, got {save_every}")
    run = _PredictionRun(predictor, input_path, outputs, on_bad_frame=on_bad_frame,
                         save_every=save_every, resume_command=resume_command,
                         log=_print_message if log is None else log, on_frame=on_frame)
    run.open(overwrite=overwrite, resume=resume)
    return run.run(progress=progress)


class _PredictionRun:
    """One `run_prediction`: `open` prepares the output directory and the writers, `run`
    predicts frame by frame and ends in `_finish`, `_stop` (a signal or a bad frame) or `_fail`.

    The run state, all of it about the last finished frame: `done` (frames finished),
    `last_index` (its input index), the bad frames met (`bad_frames`, `num_bad`, `last_bad`),
    `snapshot` (tracking snapshot, `_cli_state()`) and the writers' `vps_snapshot` /
    `matte_snapshot`. `_save` stores them in OUT/.resume; `_write_manifest` reports them in
    OUT/progress.json.
    """

    def __init__(self, predictor, input_path: str | os.PathLike, outputs: Outputs, *,
                 on_bad_frame: str, save_every: int, resume_command: str | None, log,
                 on_frame):
        self.predictor = predictor
        self.descriptor = predictor.descriptor
        self.input_path = input_path
        self.outputs = outputs
        self.on_bad_frame = on_bad_frame
        self.save_every = save_every
        self.resume_command = resume_command
        self.log = log
        self.on_frame = on_frame
        self.out_dir = Path(outputs.directory)
        self.overlay_path = None if outputs.overlay is None else Path(outputs.overlay)
        self.resume_dir = self.out_dir / RESUME_DIR
        self.state_path = self.resume_dir / STATE_FILE
        self.sheet_dir = self.resume_dir / "sheet"

    # --- opening --------------------------------------------------------------------------------

    def open(self, *, overwrite: bool, resume: bool) -> None:
        """Checks the output directory, starts (or resumes) the run there, opens the writers."""
        check_output_dir(self.out_dir, overwrite=overwrite, resume=resume)
        overlay_path = self.overlay_path
        if overlay_path is not None and overlay_path.exists() and not (overwrite or resume):
            raise FileExistsError(f"overlay {overlay_path} exists; pass --overwrite to replace it")
        self.info = video_io.probe(self.input_path)  # Fails early on unreadable or empty input.
        self.settings = _settings(self.predictor, self.input_path, self.outputs)
        if self.outputs.mattes is not None:  # Unknown class names fail before anything is written.
            from vipdl.editing import softness_table

            softness_table(self.descriptor.class_names, self.outputs.mattes.softness)
        self.resume = resume
        self.tracking_state, saved = None, None
        if resume:
            self.tracking_state, saved = self._saved_state()
        else:
            self._clear_outputs(overwrite)
        self.resume_dir.mkdir(parents=True, exist_ok=True)
        limits = format_limits(self.outputs)
        if limits:
            self.log(f"limits: {limits}")
        self._restore_run_state(saved)
        self._open_writers(saved)
        self.reader = video_io.FrameReader(self.input_path, on_bad_frame=self.on_bad_frame,
                                           start=max(self.last_index, 0), on_report=self._report)
        self.pending: collections.deque[int] = collections.deque()  # Input indices in flight.

    def _saved_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The interrupted run's saved state; ValueError when it had other settings."""
        manifest = read_progress(self.out_dir)
        changed = {k: (manifest["settings"].get(k), v) for k, v in self.settings.items()
                   if manifest["settings"].get(k) != v}
        if changed:
            detail = ", ".join(f"{k}: {a!r} then, {b!r} now" for k, (a, b) in changed.items())
            raise ValueError(f"--resume: the run in {self.out_dir} was started with other "
                             f"settings ({detail})")
        return _load_state(self.state_path)

    def _clear_outputs(self, overwrite: bool) -> None:
        """Deletes the previous results (with `overwrite`) and makes the output directory."""
        if self.out_dir.exists() and overwrite:
            shutil.rmtree(self.out_dir)
        if self.overlay_path is not None and self.overlay_path.exists() and overwrite:
            self.overlay_path.unlink()
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def _restore_run_state(self, saved: dict[str, Any] | None) -> None:
        """The run state of the saved state (`saved`) or of a new run (None)."""
        self.done = int(saved["frames_done"]) if saved else 0
        self.last_index = int(saved["last_index"]) if saved else -1
        self.bad_frames: list[dict[str, Any]] = list(saved["bad_frames"]) if saved else []
        self.num_bad = int(saved["num_bad_frames"]) if saved else 0
        self.last_bad = int(saved["last_bad_frame"]) if saved else -1
        self.elapsed_before = float(saved["seconds"]) if saved else 0.0
        self.snapshot = None  # (tracking snapshot, cli state) of the last finished frame
        self.vps_snapshot = self.matte_snapshot = None
        self.status: dict[str, Any] = {"complete": False, "stopped": None, "error": None,
                                       "saved_frames": self.done if saved else None}

    def _open_writers(self, saved: dict[str, Any] | None) -> None:
        """Opens the writers of the chosen outputs; a resumed run drops what is past `saved`."""
        from vipdl.evaluation import writers

        outputs, descriptor = self.outputs, self.descriptor
        self.vps_writer = None
        if outputs.vps:
            self.vps_writer = writers.VpsPredictionWriter(
                self.out_dir / "vps", label_divisor=descriptor.label_divisor,
                ignore_label=descriptor.ignore_label, thing_ids=descriptor.thing_ids,
                resume=saved["vps"] if saved else None)
        self.masks = _MaskWriter(self.out_dir / "masks", descriptor) if outputs.masks else None
        if self.masks is not None and saved:
            self.masks.drop_after(self.last_index)
        self.matte_writer = None
        if outputs.mattes is not None:
            from vipdl.editing.writers import MatteWriter

            self.matte_writer = MatteWriter(self.out_dir / "mattes", descriptor,
                                            pngs=outputs.matte_pngs,
                                            cryptomatte=outputs.cryptomatte,
                                            resume=saved["mattes"] if saved else None)
        self.overlay = None
        if self.overlay_path is not None:
            fps = outputs.fps or self.info.fps or 10.0
            self.overlay = _OverlayParts(
                self.overlay_path, self.resume_dir / "overlay", fps,
                closed_parts=int(saved["overlay_parts"]) if saved else 0,
                closed_frames=int(saved["frames_done"]) if saved else 0)
        if saved and self.sheet_dir.is_dir():
            for png in self.sheet_dir.glob("*.png"):
                if int(png.stem) >= self.done:
                    png.unlink()

    # --- reading ------------------------------------------------------------------------------

    def _report(self, bad: video_io.BadFrame) -> None:
        """Counts and reports a bad frame (`video_io.FrameReader`'s `on_report`)."""
        if bad.index <= self.last_bad:  # Met again by a resumed run: already counted.
            if self.on_bad_frame != "stop":
                self.log(f"warning: {bad.describe()} ({self.on_bad_frame})")
            return
        self.num_bad += 1
        self.last_bad = bad.index
        if len(self.bad_frames) < _MAX_LISTED_BAD_FRAMES:
            self.bad_frames.append({"frame": bad.index, "damaged": bad.damaged,
                                    "reason": bad.reason})
        action = {"stop": "stopping", "skip": "skipped",
                  "repeat": "replaced by the previous frame",
                  "keep": "kept as decoded" if bad.damaged else "stopping"}[self.on_bad_frame]
        self.log(f"warning: {bad.describe()} ({action})")

    def _frames(self):
        """The frames for the predictor; their input indices queue up in `pending`."""
        for index, frame in self.reader:
            self.pending.append(index)
            yield frame

    # --- running ------------------------------------------------------------------------------

    def run(self, *, progress: bool) -> dict[str, Any]:
        """Predicts and writes every frame; returns the summary (see `run_prediction`)."""
        from tqdm import tqdm

        self.start = time.perf_counter()
        self.stream = self.predictor.predict(self._frames(), resume=self.tracking_state)
        if self.resume:
            self.log(f"resuming after frame {self.last_index} ({self.done} frames done)")
        bar = tqdm(total=self.info.num_frames, initial=self.done, unit="frame",
                   disable=not progress, dynamic_ncols=True)
        signals = _Signals()
        try:
            with bar, signals:
                self._predict_frames(bar, signals)
                if signals.received is not None:
                    self._stop({"after_frame": self.last_index,
                                "reason": f"interrupted by {signals.received}"})
                    raise PredictionInterrupted(self.summary(), signals.received)
            stopped = self.reader.stopped
            if stopped is not None:
                self._stop({"frame": stopped.index, "after_frame": self.last_index,
                            "reason": stopped.describe()})
                return self.summary()
            return self._finish()
        except PredictionInterrupted:
            raise
        except BaseException as e:
            self._fail(e)
            raise
        finally:
            if self.vps_writer is not None:
                self.vps_writer.abort()
            if self.matte_writer is not None:
                self.matte_writer.abort()

    def _predict_frames(self, bar, signals: _Signals) -> None:
        """Writes frame after frame until the input ends, stops, or a signal arrives."""
        # A resumed stream first predicts the frame that restores the model state: not redone.
        skip_first = self.resume and self.tracking_state is not None
        for pred in self.stream:
            if skip_first:
                self.pending.popleft()
                skip_first = False
            index = self.pending.popleft()
            self._write_frame(index, pred)
            self.done += 1
            self.last_index = index
            vps, mattes = self.vps_writer, self.matte_writer
            self.vps_snapshot = vps.state() if vps is not None else None
            self.matte_snapshot = mattes.state() if mattes is not None else None
            self.snapshot = (self.stream.snapshot(), self._cli_state())
            bar.update(1)
            self._write_manifest()
            if self.on_frame is not None:
                self.on_frame(self.done)
            if self.done % self.save_every == 0:
                self._save()
            if signals.received is not None:
                break

    def _write_frame(self, index: int, pred) -> None:
        """Writes every chosen output of one prediction (input frame `index`)."""
        from vipdl import formats, visualize
        from vipdl.postprocess import labels

        outputs, out_dir = self.outputs, self.out_dir
        semantic, track = labels.split_wide(pred.segments)
        if self.vps_writer is not None:
            self.vps_writer.add_segments(f"{outputs.video_id}_{index:06d}", pred.segment_map,
                                         semantic, track)
        if outputs.step:
            formats.write_step_segments(
                out_dir / "step" / outputs.video_id / f"{index:06d}.png",
                pred.segment_map, semantic, track)
        if outputs.depth and pred.depth is not None:
            formats.write_depth_png(out_dir / "depth" / f"{index:06d}.png", pred.depth)
        if self.masks is not None:
            self.masks.add(index, pred.segment_map, semantic, track)
        if self.matte_writer is not None:
            from vipdl import editing

            self.matte_writer.add(editing.frame_mattes(pred, self.descriptor, outputs.mattes))
        if self.overlay is not None or self.done < outputs.sheet_frames:
            picture = visualize.overlay_segments(pred.image, pred.segment_map, semantic,
                                                 track, descriptor=self.descriptor)
            if self.done < outputs.sheet_frames:
                formats.atomic_write_png(self.sheet_dir / f"{self.done:06d}.png", picture)
            if self.overlay is not None:  # Last: a failure before it leaves parts whole.
                self.overlay.write(picture)

    # --- state and manifest -------------------------------------------------------------------

    def seconds(self) -> float:
        return round(self.elapsed_before + time.perf_counter() - self.start, 3)

    def summary(self) -> dict[str, Any]:
        """What `run_prediction` returns (and a complete run writes to OUT/summary.json)."""
        outputs = self.outputs
        took = self.seconds()
        return {
            "input": str(self.input_path),
            "frames": self.done,
            "last_index": self.last_index,
            "seconds": took,
            "fps": round(self.done / took, 3) if took > 0 else None,
            "tracks": self.stream.num_tracks,
            "video_id": outputs.video_id,
            "complete": self.status["complete"],
            "stopped": self.status["stopped"],
            "bad_frames": self.bad_frames,
            "num_bad_frames": self.num_bad,
            "outputs": [p for p, on in (("vps", outputs.vps), ("step", outputs.step),
                                        ("masks", outputs.masks), ("depth", outputs.depth),
                                        ("mattes", outputs.mattes is not None),
                                        ("overlay_frames.png", outputs.sheet_frames > 0))
                        if on],
            **({"overlay": str(self.overlay_path)} if self.overlay_path is not None else {}),
        }

    def _cli_state(self) -> dict[str, Any]:
        return {"frames_done": self.done, "last_index": self.last_index,
                "seconds": self.seconds(),
                "overlay_parts": self.overlay.closed if self.overlay is not None else 0,
                "vps": self.vps_snapshot, "mattes": self.matte_snapshot}

    def _write_manifest(self, saved_frames: int | None = None) -> None:
        """Writes OUT/progress.json."""
        from vipdl import formats

        status = self.status
        if saved_frames is not None:
            status["saved_frames"] = saved_frames
        manifest = {
            "version": _MANIFEST_VERSION, "complete": status["complete"],
            "frames_done": self.done, "last_index": self.last_index,
            "frames_estimated": self.info.num_frames, "saved_frames": status["saved_frames"],
            "stopped": status["stopped"], "error": status["error"],
            "bad_frames": self.bad_frames, "num_bad_frames": self.num_bad,
            "seconds": self.seconds(), "resume_command": self.resume_command,
            "settings": self.settings,
        }
        formats.atomic_write_json(self.out_dir / PROGRESS_FILE, manifest)

    def _save(self) -> None:
        """Saves the state of the last finished frame (every output is complete up to it)."""
        if self.snapshot is None:
            return
        overlay = self.overlay
        if overlay is not None:
            if overlay.frames != self.snapshot[1]["frames_done"]:
                # The open part holds a frame past the snapshot: keep the last saved state
                # (its parts are whole) and redo the frames after it.
                overlay.abort()
                return
            overlay.cut()
        tracking, cli = self.snapshot
        # Bad frames met since that frame are in too: a resumed run meets them again and
        # does not count them twice.
        cli = dict(cli, overlay_parts=overlay.closed if overlay is not None else 0,
                   vps=self.vps_snapshot, mattes=self.matte_snapshot, bad_frames=self.bad_frames,
                   num_bad_frames=self.num_bad, last_bad_frame=self.last_bad)
        _save_state(self.state_path, tracking(), cli)
        self._write_manifest(saved_frames=cli["frames_done"])

    def _partial_outputs(self) -> None:
        """Makes what was written usable as it is (pred.json, tracks.json) without closing."""
        if self.vps_writer is not None and self.done:
            self.vps_writer.write_json()
        if self.masks is not None:
            self.masks.close()
        if self.matte_writer is not None and self.done:
            self.matte_writer.write_json()

    # --- ending -------------------------------------------------------------------------------

    def _stop(self, stopped: dict[str, Any]) -> None:
        """Ends an incomplete run resumably: saves, writes the partial outputs, and records
        `stopped` (where and why) in the manifest."""
        self._save()
        self._partial_outputs()
        self.status["stopped"] = stopped
        self._write_manifest()

    def _finish(self) -> dict[str, Any]:
        """Writes the final files of a complete run and drops its resume state; the summary."""
        from vipdl import formats, visualize

        if self.vps_writer is not None:
            self.vps_writer.close()
        if self.masks is not None:
            self.masks.close()
        if self.matte_writer is not None:
            self.matte_writer.close()
        if self.overlay is not None:
            self.overlay.finish()
        sheet = sorted(self.sheet_dir.glob("*.png")) if self.sheet_dir.is_dir() else []
        if sheet:
            formats.atomic_write_png(self.out_dir / "overlay_frames.png", visualize.contact_sheet(
                [formats.read_png(p)[..., :3] for p in sheet], columns=3))
        self.status["complete"] = True
        summary = self.summary()
        formats.atomic_write_json(self.out_dir / "summary.json", summary)
        self._write_manifest()
        shutil.rmtree(self.resume_dir, ignore_errors=True)
        return summary

    def _fail(self, error: BaseException) -> None:
        """Keeps everything up to the last finished frame, resumable, and records `error`."""
        try:
            self._save()
            self._partial_outputs()
        except Exception as e:  # noqa: BLE001 - the original error matters more.
            self.log(f"warning: could not save the state after the error: {e}")
        self.status["error"] = f"{type(error).__name__}: {error}"
        self.status["stopped"] = {"after_frame": self.last_index, "reason": self.status["error"]}
        self._write_manifest()


def load_config_file(spec: str):
    """Loads a config: `file.py` / `file.py:arg` (calls `get_config([arg])`) or `file.json`."""
    import importlib.util

    path, arg = spec, ""
    if not Path(spec).is_file() and ":" in spec:
        path, arg = spec.rsplit(":", 1)
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    if file.suffix == ".json":
        if file.name != "config.json":
            raise ValueError(f"config {path}: a .json config must be a workdir's config.json")
        from vipdl import checkpointing

        return checkpointing.load_config(str(file.parent))
    if file.suffix != ".py":
        raise ValueError(f"config {path}: expected a .py or .json file")
    module_spec = importlib.util.spec_from_file_location(f"_vipdl_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config {path} defines no get_config()")
    return module.get_config(arg) if arg else module.get_config()


def build_predictor(args: argparse.Namespace, cache_dir: Path | None = None):
    """The predictor of `--workdir` or `--config` + `--checkpoint`; `cache_dir`: the start-up
    cache (docs/inference.md#start-up), None for none."""
    from vipdl.inference import VideoPredictor

    overrides: dict[str, Any] = {"batch_size": args.batch_size,
                                 "stitching_mode": args.stitching_mode}
    if args.tracker:
        overrides["tracker"] = args.tracker
    if getattr(args, "mattes", False) or getattr(args, "cryptomatte", False):
        overrides["return_raw"] = True  # The mattes need the model's soft outputs.
    if args.export:
        if args.workdir or args.config or args.checkpoint:
            raise ValueError("--export runs an exported model; drop --workdir/--config/--checkpoint")
        return VideoPredictor.from_export(args.export, **overrides)
    if args.workdir and not args.config:
        return VideoPredictor.from_checkpoint(args.workdir, args.checkpoint, which=args.which,
                                              cache_dir=cache_dir, **overrides)
    if not args.config:
        raise ValueError("give --workdir, --export, or --config together with --checkpoint")
    checkpoint = args.checkpoint or args.workdir
    if not checkpoint:
        raise ValueError("--config needs --checkpoint (or --workdir) to load weights from")
    return VideoPredictor.from_checkpoint(load_config_file(args.config), checkpoint,
                                          which=args.which, cache_dir=cache_dir, **overrides)


def _resume_command(argv: list[str]) -> str:
    """The command line that continues this run: the same arguments, --resume instead of
    --overwrite."""
    args = [a for a in argv if a not in ("--overwrite", "--resume")]
    return " ".join(shlex.quote(a) for a in ["vipdl-predict-video", *args, "--resume"])


def _where(out_dir: Path) -> str:
    """Where the run in `out_dir` stopped, from its manifest."""
    try:
        manifest = read_progress(out_dir)
    except (FileNotFoundError, ValueError):
        return ""
    done, last = manifest["frames_done"], manifest["last_index"]
    if not done:
        return "no frame was finished"
    total = manifest.get("frames_estimated")
    of = f" of about {total}" if total else ""
    return f"{done} frames{of} are done, up to frame {last}, in {out_dir}"


def _matte_options(args: argparse.Namespace):
    """The `MatteOptions` of the matte flags, or None; ValueError on inconsistent flags."""
    if not (args.mattes or args.cryptomatte):
        given = [f for f, on in (("--softness", args.softness), ("--full-res", args.full_res),
                                 ("--matte-k", args.matte_k != 4)) if on]
        if given:
            raise ValueError(f"{', '.join(given)} need --mattes or --cryptomatte")
        return None
    from vipdl.editing import MatteOptions, parse_softness

    return MatteOptions(k=args.matte_k, softness=parse_softness(args.softness) or None,
                        full_res=args.full_res)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    console.quiet_library_logs()
    out_dir = Path(args.output)
    chosen = (args.vps or args.step or args.masks or args.depth or args.overlay or args.sheet
              or args.mattes or args.cryptomatte)
    overlay = Path(args.overlay) if args.overlay else None
    if not chosen:
        args.vps, overlay = True, out_dir / "overlay.mp4"
    outputs = Outputs(
        directory=out_dir, vps=args.vps, step=args.step, overlay=overlay, masks=args.masks,
        depth=args.depth, video_id=args.video_id or default_video_id(args.input), fps=args.fps,
        sheet_frames=args.sheet)
    resume_command = _resume_command(argv)
    started = False
    try:
        outputs = dataclasses.replace(outputs, mattes=_matte_options(args),
                                      matte_pngs=args.mattes, cryptomatte=args.cryptomatte)
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.sheet < 0:
            raise ValueError(f"--sheet must be >= 0 frames, got {args.sheet}")
        if args.save_every < 1:
            raise ValueError(f"--save-every must be >= 1, got {args.save_every}")
        # Cheap checks before the (slow) model load.
        check_output_dir(out_dir, overwrite=args.overwrite, resume=args.resume)
        if (overlay is not None and overlay.exists() and not args.overwrite
                and not args.resume):
            raise FileExistsError(f"overlay {overlay} exists; pass --overwrite to replace it")
        video_io.probe(args.input)
        predictor = build_predictor(args, cache_dir=console.enable_compilation_cache())
        started = True
        summary = run_prediction(predictor, args.input, outputs, overwrite=args.overwrite,
                                 resume=args.resume, on_bad_frame=args.on_bad_frame,
                                 save_every=args.save_every, progress=not args.no_progress,
                                 resume_command=resume_command)
    except PredictionInterrupted as e:
        print(f"interrupted ({e.signal_name}): {_where(out_dir)}.\nContinue with: "
              f"{resume_command}", file=sys.stderr)
        return 130 if e.signal_name == "SIGINT" else 143
    except (ValueError, FileNotFoundError, FileExistsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        where = _where(out_dir) if started else ""
        if where:
            print(f"stopped: {where}.\nContinue with: {resume_command}", file=sys.stderr)
        return 1
    if not summary["complete"]:
        stop = summary["stopped"]
        print(f"stopped at {stop['reason']}.\n{_where(out_dir)} (pred.json and tracks.json "
              f"cover them).\nContinue past it with: {resume_command} --on-bad-frame "
              "skip|repeat|keep", file=sys.stderr)
        return 1
    bad = f", {summary['num_bad_frames']} bad frames" if summary["num_bad_frames"] else ""
    print(f"{summary['frames']} frames in {summary['seconds']:.1f} s "
          f"({summary['fps']} frames/s), {summary['tracks']} tracks{bad} -> {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run a trained model on a video file or image folder and write tracked panoptic results.

    vipdl-predict-video --workdir RUN --input video.mp4 --output OUT \
        [--vps] [--step] [--overlay OUT/overlay.mp4] [--masks] [--depth] [--sheet N] \
        [--mattes] [--cryptomatte] [--matte-k 4] [--softness person=1.5,car=0.5] [--full-res] \
        [--tracker vip|iou] [--batch-size N] [--overwrite]
    vipdl-predict-video --config configs/synthetic.py --checkpoint RUN/checkpoints ...

Outputs (any combination; with none chosen: --vps and an overlay video in OUT):
  --vps      OUT/vps/pan_pred/<video>_<frame>.png + OUT/vps/pred.json, the Cityscapes-VPS
             prediction layout (scored by scripts/eval_vpq.py)
  --step     OUT/step/<video>/<frame>.png, the KITTI-STEP layout (scripts/eval_stq.py)
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

Everything is written under a temporary name next to OUT and renamed into place at the end, so a
failed run leaves earlier results untouched. An existing non-empty OUT (or overlay file) is
refused unless --overwrite. Exit code 1 on bad input (unreadable or empty video, checkpoint that
does not match the config, existing output).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from vipdl import video_io
from vipdl.cli import console


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


def check_output_dir(directory: Path, *, overwrite: bool) -> None:
    """Refuses an existing non-empty output directory unless `overwrite`."""
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"--output {directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output directory {directory} already holds results; pass --overwrite to replace them"
        )


def _mask_folder(panoptic_id: int, descriptor) -> str:
    semantic, instance = divmod(int(panoptic_id), descriptor.label_divisor)
    name = (descriptor.class_names[semantic] if semantic < descriptor.num_classes
            else f"class{semantic}")
    name = re.sub(r"[^A-Za-z0-9]+", "-", name)
    return f"{name}-{instance:03d}" if instance > 0 else name


class _MaskWriter:
    """Per-segment binary masks plus a small track index (constant memory per track)."""

    def __init__(self, directory: Path, descriptor):
        self.directory = directory
        self.descriptor = descriptor
        self.tracks: dict[str, dict[str, Any]] = {}

    def add(self, index: int, panoptic: np.ndarray) -> None:
        from PIL import Image

        ids, inverse = np.unique(panoptic, return_inverse=True)
        inverse = inverse.reshape(panoptic.shape)
        for k, panoptic_id in enumerate(ids.tolist()):
            if panoptic_id // self.descriptor.label_divisor == self.descriptor.ignore_label:
                continue
            folder = _mask_folder(panoptic_id, self.descriptor)
            (self.directory / folder).mkdir(parents=True, exist_ok=True)
            mask = (inverse == k).astype(np.uint8) * 255
            Image.fromarray(mask).save(self.directory / folder / f"{index:06d}.png")
            semantic, instance = divmod(panoptic_id, self.descriptor.label_divisor)
            entry = self.tracks.setdefault(folder, {
                "panoptic_id": panoptic_id, "class_id": semantic,
                "class_name": self.descriptor.class_names[semantic]
                if semantic < self.descriptor.num_classes else None,
                "track_id": instance, "first_frame": index, "num_frames": 0,
            })
            entry["last_frame"] = index
            entry["num_frames"] += 1

    def close(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "tracks.json").write_text(json.dumps(self.tracks, indent=1))


def run_prediction(predictor, input_path: str | os.PathLike, outputs: Outputs, *,
                   overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Runs `predictor` on a video file / image folder and writes the chosen outputs.

    All files go to a temporary sibling of `outputs.directory` that replaces it at the end, so an
    error (bad frame, full disk, Ctrl-C) leaves any previous results intact.

    Args:
      predictor: a `vipdl.inference.VideoPredictor`.
      input_path: video file, image folder or image.
      outputs: what to write.
      overwrite: replace an existing non-empty output directory / overlay file.
      progress: show a progress bar (tqdm, with frames per second).

    Returns:
      A summary: frames, seconds, frames per second, number of tracks, written paths.
    """
    from tqdm import tqdm

    from vipdl import formats, visualize
    from vipdl.evaluation import writers

    out_dir = Path(outputs.directory)
    check_output_dir(out_dir, overwrite=overwrite)
    if outputs.overlay is not None and outputs.overlay.exists() and not overwrite:
        raise FileExistsError(f"overlay {outputs.overlay} exists; pass --overwrite to replace it")
    info = video_io.probe(input_path)  # Fails early on unreadable or empty input.
    descriptor = predictor.descriptor
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    overlay_path = outputs.overlay
    if overlay_path is not None and out_dir.resolve() in overlay_path.resolve().parents:
        # Inside OUT: write it in the staging dir, it moves with the directory.
        overlay_path = staging / overlay_path.resolve().relative_to(out_dir.resolve())
    fps = outputs.fps or info.fps or 10.0
    overlay_writer = None
    vps_writer = None
    masks = _MaskWriter(staging / "masks", descriptor) if outputs.masks else None
    mattes = None
    if outputs.mattes is not None:
        from vipdl import editing
        from vipdl.editing.writers import MatteWriter

        editing.softness_table(descriptor.class_names, outputs.mattes.softness)  # Fail early.
        mattes = MatteWriter(staging / "mattes", descriptor, pngs=outputs.matte_pngs,
                             cryptomatte=outputs.cryptomatte)
    track_ids: set[int] = set()
    sheet: list[np.ndarray] = []
    start = time.perf_counter()
    count = 0
    try:
        if overlay_path is not None:
            overlay_writer = video_io.VideoWriter(overlay_path, fps=fps, overwrite=True)
        if outputs.vps:
            vps_writer = writers.VpsPredictionWriter(
                staging / "vps", label_divisor=descriptor.label_divisor,
                ignore_label=descriptor.ignore_label, thing_ids=descriptor.thing_ids)
        bar = tqdm(total=info.num_frames, unit="frame", disable=not progress, dynamic_ncols=True)
        with bar:
            for pred in predictor.predict(video_io.read_frames(input_path)):
                panoptic, index = pred.panoptic, pred.index
                things = np.unique(panoptic[np.isin(panoptic // descriptor.label_divisor,
                                                    descriptor.thing_ids)])
                track_ids.update(int(v) for v in things if v % descriptor.label_divisor)
                if vps_writer is not None:
                    vps_writer.add(f"{outputs.video_id}_{index:06d}", panoptic)
                if outputs.step:
                    formats.write_step_png(
                        staging / "step" / outputs.video_id / f"{index:06d}.png", panoptic,
                        label_divisor=descriptor.label_divisor)
                if outputs.depth and pred.depth is not None:
                    formats.write_depth_png(staging / "depth" / f"{index:06d}.png", pred.depth)
                if masks is not None:
                    masks.add(index, panoptic)
                if mattes is not None:
                    mattes.add(editing.frame_mattes(pred, descriptor, outputs.mattes))
                if overlay_writer is not None or len(sheet) < outputs.sheet_frames:
                    picture = visualize.overlay(pred.image, panoptic, descriptor=descriptor)
                    if overlay_writer is not None:
                        overlay_writer.write(picture)
                    if len(sheet) < outputs.sheet_frames:
                        sheet.append(picture)
                count += 1
                bar.update(1)
        if vps_writer is not None:
            vps_writer.close()
        if masks is not None:
            masks.close()
        if mattes is not None:
            mattes.close()
        if overlay_writer is not None:
            overlay_writer.close()
        if sheet:
            from PIL import Image

            Image.fromarray(visualize.contact_sheet(sheet, columns=3)).save(
                staging / "overlay_frames.png")
        seconds = time.perf_counter() - start
        summary = {
            "input": str(input_path),
            "frames": count,
            "seconds": round(seconds, 3),
            "fps": round(count / seconds, 3) if seconds > 0 else None,
            "tracks": len(track_ids),
            "video_id": outputs.video_id,
            "outputs": [p for p, on in (("vps", outputs.vps), ("step", outputs.step),
                                        ("masks", outputs.masks), ("depth", outputs.depth),
                                        ("mattes", outputs.mattes is not None),
                                        ("overlay_frames.png", bool(sheet))) if on],
        }
        (staging / "summary.json").write_text(json.dumps(summary, indent=1))
        formats.replace_dir(staging, out_dir)
    except BaseException:
        if overlay_writer is not None:
            overlay_writer.abort()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if outputs.overlay is not None:
        summary["overlay"] = str(outputs.overlay)
    return summary


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


def build_predictor(args: argparse.Namespace):
    """The predictor of `--workdir` or `--config` + `--checkpoint`."""
    from vipdl.inference import VideoPredictor

    overrides: dict[str, Any] = {"batch_size": args.batch_size,
                                 "stitching_mode": args.stitching_mode}
    if args.tracker:
        overrides["tracker"] = args.tracker
    if getattr(args, "mattes", False) or getattr(args, "cryptomatte", False):
        overrides["return_raw"] = True  # The mattes need the model's soft outputs.
    if args.workdir and not args.config:
        return VideoPredictor.from_checkpoint(args.workdir, args.checkpoint, which=args.which,
                                              **overrides)
    if not args.config:
        raise ValueError("give --workdir, or --config together with --checkpoint")
    checkpoint = args.checkpoint or args.workdir
    if not checkpoint:
        raise ValueError("--config needs --checkpoint (or --workdir) to load weights from")
    return VideoPredictor.from_checkpoint(load_config_file(args.config), checkpoint,
                                          which=args.which, **overrides)


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
    try:
        outputs = dataclasses.replace(outputs, mattes=_matte_options(args),
                                      matte_pngs=args.mattes, cryptomatte=args.cryptomatte)
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.sheet < 0:
            raise ValueError(f"--sheet must be >= 0 frames, got {args.sheet}")
        # Cheap checks before the (slow) model load.
        check_output_dir(out_dir, overwrite=args.overwrite)
        if overlay is not None and overlay.exists() and not args.overwrite:
            raise FileExistsError(f"overlay {overlay} exists; pass --overwrite to replace it")
        video_io.probe(args.input)
        predictor = build_predictor(args)
        summary = run_prediction(predictor, args.input, outputs, overwrite=args.overwrite,
                                 progress=not args.no_progress)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{summary['frames']} frames in {summary['seconds']:.1f} s "
          f"({summary['fps']} frames/s), {summary['tracks']} tracks -> {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

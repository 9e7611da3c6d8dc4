"""Export a trained ViP-DeepLab model with its post-processing (StableHLO or TF SavedModel).

    vipdl-export --workdir RUN --format stablehlo --out OUT [--height H --width W]
        [--batch B|symbolic] [--raw] [--platforms cpu,cuda,tpu] [--which latest|best]
    vipdl-export --workdir RUN --format saved_model --out OUT [--batch B] [--tflite]

What is exported: the per-pair step of the video predictor. Inputs `frame_t`, `frame_t1`: uint8
[batch, H, W, 3]; outputs `panoptic` (frame t), `concat_next` and `next_panoptic` (frame t+1,
from the two-frame canvas and on its own), `depth` for depth models, the `raw_*` heads with
--raw. Normalisation, resizing and padding to the model input are inside. See docs/export.md.

  stablehlo    OUT/model.stablehlo (jax.export, weights inside) + OUT/manifest.json; run it with
               jax alone, or with VideoPredictor.from_export(OUT) / vipdl-predict-video --export
  saved_model  OUT is a TF SavedModel (signature serving_default) + OUT/manifest.json; load it
               with tf.saved_model.load(OUT) or serve it with TF Serving

The frame size is fixed per export (default: the config's eval crop size); the batch is
symbolic by default for StableHLO and 1 for SavedModel. The export is written under a temporary
name and renamed into place; an existing non-empty OUT is refused unless --overwrite. Exit code
1 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vipdl.cli import console


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vipdl-export",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("--workdir", required=True, help="training workdir (config.json + checkpoints)")
    p.add_argument("--checkpoint", help="checkpoint dir (default: the workdir)")
    p.add_argument("--which", choices=("latest", "best"), default="latest")
    p.add_argument("--format", choices=("stablehlo", "saved_model"), required=True)
    p.add_argument("--out", required=True, help="export directory")
    p.add_argument("--height", type=int, help="frame height (default: the eval crop height)")
    p.add_argument("--width", type=int, help="frame width (default: the eval crop width)")
    p.add_argument("--batch", default=None,
                   help="pairs per call: a number, or 'symbolic' (any batch; StableHLO only). "
                   "Default: symbolic for stablehlo, 1 for saved_model")
    p.add_argument("--raw", action="store_true", help="also output the raw heads")
    p.add_argument("--platforms", default="cpu",
                   help="comma-separated XLA platforms to lower for (cpu, cuda, rocm, tpu)")
    p.add_argument("--tflite", action="store_true",
                   help="saved_model: also try the TFLite conversion (OUT/model.tflite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export")
    return p


def parse_batch(value: str | None, format: str) -> int | None:
    """`--batch`: None (symbolic) or a positive int; the format decides the default."""
    if value is None:
        return None if format == "stablehlo" else 1
    if value == "symbolic":
        return None
    try:
        batch = int(value)
    except ValueError:
        raise ValueError(f"--batch must be a positive number or 'symbolic', got {value!r}") from None
    if batch < 1:
        raise ValueError(f"--batch must be >= 1, got {batch}")
    return batch


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console.quiet_library_logs()
    try:
        if (args.height is None) != (args.width is None):
            raise ValueError("give both --height and --width, or neither")
        if args.height is not None and (args.height < 1 or args.width < 1):
            raise ValueError(f"--height/--width must be >= 1, got {args.height}x{args.width}")
        if args.tflite and args.format != "saved_model":
            raise ValueError("--tflite converts a SavedModel; use it with --format saved_model")
        batch = parse_batch(args.batch, args.format)
        platforms = tuple(p.strip() for p in args.platforms.split(",") if p.strip())
        if not platforms:
            raise ValueError("--platforms names no platform")
        from vipdl import export

        manifest = export.export_workdir(
            args.workdir, args.out, format=args.format,
            frame_hw=None if args.height is None else (args.height, args.width), batch=batch,
            raw_outputs=args.raw, checkpoint=args.checkpoint, which=args.which,
            platforms=platforms, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    g = manifest.geometry
    print(f"{manifest.format} export of {args.workdir} -> {out} ({size / 2**20:.1f} MiB)")
    print(f"  frames {g.frame_hw[0]}x{g.frame_hw[1]} (model input {g.padded_hw[0]}x"
          f"{g.padded_hw[1]}), batch {manifest.batch or 'symbolic'}, platforms "
          f"{', '.join(manifest.platforms)}, custom calls {list(manifest.custom_calls)}")
    for spec in manifest.inputs + manifest.outputs:
        print(f"  {spec}")
    if args.tflite:
        try:
            flatbuffer = export.convert_to_tflite(out)
        except export.TFLiteConversionError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        (out / "model.tflite").write_bytes(flatbuffer)
        print(f"  TFLite: {out / 'model.tflite'} ({len(flatbuffer) / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

r"""`vipdl-convert-checkpoint`: a deeplab2 (TF2) checkpoint -> a vipdl workdir.

  vipdl-convert-checkpoint --deeplab2 resnet50_beta_os32_vip_deeplab_cityscapes_dvps_train \
      --config configs/vip_deeplab_cityscapes_dvps_r50.py --workdir runs/vip_r50_deeplab2 \
      [--config.data.data_dir=/data/tfds] [--overwrite] [--ignore_prefix=PREFIX ...]

`--deeplab2` is a checkpoint prefix (`.../ckpt-60000`) or a directory holding one (an unpacked
model-zoo archive). The config must build the checkpoint's architecture; a mismatch is refused
with the configs that would fit (docs/model_zoo.md lists one per published checkpoint).
`--config.a.b=value` overrides are stored in the workdir's config.json, so set the dataset
location here for `scripts/evaluate.py --workdir` later. Full models give a workdir for
`scripts/predict_video.py` / `scripts/evaluate.py --workdir`; ImageNet (encoder-only) checkpoints
give one for `--config.init.checkpoint` of a training run. Exit status 1 on a checkpoint that does
not fit, 2 on bad flags.
"""

from __future__ import annotations

import os
import sys

from absl import flags
from ml_collections import config_flags

from vipdl.cli import console

_USAGE = (
    "Usage: {prog} --deeplab2 CKPT_PREFIX_OR_DIR --config configs/<name>.py --workdir DIR "
    "[--config.a.b=value ...] [--overwrite] [--ignore_prefix PREFIX ...]"
)


def _define_flags(fv: flags.FlagValues, argv: list[str]):
    # A private FlagValues, as vipdl.cli.train: no global flags, several CLIs per process.
    config = config_flags.DEFINE_config_file(
        "config",
        None,
        "vipdl config whose model the checkpoint fits, configs/<name>.py[:args].",
        flag_values=fv,
        lock_config=True,
        sys_argv=argv,
    )
    flags.DEFINE_string(
        "deeplab2", None, "deeplab2 checkpoint prefix (.../ckpt-N) or directory.", flag_values=fv
    )
    flags.DEFINE_string("workdir", None, "vipdl workdir to create.", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Replace an existing workdir.", flag_values=fv)
    flags.DEFINE_multi_string(
        "ignore_prefix",
        [],
        "Also skip checkpoint keys starting with this (e.g. a classifier head next to an "
        "ImageNet backbone); repeatable.",
        flag_values=fv,
    )
    return config


def _megabytes(num_values: int) -> str:
    return f"{num_values * 4 / 2**20:.1f} MiB"


def summary(conversion, *, checkpoint: str, config_file: str, workdir: str) -> str:
    """The report printed after a conversion: counts, the workdir and the next commands."""
    arch = conversion.architecture
    ignored = ", ".join(f"{reason}: {len(keys)}" for reason, keys in conversion.ignored.items())
    lines = [
        f"Converted {checkpoint}",
        f"  architecture:  {arch.describe()}",
        f"  keys used:     {conversion.num_arrays} (each filled one vipdl array; "
        f"{conversion.num_values:,} values, {_megabytes(conversion.num_values)} float32)",
        f"  keys ignored:  {sum(len(k) for k in conversion.ignored.values())}"
        + (f" ({ignored})" if ignored else ""),
        f"  workdir:       {workdir} (config.json, checkpoints/0)",
        "",
    ]
    if conversion.encoder_only:
        lines += [
            "Encoder weights only: warm-start a training run from them (the rest of the model "
            "is initialised as usual):",
            f"  python scripts/train.py --config={config_file} --workdir=runs/NEW_RUN "
            f"--config.init.checkpoint={workdir}",
        ]
    else:
        lines += [
            "Next:",
            f"  python scripts/predict_video.py --workdir {workdir} --input VIDEO.mp4 "
            "--output OUT_DIR",
            f"  python scripts/evaluate.py --workdir {workdir}   # needs config.data.data_dir",
            f"  python scripts/train.py --config={config_file} --workdir=runs/NEW_RUN "
            f"--config.init.checkpoint={workdir}   # fine-tune",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; `argv` defaults to `sys.argv` (program name first)."""
    argv = list(sys.argv if argv is None else argv)
    fv = flags.FlagValues()
    config_flag = _define_flags(fv, argv)
    try:
        rest = fv(argv)
        if len(rest) > 1:
            raise flags.Error(f"unexpected arguments: {rest[1:]}")
        if fv.config is None or fv.deeplab2 is None or fv.workdir is None:
            raise flags.Error("--deeplab2, --config and --workdir are required")
        config = config_flag.value
    except (flags.Error, ValueError, AttributeError, KeyError, OSError) as e:
        # A locked config reports an unknown override as AttributeError(KeyError(message)).
        while e.args and isinstance(e.args[0], BaseException):
            e = e.args[0]
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"vipdl-convert-checkpoint: {message}\n" + _USAGE.format(prog=argv[0]),
              file=sys.stderr)
        raise SystemExit(2) from None

    console.quiet_library_logs()
    # TensorFlow's start-up banner says nothing about the conversion.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from vipdl.convert import deeplab2

    try:
        source = deeplab2.open_tf_checkpoint(fv.deeplab2)
        conversion = deeplab2.convert_checkpoint(
            source, config, fv.workdir, overwrite=fv.overwrite,
            ignore_prefixes=tuple(fv.ignore_prefix),
        )
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary(conversion, checkpoint=source.name,
                  config_file=config_flags.get_config_filename(fv["config"]),
                  workdir=fv.workdir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

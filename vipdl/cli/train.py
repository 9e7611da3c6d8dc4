r"""`vipdl-train`: train (or resume) a model from a config file.

  vipdl-train --config=configs/synthetic.py --workdir=/tmp/vip_synth
  vipdl-train --config=configs/vip_deeplab_cityscapes_dvps_r50.py --workdir=runs/dvps \
      --config.data.data_dir=/data/tfds --config.optim.grad_accum_steps=4

Rerunning the same command resumes from `<workdir>/checkpoints`. The config is locked: a
misspelt `--config.a.b=...` override fails and names the closest valid field. Multi-host runs
start `jax.distributed` automatically under TPU-pod / Slurm / Open MPI launchers, or explicitly
with `--coordinator_address`, `--num_processes` and `--process_id`.
"""

from __future__ import annotations

import logging
import sys

from absl import flags
from ml_collections import config_flags

from vipdl.cli import console


def _define_flags(fv: flags.FlagValues, argv: list[str]):
    # A private FlagValues: importing this module defines no global flags, so it can live in one
    # process with the other vipdl CLIs (tests, notebooks).
    config = config_flags.DEFINE_config_file(
        "config",
        None,
        "Training config file, configs/<name>.py[:args].",
        flag_values=fv,
        lock_config=True,
        sys_argv=argv,  # The override flags (--config.a.b) are registered from these.
    )
    flags.DEFINE_string(
        "workdir", None, "Run directory (checkpoints, TensorBoard, config).", flag_values=fv
    )
    flags.DEFINE_enum(
        "distributed",
        "auto",
        ["auto", "always", "never"],
        "Start jax.distributed: auto (detect a cluster launcher), always, or never.",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "coordinator_address", None, "host:port of process 0 (explicit setup).", flag_values=fv
    )
    flags.DEFINE_integer("num_processes", None, "Number of processes.", flag_values=fv)
    flags.DEFINE_integer("process_id", None, "Index of this process.", flag_values=fv)
    return config


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Console-script entry point; `argv` defaults to `sys.argv` (program name first).

    Exits with status 2 and a message on bad flags (including config typos).
    """
    argv = list(sys.argv if argv is None else argv)
    fv = flags.FlagValues()
    config_flag = _define_flags(fv, argv)
    try:
        rest = fv(argv)
        if len(rest) > 1:
            raise flags.Error(f"unexpected arguments: {rest[1:]}")
        if fv.config is None or fv.workdir is None:
            raise flags.Error("--config and --workdir are required")
        config = config_flag.value
    except (flags.Error, ValueError, AttributeError, KeyError, OSError) as e:
        # A locked config reports an unknown override as AttributeError(KeyError(message)).
        while e.args and isinstance(e.args[0], BaseException):
            e = e.args[0]
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(
            f"vipdl-train: {message}\nUsage: {argv[0]} --config=configs/<name>.py[:args] "
            "--workdir=DIR [--config.a.b=value ...]",
            file=sys.stderr,
        )
        raise SystemExit(2) from None

    from vipdl import parallel

    console.enable_compilation_cache()
    # Before anything touches a device.
    parallel.initialize_distributed(
        coordinator_address=fv.coordinator_address,
        num_processes=fv.num_processes,
        process_id=fv.process_id,
        mode=fv.distributed,
    )
    from vipdl import trainer

    logging.getLogger().setLevel(logging.INFO)
    # Our own progress lines stay; orbax/TFDS chatter goes unless VIPDL_VERBOSE is set.
    console.quiet_library_logs()
    metrics = trainer.train_and_evaluate(config, fv.workdir)
    summary = ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
    print(f"final: {summary}", flush=True)
    return metrics


if __name__ == "__main__":
    main()

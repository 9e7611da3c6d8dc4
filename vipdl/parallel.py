"""Device mesh, sharding rules, global batches and multi-process start-up.

One `jax.jit` train step runs over global arrays on a 2-D mesh `("data", "fsdp")`:

* the batch is split over both axes (every device sees different examples);
* parameters and optimizer state are replicated when `fsdp == 1`; with `fsdp > 1` each array of
  at least `min_fsdp_size` elements is split along its largest dimension divisible by `fsdp`
  (ZeRO-3 style: XLA all-gathers weights for the forward pass and reduce-scatters gradients).

BatchNorm statistics computed under jit over a batch-sharded array are global batch statistics,
i.e. synchronised BatchNorm as in deeplab2, without any explicit collective here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)

# Environment variables set by launchers that start one process per host/task; their presence
# means `jax.distributed.initialize()` can discover the cluster by itself.
_CLUSTER_ENV = (
    "JAX_COORDINATOR_ADDRESS",
    "SLURM_STEP_NUM_TASKS",
    "OMPI_COMM_WORLD_SIZE",
    "TPU_WORKER_HOSTNAMES",
    "MEGASCALE_COORDINATOR_ADDRESS",
)


def _launched_as_cluster() -> bool:
    for name in _CLUSTER_ENV:
        value = os.environ.get(name, "")
        if name == "TPU_WORKER_HOSTNAMES":
            if "," in value:  # A single-host TPU VM lists only itself.
                return True
        elif name in ("SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE"):
            if value.isdigit() and int(value) > 1:
                return True
        elif value:
            return True
    return False


def initialize_distributed(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    mode: str = "auto",
) -> bool:
    """Starts `jax.distributed` when the run spans several processes.

    Must be called before anything touches a JAX device.

    Args:
      coordinator_address: "host:port" of process 0. When given (with `num_processes` and
        `process_id`), the cluster is set up explicitly.
      num_processes: total number of processes.
      process_id: index of this process in [0, num_processes).
      mode: "auto" initialises when explicit flags are given or a cluster launcher (TPU pod,
        Slurm, Open MPI) is detected from the environment; "always" calls
        `jax.distributed.initialize()` with auto-detection regardless; "never" skips it.

    Returns:
      Whether `jax.distributed` was initialised.
    """
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"distributed mode must be 'auto', 'always' or 'never', got {mode!r}")
    explicit = (coordinator_address, num_processes, process_id)
    if any(v is not None for v in explicit) and not all(v is not None for v in explicit):
        raise ValueError(
            "coordinator_address, num_processes and process_id must be given together, got "
            f"{coordinator_address!r}, {num_processes!r}, {process_id!r}"
        )
    if mode == "never":
        return False
    if coordinator_address is not None:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    elif mode == "always" or _launched_as_cluster():
        jax.distributed.initialize()
    else:
        return False
    logging.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


def create_mesh(data: int = -1, fsdp: int = 1, devices: list | None = None) -> Mesh:
    """A `("data", "fsdp")` mesh with Auto axes over `devices` (default: all devices).

    Args:
      data: size of the data axis; -1 uses all devices left after `fsdp`.
      fsdp: size of the parameter-sharding axis.
      devices: devices to use, default `jax.devices()`.

    Raises:
      ValueError: if the axis sizes do not multiply to the device count.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if fsdp < 1 or n % fsdp:
        raise ValueError(f"mesh.fsdp={fsdp} must be >= 1 and divide the {n} devices")
    if data == -1:
        data = n // fsdp
    if data < 1 or data * fsdp != n:
        raise ValueError(f"mesh.data={data} x mesh.fsdp={fsdp} must equal the {n} devices")
    if len({d.process_index for d in devices}) > 1:
        # Keeps each process's devices contiguous along the flattened batch axis, so a process's
        # local rows map to its own devices (make_array_from_process_local_data relies on it).
        devices = sorted(devices, key=lambda d: (d.process_index, d.id))
    grid = np.asarray(devices, dtype=object).reshape(data, fsdp)
    # Auto axes (jax.make_mesh defaults to Explicit on jax >= 0.9): sharding is propagated by XLA.
    return Mesh(grid, BATCH_AXES, axis_types=(AxisType.Auto, AxisType.Auto))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def param_partition_spec(shape: tuple[int, ...], fsdp: int, min_fsdp_size: int) -> PartitionSpec:
    """The FSDP rule for one array: split the largest dim divisible by `fsdp`, else replicate.

    Small arrays (biases, BN vectors, scalars) stay replicated: sharding them saves nothing and
    adds a collective per use.
    """
    if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < min_fsdp_size:
        return PartitionSpec()
    order = sorted(range(len(shape)), key=lambda i: -shape[i])
    for axis in order:
        if shape[axis] % fsdp == 0:
            spec = [None] * len(shape)
            spec[axis] = FSDP_AXIS
            return PartitionSpec(*spec)
    return PartitionSpec()


def state_shardings(abstract_state, mesh: Mesh, *, min_fsdp_size: int = 2**14):
    """Target shardings (same tree as `abstract_state`) for parameters / optimizer state.

    Args:
      abstract_state: a pytree of arrays or `jax.ShapeDtypeStruct`s (e.g. from `nnx.eval_shape`).
      mesh: the training mesh.
      min_fsdp_size: arrays with fewer elements are replicated.
    """
    fsdp = mesh.shape[FSDP_AXIS]
    return jax.tree.map(
        lambda x: NamedSharding(mesh, param_partition_spec(tuple(x.shape), fsdp, min_fsdp_size)),
        abstract_state,
    )


def process_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """Rows each process must load so the global batch splits evenly over devices."""
    num_shards = mesh.shape[DATA_AXIS] * mesh.shape[FSDP_AXIS]
    if global_batch_size % num_shards:
        raise ValueError(
            f"data.batch_size={global_batch_size} must be divisible by the {num_shards} "
            "devices of the mesh"
        )
    return global_batch_size // jax.process_count()


def make_global_batch(
    local_batch: Mapping[str, np.ndarray], sharding: NamedSharding
) -> dict[str, jax.Array]:
    """Assembles this process's rows into global arrays sharded on the batch axis.

    Args:
      local_batch: numpy arrays with the same leading (per-process batch) size. Non-array
        entries (strings, ids) are dropped: they cannot live on device.
      sharding: typically `batch_sharding(mesh)`.

    Returns:
      `{key: jax.Array}` whose leading size is `per_process_batch * jax.process_count()`.
    """
    arrays = {
        k: np.asarray(v) for k, v in local_batch.items() if np.asarray(v).dtype.kind in "biuf"
    }
    sizes = {k: v.shape[0] if v.ndim else None for k, v in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"batch entries disagree on the leading (batch) size: {sizes}")
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in arrays.items()}

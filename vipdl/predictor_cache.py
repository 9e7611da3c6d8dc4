"""The predictor's start-up cache: a checkpoint's weights and traced functions, kept on disk.

Loading a checkpoint for prediction costs seconds that do not depend on the video: reading it
with Orbax, building the model, and tracing the device functions (JAX's persistent compilation
cache skips only the compilation after that). The first `VideoPredictor.from_checkpoint` run with
a cache directory writes what these steps produce; later runs of the same checkpoint and config
read it back and skip all three (docs/inference.md#start-up):

    <cache_dir>/predictors/<entry>/
        entry.json      the predictor settings the config gives, the weight paths, the source
        weights.npz     the parameters and BatchNorm statistics (a copy of the checkpoint's)
        functions/<key>.npz   the serialized device functions (`jax.export`, weights as an
                              argument) of one frame size, batch size and option set

An entry is named by a hash of the checkpoint (its step directory, and the size and modification
time of every file in it), of the config and of the vipdl / jax / jaxlib versions and the
device, so a retrained checkpoint, an edited config or an upgrade never reads a stale entry.
Entries are written to a temporary directory and renamed into place, so a crash leaves none
half-written; a damaged one is reported, deleted and rebuilt. Only the `MAX_ENTRIES` most recently
used entries are kept. Deleting the directory is always safe.

This module only stores and reads; `vipdl.inference` traces and runs the functions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

import vipdl
from vipdl import formats

SUBDIR = "predictors"
ENTRY_FILE = "entry.json"
WEIGHTS_FILE = "weights.npz"
FUNCTIONS_DIR = "functions"
ENTRY_FORMAT = 1
MAX_ENTRIES = 4  # Each holds a copy of one checkpoint's weights.
_STATE = "state"  # The checkpoint item holding the weights (`vipdl.checkpointing.STATE`).

log = logging.getLogger(__name__)


class CacheError(ValueError):
    """A cache entry that cannot be read (damaged, or written by an incompatible version)."""


def quick_step_dir(path: str | os.PathLike, which: str) -> Path | None:
    """The step directory `vipdl.checkpointing.resolve_step_dir(path, which)` resolves to, found by
    listing the directory (no Orbax); None when that needs Orbax ("best", remote paths).

    A finished step is a directory named by its step number holding the `state` item (Orbax
    writes a step under a temporary name and renames it when complete).
    """
    text = os.fspath(path)
    if "://" in text:
        return None
    p = Path(text).absolute()
    if (p / _STATE).is_dir():
        return p
    if which != "latest":
        return None
    directory = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    try:
        steps = [int(c.name) for c in directory.iterdir()
                 if c.name.isdigit() and (c / _STATE).is_dir()]
    except OSError:
        return None
    return directory / str(max(steps)) if steps else None


def _fingerprint(step_dir: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime ns) of every file of the step's weights item."""
    out = []
    for root, _, files in os.walk(step_dir / _STATE):
        for name in files:
            st = os.stat(os.path.join(root, name))
            out.append((os.path.relpath(os.path.join(root, name), step_dir), st.st_size,
                        st.st_mtime_ns))
    return sorted(out)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:32]


def _environment() -> dict[str, Any]:
    import jaxlib

    device = jax.devices()[0]
    return {"vipdl": vipdl.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "platform": device.platform, "device_kind": device.device_kind}


def entry_name(step_dir: Path, config_text: str) -> str:
    """The entry of a checkpoint step and config text (see the module docstring)."""
    return _digest({"format": ENTRY_FORMAT, "step_dir": os.path.realpath(step_dir),
                    "files": _fingerprint(step_dir), "config": config_text,
                    "environment": _environment()})


def function_key(spec: Mapping[str, Any]) -> str:
    """File name (without suffix) of the functions described by a JSON-able `spec`."""
    return _digest(spec)


# Arrays whose dtype numpy cannot store (bfloat16 and other ml_dtypes) are stored as unsigned
# integers of the same width and viewed back on load.
def _storable(a: np.ndarray) -> np.ndarray:
    return a if a.dtype.isbuiltin else a.view(f"u{a.dtype.itemsize}")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One checkpoint's cache entry.

    Attributes:
      path: the entry directory; None for an entry that could not be written (kept in memory,
        nothing is stored).
      settings: the predictor settings written with it (JSON-able; `vipdl.inference` defines
        them).
      weight_paths: the weight arrays' paths ("a/b/kernel"), in argument order.
      weight_dtypes: their dtype names.
      source: where the weights came from (step directory); informational.
    """

    path: Path | None
    settings: Mapping[str, Any]
    weight_paths: tuple[str, ...]
    weight_dtypes: tuple[str, ...]
    source: Mapping[str, Any]

    def weights(self) -> list[np.ndarray]:
        """The weight arrays, in `weight_paths` order.

        Raises:
          CacheError: the file is missing, damaged or does not hold the listed arrays.
        """
        if self.path is None:
            raise CacheError("this entry was not stored; its weights are not on disk")
        path = self.path / WEIGHTS_FILE
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = [data[str(i)] for i in range(len(self.weight_paths))]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise CacheError(f"{path}: cannot read the cached weights ({e})") from None
        return [a.view(jax.numpy.dtype(d)) if a.dtype.name != d else a
                for a, d in zip(arrays, self.weight_dtypes)]

    def functions(self, key: str) -> dict[str, jax.export.Exported] | None:
        """The serialized functions stored under `key`, deserialized; None when absent.

        Raises:
          CacheError: the file exists but cannot be deserialized by this jax.
        """
        if self.path is None:
            return None
        path = self.path / FUNCTIONS_DIR / f"{key}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                blobs = {name: data[name].tobytes() for name in data.files}
            return {name: jax.export.deserialize(bytearray(b)) for name, b in blobs.items()}
        except Exception as e:  # Truncated, or an incompatible jax: jax raises several types.
            raise CacheError(f"{path}: cannot load the cached functions ({e})") from None

    def store_functions(self, key: str, serialized: Mapping[str, bytes]) -> None:
        """Writes functions serialized by `jax.export` under `key` (atomically: a reader sees
        all or none)."""
        if self.path is None:
            return
        buffer = io.BytesIO()
        np.savez(buffer, **{name: np.frombuffer(b, np.uint8) for name, b in serialized.items()})
        (self.path / FUNCTIONS_DIR).mkdir(exist_ok=True)
        formats.atomic_write_bytes(self.path / FUNCTIONS_DIR / f"{key}.npz", buffer.getvalue())


class Store:
    """The `predictors` folder of a cache directory."""

    def __init__(self, cache_dir: str | os.PathLike, *, max_entries: int = MAX_ENTRIES):
        self.root = Path(cache_dir) / SUBDIR
        self.max_entries = int(max_entries)

    def open(self, name: str) -> Entry | None:
        """The entry `name`, marked as used; None when there is none. A damaged entry is
        logged and deleted (the caller rebuilds it)."""
        path = self.root / name
        if not path.is_dir():
            return None
        try:
            entry = _read_entry(path)
        except CacheError as e:
            self.discard(path, e)
            return None
        try:
            os.utime(path)  # Least-recently-used order for `prune`.
        except OSError:
            pass
        return entry

    def create(self, name: str, *, settings: Mapping[str, Any], weight_paths: Sequence[str],
               weights: Sequence[np.ndarray], source: Mapping[str, Any]) -> Entry:
        """Writes a new entry (weights + settings) and returns it; an entry another process
        finished meanwhile is kept. Prunes the least recently used entries beyond
        `max_entries`. When the directory cannot be written (read-only, full), logs a warning
        and returns an entry held in memory only (`path` None): the run goes on uncached."""
        arrays = [np.asarray(w) for w in weights]
        meta = {"format": ENTRY_FORMAT, "settings": dict(settings),
                "weight_paths": list(weight_paths), "weight_dtypes": [a.dtype.name for a in arrays],
                "source": dict(source)}
        try:
            self._write(name, meta, arrays)
        except OSError as e:
            log.warning("start-up cache: cannot write to %s (%s); this run goes without it",
                        self.root, e)
            return Entry(None, meta["settings"], tuple(meta["weight_paths"]),
                         tuple(meta["weight_dtypes"]), meta["source"])
        self.prune()
        entry = self.open(name)
        if entry is None:
            raise CacheError(f"{self.root / name}: the entry just written cannot be read")
        return entry

    def _write(self, name: str, meta: dict[str, Any], arrays: list[np.ndarray]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.root))
        try:
            np.savez(tmp / WEIGHTS_FILE, **{str(i): _storable(a) for i, a in enumerate(arrays)})
            (tmp / FUNCTIONS_DIR).mkdir()
            # entry.json last: a directory without it is never read as an entry.
            formats.atomic_write_json(tmp / ENTRY_FILE, meta)
            os.chmod(tmp, 0o777 & ~_umask())
            try:
                os.rename(tmp, self.root / name)
            except OSError:  # Another process created it first: use theirs.
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def prune(self) -> None:
        """Deletes the least recently used entries beyond `max_entries` and stale temporaries."""
        try:
            children = list(self.root.iterdir())
        except OSError:
            return
        entries = [c for c in children if not c.name.startswith(".") and c.is_dir()]
        entries.sort(key=_mtime, reverse=True)
        for stale in entries[self.max_entries:]:
            shutil.rmtree(stale, ignore_errors=True)

    def discard(self, path: Path, reason: Exception) -> None:
        log.warning("start-up cache: %s; deleting %s (it is rebuilt)", reason, path)
        shutil.rmtree(path, ignore_errors=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _read_entry(path: Path) -> Entry:
    meta_path = path / ENTRY_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CacheError(f"{meta_path}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != ENTRY_FORMAT:
        raise CacheError(f"{meta_path}: not an entry of format {ENTRY_FORMAT}")
    try:
        paths = tuple(str(p) for p in meta["weight_paths"])
        dtypes = tuple(str(d) for d in meta["weight_dtypes"])
        settings, source = dict(meta["settings"]), dict(meta["source"])
    except (KeyError, TypeError, ValueError) as e:
        raise CacheError(f"{meta_path}: missing or bad field ({e})") from None
    if len(paths) != len(dtypes):
        raise CacheError(f"{meta_path}: {len(paths)} weight paths but {len(dtypes)} dtypes")
    return Entry(path, settings, paths, dtypes, source)

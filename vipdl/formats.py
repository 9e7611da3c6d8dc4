"""Every on-disk encoding vipdl reads or writes, and the atomic file helpers.

In memory a panoptic map is int `semantic * label_divisor + instance` (ground truth, per-frame
predictions); tracked predictions are a segment table, class and track id per segment, with no
limit on track ids (docs/inference.md#track-ids). On disk:

* RGB segment ids (Cityscapes-VPS / COCO panoptic PNGs, and the TFDS label feature):
  id = R + 256 G + 256^2 B.
* KITTI-STEP / MOTChallenge-STEP label PNG: R = semantic, G * 256 + B = instance, so at most
  255 classes and instance (track) ids up to `STEP_MAX_INSTANCE` = 65535.
* Cityscapes-DVPS ground truth `*_gtFine_instanceTrainIds.png`: one 16-bit channel of
  class * 1000 + instance, void = class 32 (whatever the in-memory ignore label is).
* Cityscapes-DVPS prediction PNG (what `eval_dvpq.py` reads): channel 0 = class,
  channel 1 = instance.
* VIPSeg `panomasks`: 0 void; v < 125: class v - 1; else class v // 100 - 1, instance v % 100.
* Depth PNG: uint16 metres * 256, 0 = no depth.

Readers raise `FormatError` (a `ValueError`) naming the file and what was expected. Writers
write to a temporary file in the target directory and rename it into place, so an interrupted
run never leaves a half-written file. This module depends on numpy and PIL only.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

DEPTH_SCALE = 256.0  # Depth PNG value = metres * 256.
DVPS_LABEL_DIVISOR = 1000  # Cityscapes-DVPS label PNG = class * 1000 + instance.
DVPS_VOID_CLASS = 32  # Cityscapes-DVPS void class in the label PNGs.
MAX_RGB_ID = 1 << 24
STEP_MAX_INSTANCE = (1 << 16) - 1  # G * 256 + B.

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


class FormatError(ValueError):
    """A file that is missing, cannot be decoded or is not in the expected encoding.

    Attributes:
      path: the file (str).
      problem: what is wrong, without the file name.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        # Both in `args`, so the error survives pickling (worker processes re-raise it).
        super().__init__(os.fspath(path), problem)
        self.path = os.fspath(path)
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


# --------------------------------------------------------------------------------------------
# Atomic writes.


_FILE_MODE: int | None = None


def new_file_mode() -> int:
    """The permission bits a plain `open(path, "w")` would give a new file (0o666 minus the
    umask). Temporary files from `tempfile.mkstemp` are 0o600; renamed into place they would
    leave outputs unreadable to other users, so atomic writes set this mode first."""
    global _FILE_MODE
    if _FILE_MODE is None:
        umask = os.umask(0o022)  # Reading the umask means setting it; put it straight back.
        os.umask(umask)
        _FILE_MODE = 0o666 & ~umask
    return _FILE_MODE


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` via a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes `obj` as JSON (NaN -> error; use None) atomically."""
    atomic_write_bytes(path, json.dumps(obj, indent=1, allow_nan=False).encode())


def encode_png(array: np.ndarray, *, what: str = "array", compress_level: int = 6) -> bytes:
    """Lossless PNG bytes of uint8 [h, w] / [h, w, 3|4] or uint16 [h, w]; `what` names errors."""
    array = np.ascontiguousarray(array)
    grey = array.ndim == 2 and array.dtype in (np.uint8, np.uint16)
    colour = array.ndim == 3 and array.shape[2] in (3, 4) and array.dtype == np.uint8
    if not (grey or colour):
        raise ValueError(
            f"{what}: cannot write a {array.dtype} array of shape {array.shape} as PNG "
            "(expected uint8 [h, w] / [h, w, 3 or 4] or uint16 [h, w])"
        )
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def atomic_write_png(
    path: str | os.PathLike, array: np.ndarray, *, compress_level: int = 6
) -> None:
    """Writes uint8 [h, w] / [h, w, 3|4] or uint16 [h, w] as a lossless PNG, atomically."""
    atomic_write_bytes(path, encode_png(array, what=os.fspath(path), compress_level=compress_level))


def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Renames directory `new` to `target`; an existing `target` goes only once `new` is in place.

    If the final rename fails the old `target` is put back, so `target` is never left missing.
    """
    new, target = Path(new), Path(target)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        old.rmdir()
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Reading images with errors that name the file.


def _decode(source, path: str) -> Image.Image:
    try:
        image = Image.open(source)
    except FileNotFoundError:
        raise FormatError(path, "file not found") from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, zlib.error, ...
        raise FormatError(path, f"cannot decode image ({type(e).__name__}: {e})") from None
    try:
        image.load()
    except Exception as e:  # Truncated or corrupt pixel data.
        image.close()
        raise FormatError(path, f"cannot decode image ({type(e).__name__}: {e})") from None
    return image


def _to_array(image: Image.Image, path: str) -> np.ndarray:
    if image.mode in _SIXTEEN_BIT_MODES:
        array = np.asarray(image)
        if array.dtype != np.uint16:  # Older Pillow decodes 16-bit PNGs as mode I (int32).
            array = array.astype(np.int64)
            if array.size and (array.min() < 0 or array.max() > 65535):
                raise FormatError(path, "16-bit values out of range")
            array = array.astype(np.uint16)
        return array
    if image.mode in ("RGB", "RGBA", "L", "P"):
        return np.asarray(image)
    raise FormatError(path, f"unsupported image mode {image.mode}")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """`(width, height)` of a picture from its header (pixels are not decoded)."""
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise FormatError(path, "file not found") from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ...
        raise FormatError(path, f"cannot decode image ({type(e).__name__}: {e})") from None


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Decodes an image file fully, values unchanged.

    Returns:
      uint8 [h, w, c] / [h, w] (palette PNGs give their indices), or uint16 [h, w] for 16-bit
      grey PNGs (never int32: old and new Pillow give the same values).
    """
    path = os.fspath(path)
    with _decode(path, path) as image:
        return _to_array(image, path)


def decode_png_bytes(data: bytes, what: str) -> np.ndarray:
    """`read_png` of in-memory file bytes; `what` names the source in errors."""
    with _decode(io.BytesIO(data), what) as image:
        return _to_array(image, what)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Reads a picture (PNG, JPEG, ...) as uint8 [h, w, 3]; grey, palette and RGBA are converted."""
    path = os.fspath(path)
    with _decode(path, path) as image:
        if image.mode not in ("RGB", "RGBA", "L", "P"):
            raise FormatError(path, f"expected an 8-bit colour image, got image mode {image.mode}")
        return np.asarray(image.convert("RGB"))


def read_rgb_png(path: str | os.PathLike, expected: str = "an 8-bit RGB PNG") -> np.ndarray:
    """An 8-bit RGB(A) PNG as uint8 [h, w, 3], values unchanged (alpha dropped).

    Args:
      path: the file.
      expected: what the file should be, for the error message.
    """
    array = read_png(path)
    if array.ndim != 3 or array.shape[2] < 3 or array.dtype != np.uint8:
        raise FormatError(path, f"expected {expected}, got shape {array.shape} dtype {array.dtype}")
    return array[..., :3]


def read_grey_png(path: str | os.PathLike, expected: str = "a single-channel PNG") -> np.ndarray:
    """A single-channel 8- or 16-bit PNG as uint8 / uint16 [h, w], values unchanged."""
    array = read_png(path)
    if array.ndim != 2:
        raise FormatError(path, f"expected {expected}, got shape {array.shape}")
    return array


# --------------------------------------------------------------------------------------------
# Panoptic maps.


def panoptic_array(panoptic: np.ndarray, what: str) -> np.ndarray:
    """Checks an integer panoptic map [height, width] with values >= 0; returns it as int64."""
    panoptic = np.asarray(panoptic)
    if panoptic.ndim != 2 or not np.issubdtype(panoptic.dtype, np.integer):
        raise ValueError(
            f"{what}: expected an integer panoptic map [height, width], "
            f"got {panoptic.dtype} of shape {panoptic.shape}"
        )
    if panoptic.size and panoptic.min() < 0:
        raise ValueError(f"{what}: negative panoptic value {panoptic.min()}")
    return panoptic.astype(np.int64)


def _write(path: str | os.PathLike, encode, *args, **kwargs) -> None:
    """Encodes with `encode(*args, **kwargs)` and writes the PNG; encoding errors name `path`."""
    try:
        array = encode(*args, **kwargs)
    except ValueError as e:
        raise FormatError(path, str(e)) from None
    atomic_write_png(path, array)


# RGB segment ids ----------------------------------------------------------------------------


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids of an RGB label: R + 256 G + 256^2 B.

    Args:
      rgb: uint8 [height, width, 3].

    Returns:
      int32 [height, width].
    """
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an RGB array [height, width, 3], got shape {rgb.shape}")
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_id`: int [height, width] in [0, 2^24) -> uint8 [height, width, 3]."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= MAX_RGB_ID):
        raise ValueError(
            f"ids must be in [0, 2^24) to fit an RGB PNG, got [{ids.min()}, {ids.max()}]"
        )
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)


def read_rgb_ids(path: str | os.PathLike) -> np.ndarray:
    """Segment ids of an RGB PNG as int32 [height, width]."""
    path = os.fspath(path)
    with _decode(path, path) as image:
        if image.mode == "RGB":
            # Pillow keeps RGB pixels as 4 bytes (R, G, B, pad): read them as one little-endian
            # word each and drop the pad byte, instead of widening three channels.
            width, height = image.size
            words = np.frombuffer(image.tobytes("raw", "RGBX"), "<u4").reshape(height, width)
            return (words & np.uint32(0xFFFFFF)).view(np.int32)
    return rgb_to_id(read_rgb_png(path, "an 8-bit RGB PNG of segment ids"))


def write_rgb_ids(path: str | os.PathLike, ids: np.ndarray) -> None:
    """Writes int segment ids [height, width] in [0, 2^24) as an RGB PNG, atomically."""
    _write(path, id_to_rgb, ids)


# KITTI-STEP / MOTChallenge-STEP -------------------------------------------------------------


def decode_step_rgb(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """STEP RGB uint8 [h, w, 3] -> (semantic = R, instance = G * 256 + B), int32 [h, w] each."""
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an RGB array [height, width, 3], got shape {rgb.shape}")
    rgb = rgb.astype(np.int32)
    return rgb[..., 0], rgb[..., 1] * 256 + rgb[..., 2]


def step_rgb_to_panoptic(rgb: np.ndarray, label_divisor: int) -> np.ndarray:
    """STEP RGB uint8 [h, w, 3] -> int32 panoptic `semantic * label_divisor + instance`."""
    semantic, instance = decode_step_rgb(rgb)
    if instance.size and instance.max() >= label_divisor:
        raise ValueError(f"instance id {instance.max()} does not fit label_divisor {label_divisor}")
    return semantic * label_divisor + instance


def panoptic_to_step_rgb(panoptic: np.ndarray, label_divisor: int) -> np.ndarray:
    """int [h, w] panoptic -> STEP RGB uint8 [h, w, 3] (semantic <= 255, instance < 65536)."""
    panoptic = np.asarray(panoptic).astype(np.int64)
    semantic = panoptic // label_divisor
    instance = panoptic % label_divisor
    if semantic.size and (semantic.max() > 255 or instance.max() >= 65536):
        raise ValueError(
            f"semantic must be <= 255 and instance < 65536 for the STEP encoding, got max "
            f"semantic {semantic.max()} and max instance {instance.max()}"
        )
    return np.stack([semantic, instance // 256, instance % 256], axis=-1).astype(np.uint8)


class FormatLimitError(ValueError):
    """A value the on-disk format cannot hold (e.g. a track id beyond 16 bits in a STEP PNG)."""


def step_colors(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """STEP RGB of (class, instance) pairs: uint8 `[..., 3]` (R = class, G * 256 + B = instance).

    Raises:
      FormatLimitError: a class above 255 or an instance above `STEP_MAX_INSTANCE`.
    """
    semantic = np.asarray(semantic, np.int64)
    instance = np.asarray(instance, np.int64)
    if semantic.size and (semantic.min() < 0 or semantic.max() > 255):
        raise FormatLimitError(f"STEP PNGs hold classes 0..255, got {semantic.max()}")
    if instance.size and (instance.min() < 0 or instance.max() > STEP_MAX_INSTANCE):
        raise FormatLimitError(
            f"STEP PNGs hold track ids up to {STEP_MAX_INSTANCE} (G * 256 + B), got "
            f"{instance.max()}"
        )
    return np.stack([semantic, instance >> 8, instance & 255], axis=-1).astype(np.uint8)


def write_step_segments(path: str | os.PathLike, segment_map: np.ndarray, semantic: np.ndarray,
                        instance: np.ndarray) -> None:
    """Writes a segment table as a STEP PNG, atomically.

    Args:
      segment_map: int `[h, w]` row of each pixel in the table.
      semantic, instance: int `[k]` class and instance (track) id of each row.
    """
    try:
        table = step_colors(semantic, instance)
    except FormatLimitError as e:
        raise FormatLimitError(f"{os.fspath(path)}: {e}") from None
    atomic_write_png(path, table[np.asarray(segment_map)])


def read_step_png(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A STEP PNG as (semantic, instance) int32 [h, w] each."""
    rgb = read_rgb_png(path, "an 8-bit RGB PNG (R = semantic, G * 256 + B = instance)")
    return decode_step_rgb(rgb)


def write_step_png(path: str | os.PathLike, panoptic: np.ndarray, *, label_divisor: int) -> None:
    """Writes int panoptic [h, w] `semantic * label_divisor + instance` as STEP PNG, atomically."""
    panoptic = panoptic_array(panoptic, os.fspath(path))
    _write(path, panoptic_to_step_rgb, panoptic, label_divisor)


# Cityscapes-DVPS ----------------------------------------------------------------------------


def decode_dvps_label(raw: np.ndarray, *, label_divisor: int, ignore_label: int) -> np.ndarray:
    """Cityscapes-DVPS label values (class * 1000 + instance, void class 32) -> panoptic.

    Args:
      raw: int [h, w] values of a `*_gtFine_instanceTrainIds.png`.
      label_divisor, ignore_label: the in-memory convention; void becomes `ignore_label`
        with instance 0.

    Returns:
      int64 [h, w] `semantic * label_divisor + instance` (class ids not validated).
    """
    raw = np.asarray(raw, np.int64)
    semantic, instance = raw // DVPS_LABEL_DIVISOR, raw % DVPS_LABEL_DIVISOR
    void = semantic == DVPS_VOID_CLASS
    semantic = np.where(void, ignore_label, semantic)
    instance = np.where(void, 0, instance)
    return semantic * label_divisor + instance


def encode_dvps_label(panoptic: np.ndarray, *, label_divisor: int, ignore_label: int) -> np.ndarray:
    """In-memory panoptic -> Cityscapes-DVPS uint16 label (ignore -> class 32, D -> 1000)."""
    panoptic = np.asarray(panoptic, np.int64)
    semantic = panoptic // label_divisor
    instance = panoptic % label_divisor
    void = semantic == ignore_label
    if (
        np.any(~void & (semantic >= DVPS_VOID_CLASS))
        or instance.max(initial=0) >= DVPS_LABEL_DIVISOR
    ):
        raise ValueError("Cityscapes-DVPS labels need class ids < 32 and instance ids < 1000")
    out = np.where(
        void, DVPS_VOID_CLASS * DVPS_LABEL_DIVISOR, semantic * DVPS_LABEL_DIVISOR + instance
    )
    return out.astype(np.uint16)


def write_dvps_label_png(
    path: str | os.PathLike, panoptic: np.ndarray, *, label_divisor: int, ignore_label: int
) -> None:
    """Writes a Cityscapes-DVPS ground-truth label PNG (see `encode_dvps_label`), atomically."""
    panoptic = panoptic_array(panoptic, os.fspath(path))
    _write(
        path, encode_dvps_label, panoptic, label_divisor=label_divisor, ignore_label=ignore_label
    )


def encode_dvps_prediction(panoptic: np.ndarray, label_divisor: int) -> np.ndarray:
    """int panoptic [h, w] -> DVPS prediction uint8 [h, w, 3] (class, instance, 0); both <= 255."""
    panoptic = np.asarray(panoptic, np.int64)
    semantic, instance = panoptic // label_divisor, panoptic % label_divisor
    if panoptic.size and (semantic.max() > 255 or instance.max() > 255):
        raise ValueError(
            f"class and instance must be <= 255 for the DVPS prediction PNG, got "
            f"max class {semantic.max()} and max instance {instance.max()}"
        )
    return np.stack([semantic, instance, np.zeros_like(semantic)], axis=-1).astype(np.uint8)


def read_dvps_prediction_png(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A DVPS prediction PNG as (class = channel 0, instance = channel 1), int32 [h, w] each."""
    array = read_png(path)
    if array.ndim != 3 or array.shape[2] < 2 or array.dtype != np.uint8:
        raise FormatError(
            path,
            "expected an 8-bit PNG with class in channel 0 and instance in channel 1, got "
            f"shape {array.shape} dtype {array.dtype}",
        )
    return array[..., 0].astype(np.int32), array[..., 1].astype(np.int32)


def write_dvps_panoptic_png(
    path: str | os.PathLike, panoptic: np.ndarray, *, label_divisor: int
) -> None:
    """Writes a Cityscapes-DVPS prediction PNG (channel 0 = class, channel 1 = instance).

    This is the format `eval_dvpq.py` reads; class and instance ids must be <= 255.
    """
    panoptic = panoptic_array(panoptic, os.fspath(path))
    _write(path, encode_dvps_prediction, panoptic, label_divisor)


# VIPSeg ---------------------------------------------------------------------------------------


def decode_vipseg_mask(raw: np.ndarray, *, label_divisor: int, void_label: int) -> np.ndarray:
    """VIPSeg `panomasks` values -> int64 panoptic (class ids not validated).

    0 = void (-> `void_label`); 1 <= v < 125: class v - 1 without instance; v >= 125: class
    v // 100 - 1, instance v % 100 + 1 (so that instance 0 keeps meaning "no instance").
    """
    raw = np.asarray(raw, np.int64)
    thing = raw >= 125
    semantic = np.where(thing, raw // 100 - 1, raw - 1)
    instance = np.where(thing, raw % 100 + 1, 0)
    return np.where(raw == 0, void_label, semantic * label_divisor + instance)


# Depth ----------------------------------------------------------------------------------------


def depth_to_png(depth: np.ndarray) -> np.ndarray:
    """float depth [h, w] in metres (0 = none) -> uint16 [h, w] of round(depth * 256).

    Raises:
      ValueError if depth is not 2-D, finite, >= 0 and <= 255.99 m.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"expected depth [height, width], got shape {depth.shape}")
    if depth.size and (not np.isfinite(depth).all() or depth.min() < 0):
        raise ValueError("depth must be finite and >= 0")
    scaled = np.round(depth * DEPTH_SCALE)
    if scaled.size and scaled.max() > 65535:
        raise ValueError(f"depth {depth.max():.2f} m exceeds 255.99 m (uint16 / 256)")
    return scaled.astype(np.uint16)


def depth_from_png(values: np.ndarray) -> np.ndarray:
    """Depth PNG values (uint16 [h, w]) -> float32 [h, w] metres, 0 = none."""
    return (np.asarray(values).astype(np.float32) / np.float32(DEPTH_SCALE)).astype(np.float32)


def read_depth_png(path: str | os.PathLike) -> np.ndarray:
    """A depth PNG as float32 [h, w] metres (0 = none)."""
    return depth_from_png(read_grey_png(path, "a single-channel uint16 depth PNG"))


def write_depth_png(path: str | os.PathLike, depth: np.ndarray) -> None:
    """Writes float depth [h, w] (metres, 0 = none) as a uint16 PNG of depth * 256, atomically."""
    _write(path, depth_to_png, depth)

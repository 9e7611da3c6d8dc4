"""Frame readers and writers, and the frame <-> model-input geometry.

Readers stream: `read_frames` yields one uint8 `[height, width, 3]` RGB frame at a time, from a
video file (decoded by the ffmpeg binary bundled in the `imageio-ffmpeg` wheel), a folder of
images (natural sort order, so `f2.png` comes before `f10.png`) or a single image. Greyscale
frames are replicated to three channels, alpha channels are dropped, 16-bit images are scaled to
8 bits. Every frame of one input must have the same size.

Geometry (docs/inference.md#frame-size and docs/training.md#augmentation, evaluation): the model runs at a fixed size `padded_hw`. A frame that
fits is padded bottom/right with 127.5 (which the model normalises to exactly 0); a larger frame
is first resized down, keeping its aspect ratio, with an align-corners bilinear resize (deeplab2's
`resize_to_range` with `max_size` = the eval crop). Predictions are cropped back to the resized
region and label maps are resized back to the frame size with align-corners nearest neighbour
(depth with align-corners bilinear). `FrameGeometry` holds the sizes; the numpy functions here are
the reference the jitted versions in `vipdl.inference` are tested against.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")
PAD_VALUE = 127.5  # Mean pixel; `v / 127.5 - 1` maps it to 0 inside the model.


class VideoReadError(ValueError):
    """A video or image folder cannot be read, is empty, or has inconsistent frames."""


# ---------------------------------------------------------------------------------------------
# Frame normalisation.


def to_rgb_uint8(frame: np.ndarray, *, name: str = "frame") -> np.ndarray:
    """Converts a greyscale / grey+alpha / RGB / RGBA frame to uint8 `[height, width, 3]`.

    Args:
      frame: `[height, width]` or `[height, width, channels]` with 1, 2, 3 or 4 channels; dtype
        uint8, bool, uint16 (scaled by 255 / 65535) or another integer type with values in
        [0, 255]. Floating-point frames are rejected because 0..1 and 0..255 are both common and
        guessing wrong silently ruins the predictions.
      name: what to call the frame in error messages (e.g. its file name).

    Returns:
      uint8 `[height, width, 3]`, C-contiguous.
    """
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3 or frame.shape[-1] not in (1, 2, 3, 4):
        raise VideoReadError(
            f"{name}: expected [height, width] or [height, width, 1|2|3|4], got shape {frame.shape}"
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise VideoReadError(f"{name}: empty frame of shape {frame.shape}")
    if frame.dtype == np.uint8:
        pass
    elif frame.dtype == np.bool_:
        frame = frame.astype(np.uint8) * 255
    elif frame.dtype == np.uint16:
        frame = ((frame.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif np.issubdtype(frame.dtype, np.integer):
        if frame.min() < 0 or frame.max() > 255:
            raise VideoReadError(
                f"{name}: {frame.dtype} values must be in [0, 255], got "
                f"[{frame.min()}, {frame.max()}]"
            )
        frame = frame.astype(np.uint8)
    else:
        raise VideoReadError(
            f"{name}: expected an integer frame (uint8 0..255), got {frame.dtype}; convert it "
            "first, e.g. `(frame * 255).round().astype(np.uint8)` for values in [0, 1]"
        )
    channels = frame.shape[-1]
    if channels in (1, 2):  # Greyscale (+ alpha): replicate the grey channel.
        frame = np.repeat(frame[..., :1], 3, axis=-1)
    elif channels == 4:  # RGBA: the model has no use for transparency.
        frame = frame[..., :3]
    return np.ascontiguousarray(frame)


# ---------------------------------------------------------------------------------------------
# Readers.


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What is known about an input before decoding it.

    Attributes:
      path: the video file, image folder or image.
      kind: "video", "folder" or "image".
      height, width: frame size in pixels.
      fps: frames per second of a video file (None for images).
      num_frames: number of frames; an estimate (duration x fps) for video files.
    """

    path: str
    kind: str
    height: int
    width: int
    fps: float | None
    num_frames: int | None


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of `folder` (not recursive) in natural sort order."""
    folder = Path(folder)
    files = [
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _input_kind(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"input {str(path)!r} does not exist")
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return "image"
    return "video"


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Reads one image file as uint8 `[height, width, 3]` RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            # Palette and exotic modes have no direct array meaning; 16-bit greyscale stays
            # 16-bit so `to_rgb_uint8` can scale it.
            if image.mode not in ("L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "1"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError) as e:
        raise VideoReadError(f"{path}: cannot read image ({e})") from e
    return to_rgb_uint8(array, name=str(path))


def probe(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate and frame count of a video file, image folder or image.

    Raises:
      FileNotFoundError: `path` does not exist.
      VideoReadError: the input cannot be decoded or holds no frames.
    """
    path = Path(path)
    kind = _input_kind(path)
    if kind == "video":
        meta = _open_video(path)[1]
        width, height = meta["size"]
        fps = float(meta.get("fps") or 0.0) or None
        duration = meta.get("duration")
        num_frames = round(duration * fps) if fps and duration else None
        return VideoInfo(str(path), kind, height, width, fps, num_frames)
    files = [path] if kind == "image" else list_image_files(path)
    if not files:
        raise VideoReadError(
            f"{path}: folder holds no images (expected files ending in {', '.join(IMAGE_EXTENSIONS)})"
        )
    height, width = read_image(files[0]).shape[:2]
    return VideoInfo(str(path), kind, height, width, None, len(files))


def _open_video(path: Path):
    """Starts ffmpeg on `path`; returns (frame byte generator, metadata dict)."""
    import imageio_ffmpeg

    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: file is empty")
    generator = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        with _quiet_fork():
            meta = next(generator)  # Starts ffmpeg.
    except (OSError, RuntimeError, StopIteration) as e:
        generator.close()
        raise VideoReadError(
            f"{path}: cannot decode video with ffmpeg: {_ffmpeg_reason(e)}"
        ) from e
    if not meta.get("size") or min(meta["size"]) <= 0:
        generator.close()
        raise VideoReadError(f"{path}: ffmpeg reports no video stream")
    return generator, meta


@contextlib.contextmanager
def _quiet_fork():
    # JAX warns on any os.fork() in a multithreaded process; subprocess forks and immediately
    # execs ffmpeg, which is safe, so the warning would only be noise for every video opened.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        yield


def _ffmpeg_reason(error: BaseException) -> str:
    # imageio-ffmpeg puts ffmpeg's whole banner in the message; the last line says what failed.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def read_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Streams the frames of a video file, image folder or single image.

    Frames are decoded one at a time, so memory stays constant however long the video is.

    Args:
      path: a video file (anything ffmpeg decodes: mp4, avi, mov, mkv, webm, gif, ...), a folder
        of images (png, jpg, bmp, tif, webp; natural sort order) or one image.

    Yields:
      uint8 `[height, width, 3]` RGB frames, all of the same size.

    Raises:
      FileNotFoundError: `path` does not exist.
      VideoReadError: unreadable or empty input, or frames of different sizes.
    """
    path = Path(path)
    kind = _input_kind(path)
    if kind == "video":
        yield from _read_video(path)
        return
    files = [path] if kind == "image" else list_image_files(path)
    if not files:
        raise VideoReadError(
            f"{path}: folder holds no images (expected files ending in {', '.join(IMAGE_EXTENSIONS)})"
        )
    size = None
    for file in files:
        frame = read_image(file)
        if size is None:
            size = frame.shape
        elif frame.shape != size:
            raise VideoReadError(
                f"{file}: frame size {frame.shape[:2]} differs from the first frame's "
                f"{size[:2]} ({files[0].name}); all frames of a video must have one size"
            )
        yield frame


def _read_video(path: Path) -> Iterator[np.ndarray]:
    generator, meta = _open_video(path)
    width, height = meta["size"]
    frame_bytes = width * height * 3
    count = 0
    try:
        for raw in generator:
            if len(raw) != frame_bytes:
                raise VideoReadError(
                    f"{path}: frame {count} has {len(raw)} bytes, expected {frame_bytes} "
                    f"({height}x{width} RGB)"
                )
            # A fresh writable array: callers may modify frames in place.
            yield np.frombuffer(raw, np.uint8).reshape(height, width, 3).copy()
            count += 1
    except RuntimeError as e:  # ffmpeg died mid-stream (truncated or corrupt file).
        raise VideoReadError(
            f"{path}: ffmpeg failed after {count} frames: {_ffmpeg_reason(e)}"
        ) from e
    finally:
        generator.close()
    if count == 0:
        raise VideoReadError(f"{path}: video holds no frames")


# ---------------------------------------------------------------------------------------------
# Writers.


def _partial_path(path: Path) -> Path:
    # Same directory (so the final rename is atomic) and same suffix (ffmpeg picks the container
    # from it).
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}",
                                dir=path.parent)
    os.close(fd)
    return Path(name)


class VideoWriter:
    """Streams uint8 RGB frames into an mp4 (H.264) or GIF file.

    The file is written under a temporary name next to `path` and renamed into place by
    `close()`, so an interrupted run never leaves a truncated video under the final name (nor
    destroys an existing one). Use as a context manager: on an exception the partial file is
    deleted.

    Odd frame sizes are padded by one edge pixel for H.264 (which needs even sizes).
    """

    def __init__(self, path: str | os.PathLike, *, fps: float = 10.0, quality: int = 7,
                 overwrite: bool = False):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in (".mp4", ".gif", ".avi", ".mov", ".mkv"):
            raise ValueError(f"{path}: unsupported video suffix {suffix!r}; use .mp4 or .gif")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
        if not fps > 0:
            raise ValueError(f"{path}: fps must be positive, got {fps}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = float(fps)
        self.quality = quality
        self._gif = suffix == ".gif"
        self._tmp: Path | None = None
        self._writer = None
        self._size: tuple[int, int] | None = None
        self.num_frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Appends one frame (uint8 `[height, width, 3]`; greyscale/RGBA are converted)."""
        frame = to_rgb_uint8(frame, name=f"{self.path} frame {self.num_frames}")
        if self._writer is None:
            self._start(frame.shape[:2])
        if frame.shape[:2] != self._size:
            raise ValueError(
                f"{self.path}: frame {self.num_frames} is {frame.shape[:2]}, the video is "
                f"{self._size}"
            )
        if not self._gif:
            frame = _pad_to_even(frame)
        self._writer.send(np.ascontiguousarray(frame).tobytes())
        self.num_frames += 1

    def _start(self, size: tuple[int, int]) -> None:
        import imageio_ffmpeg

        self._size = size
        height, width = size
        if not self._gif:
            height, width = height + height % 2, width + width % 2
        self._tmp = _partial_path(self.path)
        if self._gif:
            # One palette for the whole clip, built by ffmpeg (it buffers the frames, we don't).
            kwargs = dict(codec="gif", pix_fmt_out="pal8", output_params=[
                "-vf", "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse"])
        else:
            kwargs = dict(codec="libx264", pix_fmt_out="yuv420p", quality=self.quality)
        self._writer = imageio_ffmpeg.write_frames(
            str(self._tmp), (width, height), fps=self.fps, macro_block_size=1,
            ffmpeg_log_level="error", **kwargs)
        with _quiet_fork():
            self._writer.send(None)  # Starts ffmpeg.

    def close(self) -> None:
        """Finishes the file and renames it into place."""
        if self._writer is None:
            raise ValueError(f"{self.path}: no frames were written")
        self._writer.close()
        self._writer = None
        os.replace(self._tmp, self.path)
        self._tmp = None

    def abort(self) -> None:
        """Stops writing and deletes the partial file; the final path is left untouched."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - ffmpeg may already be gone; cleanup continues.
                pass
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _pad_to_even(frame: np.ndarray) -> np.ndarray:
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frame


# ---------------------------------------------------------------------------------------------
# Geometry: frame size <-> model input size.


@dataclasses.dataclass(frozen=True)
class FrameGeometry:
    """How a frame maps onto the model input.

    Attributes:
      frame_hw: size of the input frames.
      resized_hw: size after the (align-corners bilinear) down-scaling; equals `frame_hw` when
        the frame fits the model input.
      padded_hw: the model input size; the resized frame sits in its top-left corner.
    """

    frame_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    padded_hw: tuple[int, int]

    @property
    def needs_resize(self) -> bool:
        return self.resized_hw != self.frame_hw


def compute_geometry(frame_hw: tuple[int, int], eval_crop_size_hw: tuple[int, int] | None = None,
                     *, output_stride: int = 32) -> FrameGeometry:
    """Chooses the model input size for frames of size `frame_hw`.

    Args:
      frame_hw: (height, width) of the frames.
      eval_crop_size_hw: the model's evaluation size (e.g. (1025, 2049)). Frames larger than it in
        either side are resized down keeping the aspect ratio: scale = min(crop_h / h, crop_w / w),
        new side = floor(side * scale), as deeplab2's `resize_to_range`. None: no resizing, pad
        to the smallest `output_stride * k + 1` that holds the frame.
      output_stride: the model's output stride, used when `eval_crop_size_hw` is None.

    Returns:
      The `FrameGeometry`.
    """
    height, width = (int(v) for v in frame_hw)
    if height <= 0 or width <= 0:
        raise ValueError(f"frame_hw must be positive, got {frame_hw}")
    if eval_crop_size_hw is None:
        padded = tuple(output_stride * math.ceil((s - 1) / output_stride) + 1 for s in (height, width))
        return FrameGeometry((height, width), (height, width), padded)
    crop_h, crop_w = (int(v) for v in eval_crop_size_hw)
    if crop_h <= 0 or crop_w <= 0:
        raise ValueError(f"eval_crop_size_hw must be positive, got {eval_crop_size_hw}")
    # float32 like the reference, so the floor lands on the same integer.
    scale = min(np.float32(crop_h / height), np.float32(crop_w / width), np.float32(1.0))
    resized = (int(np.floor(np.float32(height) * scale)), int(np.floor(np.float32(width) * scale)))
    resized = (max(1, min(resized[0], crop_h)), max(1, min(resized[1], crop_w)))
    return FrameGeometry((height, width), resized, (crop_h, crop_w))


def align_corners_source(in_size: int, out_size: int) -> np.ndarray:
    """float32 `[out_size]` source coordinate of each output index (align-corners).

    float32 like TF1 (and `vipdl.models.layers.resize_align_corners`), so the taps agree.
    """
    scale = np.float32((in_size - 1) / (out_size - 1)) if out_size > 1 else np.float32(0.0)
    return np.arange(out_size, dtype=np.float32) * scale


def bilinear_indices(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align-corners bilinear taps along one axis: (lower int32, upper int32, weight float32)."""
    src = align_corners_source(in_size, out_size)
    lower = np.clip(np.floor(src).astype(np.int32), 0, in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    return lower, upper, (src - lower.astype(np.float32)).astype(np.float32)


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Align-corners nearest-neighbour source index along one axis (int32 `[out_size]`).

    Rounds half up, like TF1's `resize_nearest_neighbor(align_corners=True)`.
    """
    src = align_corners_source(in_size, out_size)
    return np.clip(np.floor(src + np.float32(0.5)).astype(np.int32), 0, in_size - 1)


def resize_bilinear_np(image: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Reference align-corners bilinear resize of `[height, width, ...]`, float32 result."""
    image = np.asarray(image, np.float32)
    y0, y1, wy = bilinear_indices(image.shape[0], out_hw[0])
    x0, x1, wx = bilinear_indices(image.shape[1], out_hw[1])
    wy = wy.reshape((-1, 1) + (1,) * (image.ndim - 2))
    wx = wx.reshape((1, -1) + (1,) * (image.ndim - 2))
    top = image[y0][:, x0] * (1 - wx) + image[y0][:, x1] * wx
    bottom = image[y1][:, x0] * (1 - wx) + image[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def resize_nearest_np(labels: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Reference align-corners nearest-neighbour resize of `[height, width, ...]`."""
    labels = np.asarray(labels)
    return labels[nearest_indices(labels.shape[0], out_hw[0])][
        :, nearest_indices(labels.shape[1], out_hw[1])]


def frame_to_model_input_np(frame: np.ndarray, geometry: FrameGeometry) -> np.ndarray:
    """Reference: uint8 `[h, w, 3]` frame -> float32 `[padded_h, padded_w, 3]` model input."""
    image = np.asarray(frame, np.float32)
    if geometry.needs_resize:
        image = resize_bilinear_np(image, geometry.resized_hw)
    out = np.full((*geometry.padded_hw, image.shape[-1]), PAD_VALUE, np.float32)
    out[: image.shape[0], : image.shape[1]] = image
    return out


def labels_to_frame_np(labels: np.ndarray, geometry: FrameGeometry) -> np.ndarray:
    """Reference: `[padded_h, padded_w]` label map -> `[h, w]` (crop, then nearest resize)."""
    labels = np.asarray(labels)[: geometry.resized_hw[0], : geometry.resized_hw[1]]
    return resize_nearest_np(labels, geometry.frame_hw) if geometry.needs_resize else labels


def values_to_frame_np(values: np.ndarray, geometry: FrameGeometry) -> np.ndarray:
    """Reference: `[padded_h, padded_w]` float map (depth) -> `[h, w]` (crop, bilinear resize)."""
    values = np.asarray(values, np.float32)[: geometry.resized_hw[0], : geometry.resized_hw[1]]
    return resize_bilinear_np(values, geometry.frame_hw) if geometry.needs_resize else values

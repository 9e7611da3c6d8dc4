"""Frame readers and writers, and the frame <-> model-input geometry.

Readers stream: `read_frames` yields one uint8 `[height, width, 3]` RGB frame at a time, from a
video file (decoded by the ffmpeg binary bundled in the `imageio-ffmpeg` wheel), a folder of
images (natural sort order, so `f2.png` comes before `f10.png`) or a single image. Greyscale
frames are replicated to three channels, alpha channels are dropped, 16-bit images are scaled to
8 bits. Every frame of one input must have the same size. Every decoded frame of a video is one
input frame (variable frame rates are not resampled; rotation metadata is applied).

Bad frames (docs/inference.md#bad-frames): `FrameReader` reports, by input frame index, frames
the decoder reports as damaged (decoded with errors: ffmpeg runs its decoder single-threaded
with per-frame timestamps in its log, so each error is tied to the frame the decoder returned
next), frames missing from the decoded stream (a timestamp gap of whole frame durations right
after decoder errors), and images that cannot be read or have another size; `on_bad_frame` says
what happens to them.

Geometry (docs/inference.md#frame-size and docs/training.md#augmentation, evaluation): the model runs at a fixed size `padded_hw`. A frame that
fits is padded bottom/right with 127.5 (which the model normalises to exactly 0); a larger frame
is first resized down, keeping its aspect ratio, with an align-corners bilinear resize (deeplab2's
`resize_to_range` with `max_size` = the eval crop). Predictions are cropped back to the resized
region and label maps are resized back to the frame size with align-corners nearest neighbour
(depth with align-corners bilinear). `FrameGeometry` holds the sizes; the numpy functions here are
the reference the jitted versions in `vipdl.inference` are tested against.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import re
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vipdl import formats

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
    Frames the decoder reports as damaged are used as decoded; an image that cannot be read or
    a frame missing from a video raises (see `FrameReader` for the other choices).

    Args:
      path: a video file (anything ffmpeg decodes: mp4, avi, mov, mkv, webm, gif, ...), a folder
        of images (png, jpg, bmp, tif, webp; natural sort order) or one image.

    Yields:
      uint8 `[height, width, 3]` RGB frames, all of the same size.

    Raises:
      FileNotFoundError: `path` does not exist.
      VideoReadError: unreadable or empty input, or frames of different sizes.
    """
    for _, frame in FrameReader(path, on_bad_frame="keep"):
        yield frame


BAD_FRAME_POLICIES = ("stop", "skip", "repeat", "keep")


@dataclasses.dataclass(frozen=True)
class BadFrame:
    """A frame of the input that could not be decoded cleanly.

    Attributes:
      index: 0-based position in the input (what the frame's outputs would be named by).
      reason: what the decoder or image reader reported.
      damaged: True if the frame was decoded with errors (pixels exist), False if there is no
        picture (unreadable image, frame missing from the decoded video).
    """

    index: int
    reason: str
    damaged: bool

    def describe(self) -> str:
        kind = "damaged" if self.damaged else "unreadable"
        return f"frame {self.index} is {kind}: {self.reason}"


class FrameReader:
    """Streams `(index, frame)` of a video file, image folder or image, handling bad frames.

    Usage::

        reader = FrameReader("clip.avi", on_bad_frame="skip")
        for index, frame in reader:      # index = position in the input
            ...
        reader.bad_frames                 # every BadFrame met, in order
        reader.stopped                    # the BadFrame that ended the stream ("stop"), or None

    Args:
      path: the input (see `read_frames`).
      on_bad_frame: "stop" ends the stream before the first bad frame; "skip" leaves bad frames
        out; "repeat" yields the previous good frame in their place (skips when there is none
        yet); "keep" yields damaged frames as decoded and raises `VideoReadError` on frames
        without a picture.
      start: first index to yield (earlier frames are decoded but not yielded for videos;
        image folders jump there).
      on_report: called with each `BadFrame` as it is met (e.g. to print a warning).
    """

    def __init__(self, path: str | os.PathLike, *, on_bad_frame: str = "stop", start: int = 0,
                 on_report=None):
        if on_bad_frame not in BAD_FRAME_POLICIES:
            raise ValueError(f"on_bad_frame must be one of {BAD_FRAME_POLICIES}, got "
                             f"{on_bad_frame!r}")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.path = Path(path)
        self.kind = _input_kind(self.path)
        self.on_bad_frame = on_bad_frame
        self.start = int(start)
        self.bad_frames: list[BadFrame] = []
        self.stopped: BadFrame | None = None
        self.warnings: list[str] = []
        self._on_report = on_report

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        items = self._video() if self.kind == "video" else self._images()
        try:
            yield from self._apply_policy(items)
        finally:
            items.close()  # Stops ffmpeg now, not when the generator is collected.

    def _apply_policy(self, items) -> Iterator[tuple[int, np.ndarray]]:
        previous = None
        count = 0
        for index, frame, bad in items:
            if bad is not None:
                self.bad_frames.append(bad)
                if self._on_report is not None:
                    self._on_report(bad)
                policy = self.on_bad_frame
                if policy == "stop":
                    self.stopped = bad
                    return
                if policy == "keep":
                    if frame is None:
                        raise VideoReadError(f"{self.path}: {bad.describe()}")
                elif policy == "repeat" and previous is not None:
                    frame = previous
                else:  # skip, or repeat without a previous frame
                    frame = None
            if frame is None:
                continue
            previous = frame
            if index >= self.start:
                count += 1
                yield index, frame
        if count == 0 and self.stopped is None and self.start == 0:
            raise VideoReadError(f"{self.path}: no readable frames")

    # --- image folders ----------------------------------------------------------------------

    def _images(self):
        files = [self.path] if self.kind == "image" else list_image_files(self.path)
        if not files:
            raise VideoReadError(
                f"{self.path}: folder holds no images (expected files ending in "
                f"{', '.join(IMAGE_EXTENSIONS)})"
            )
        size = _image_size(files[0])
        first = self.start
        if self.on_bad_frame == "repeat":
            # A bad frame at `start` repeats the last good one before it: begin there.
            while first > 0 and _read_or_none(files[first - 1], size) is None:
                first -= 1
            first = max(first - 1, 0)
        for index in range(first, len(files)):
            file = files[index]
            try:
                frame = read_image(file)
            except VideoReadError as e:
                yield index, None, BadFrame(index, str(e), damaged=False)
                continue
            if size is not None and frame.shape[:2] != size:
                yield index, None, BadFrame(
                    index,
                    f"{file}: frame size {frame.shape[:2]} differs from the first frame's {size} "
                    f"({files[0].name}); all frames of a video must have one size",
                    damaged=False,
                )
                continue
            yield index, frame, None

    # --- video files ------------------------------------------------------------------------

    def _video(self):
        decoder = _FfmpegDecoder(self.path)
        try:
            index = 0
            for frame, errors, missing in decoder:
                for k in range(missing):
                    reason = "missing from the decoded stream (timestamp gap)"
                    if errors and k == missing - 1:
                        reason += "; decoder: " + "; ".join(errors)
                    yield index, None, BadFrame(index, reason, damaged=False)
                    index += 1
                if errors and not missing:
                    yield index, frame, BadFrame(index, "decoder: " + "; ".join(errors),
                                                 damaged=True)
                else:
                    yield index, frame, None
                index += 1
            if index == 0:
                raise VideoReadError(f"{self.path}: video holds no frames")
            if decoder.failure is not None:
                yield index, None, BadFrame(index, f"ffmpeg stopped: {decoder.failure}",
                                            damaged=False)
            self.warnings.extend(f"decoder after the last frame: {e}" for e in decoder.trailing)
        finally:
            decoder.close()


def _image_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except Exception:  # noqa: BLE001 - reported when the frame itself is read.
        return None


def _read_or_none(path: Path, size) -> np.ndarray | None:
    try:
        frame = read_image(path)
    except VideoReadError:
        return None
    return frame if size is None or frame.shape[:2] == size else None


_LOG_LINE = re.compile(r"^(?P<tags>(?:\[[^\]]*\] )*)\[(?P<level>[a-z]+)\] (?P<message>.*)$")
_DECODED = re.compile(r"decoder -> pts:(?P<pts>\S+) .*?duration:(?P<duration>\S+)")
_SIZE = re.compile(r"Video: rawvideo.*?, (\d+)x(\d+)")
_CODEC = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+)")


class _FfmpegDecoder:
    """ffmpeg decoding a video to raw RGB frames, with the decoder's errors per frame.

    The decoder runs single-threaded and logs each returned frame (`-debug_ts`); its error lines
    come, in the same thread, before the frame they belong to, so they are attributed to the
    next decoded frame. Iterating yields `(frame, errors, missing)`: the frame, the decoder's
    error lines for it, and how many frames are missing just before it (a gap in the
    timestamps of whole frame durations after decoder errors; a gap alone is a variable frame
    rate).
    """

    def __init__(self, path: Path):
        import imageio_ffmpeg

        if path.stat().st_size == 0:
            raise VideoReadError(f"{path}: file is empty")
        self.path = path
        self.failure: str | None = None
        self.trailing: list[str] = []
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats",
               "-loglevel", "level+info", "-debug_ts", "-threads", "1", "-i", str(path),
               "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-"]
        with _quiet_fork():
            self._process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._lock = threading.Condition()
        self._records: collections.deque = collections.deque()  # (pts, duration, errors)
        self._size: tuple[int, int] | None = None
        self._codec: str | None = None
        self._log_done = False
        self._last_lines: collections.deque = collections.deque(maxlen=8)
        self._thread = threading.Thread(target=self._read_log, daemon=True)
        self._thread.start()

    def _is_decoder_error(self, tags: str, level: str, message: str) -> bool:
        from_decoder = "[dec:" in tags or (self._codec is not None and f"[{self._codec} @" in tags)
        if not from_decoder:
            return False
        return level in ("error", "fatal", "panic") or "corrupt decoded frame" in message

    def _read_log(self) -> None:
        pending: list[str] = []
        section = ""
        for raw in self._process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            match = _LOG_LINE.match(line)
            if match is None:
                continue
            tags, level, message = match["tags"], match["level"], match["message"]
            if message.startswith("Input #"):
                section = "input"
            elif message.startswith("Output #"):
                section = "output"
            decoded = _DECODED.search(message)
            with self._lock:
                if decoded is not None:
                    self._records.append((_number(decoded["pts"]), _number(decoded["duration"]),
                                          pending))
                    pending = []
                    self._lock.notify_all()
                elif section == "input" and self._codec is None and _CODEC.search(message):
                    self._codec = _CODEC.search(message).group(1)
                elif section == "output" and self._size is None and _SIZE.search(message):
                    width, height = (int(v) for v in _SIZE.search(message).groups())
                    self._size = (height, width)
                    self._lock.notify_all()
                elif self._is_decoder_error(tags, level, message):
                    pending.append(message.strip())
                if level in ("error", "fatal", "panic"):
                    self._last_lines.append(message.strip())
        with self._lock:
            self.trailing = pending
            self._log_done = True
            self._lock.notify_all()

    def _wait(self, ready, timeout: float = 30.0) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: ready() or self._log_done, timeout)

    def __iter__(self) -> Iterator[tuple[np.ndarray, list[str], int]]:
        self._wait(lambda: self._size is not None)
        if self._size is None:
            self._process.wait()
            reason = self._last_lines[-1] if self._last_lines else "no video stream"
            raise VideoReadError(f"{self.path}: cannot decode video with ffmpeg: {reason}")
        height, width = self._size
        frame_bytes = height * width * 3
        stdout = self._process.stdout
        previous = None  # (pts, duration) of the last frame
        while True:
            data = stdout.read(frame_bytes)
            if not data:
                break
            if len(data) != frame_bytes:
                self.failure = f"truncated frame ({len(data)} of {frame_bytes} bytes)"
                break
            # The decoder logs a frame before ffmpeg writes it, so its record is (nearly) there.
            self._wait(lambda: bool(self._records))
            with self._lock:
                pts, duration, errors = (self._records.popleft() if self._records
                                         else (None, None, []))
            missing = 0
            # A timestamp gap alone is a variable frame rate; with decoder errors before the
            # frame it is frames the decoder could not decode.
            if errors and previous is not None and None not in (pts, *previous) and previous[1]:
                gap = (pts - previous[0]) / previous[1]
                if gap >= 1.5:
                    missing = int(round(gap)) - 1
            previous = (pts, duration)
            yield np.frombuffer(data, np.uint8).reshape(height, width, 3).copy(), errors, missing
        code = self._process.wait()
        self._thread.join(timeout=10)
        if code != 0 and self.failure is None:
            reason = self._last_lines[-1] if self._last_lines else f"exit code {code}"
            self.failure = reason

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._thread.join(timeout=10)  # stderr ends with the process.
        self._process.stdout.close()
        if not self._thread.is_alive():  # Never close a stream another thread is reading.
            self._process.stderr.close()


def _number(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:  # NOPTS
        return None


# ---------------------------------------------------------------------------------------------
# Writers.


def _partial_path(path: Path) -> Path:
    # Same directory (so the final rename is atomic) and same suffix (ffmpeg picks the container
    # from it).
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}",
                                dir=path.parent)
    os.fchmod(fd, formats.new_file_mode())  # ffmpeg keeps the mode of the file it overwrites.
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

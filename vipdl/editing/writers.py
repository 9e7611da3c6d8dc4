"""Matte files: per-track 16-bit PNG alpha sequences, `tracks.json` and Cryptomatte EXRs.

Layout under an output directory `OUT/mattes/`:

    <name>/<frame>.png      16-bit greyscale alpha (0..65535) of one segment in one frame,
                            name = "person-7" (track 7 of class person), "road", ...
    tracks.json             {name: {panoptic_id, class_id, class_name, track_id,
                            cryptomatte_name, first_frame, last_frame, num_frames, frames}}
    cryptomatte/<frame>.exr the frame's Cryptomatte (with `cryptomatte=True`)

The PNGs are streamed a band of rows at a time (`StreamingPngWriter`), so a 7680 x 4320 alpha
never exists as a whole array; each alpha is rebuilt from the frame's ranked (segment, coverage)
pairs, so a PNG and the Cryptomatte agree to within the PNG's 1/65535 quantisation.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np

from vipdl.data.descriptors import DatasetDescriptor
from vipdl.editing import cryptomatte, mattes

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


class StreamingPngWriter:
    """Writes a 16-bit greyscale PNG row band by row band (constant memory in the height).

    Usage:
        with StreamingPngWriter(path, height, width) as png:
            png.write_rows(rows_uint16)  # [n, width], top to bottom, height rows in total
    """

    def __init__(self, path: str | Path, height: int, width: int, *, level: int = 3):
        if height < 1 or width < 1:
            raise ValueError(f"PNG size must be positive, got {height}x{width}")
        self.path = Path(path)
        self.height, self.width = int(height), int(width)
        self._rows = 0
        self._zip = zlib.compressobj(level)
        self._pending = bytearray()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        # Bit depth 16, colour type 0 (greyscale), deflate, adaptive filtering, no interlace.
        header = struct.pack(">IIBBBBB", self.width, self.height, 16, 0, 0, 0, 0)
        self._file.write(_PNG_SIGNATURE + _chunk(b"IHDR", header))

    def write_rows(self, rows: np.ndarray) -> None:
        """Appends rows: uint16 [n, width]."""
        rows = np.asarray(rows)
        if rows.dtype != np.uint16 or rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(f"rows must be uint16 [n, {self.width}], got {rows.dtype} {rows.shape}")
        if self._rows + len(rows) > self.height:
            raise ValueError(f"{self.path}: more than {self.height} rows written")
        # Filter type 0 per row, then the big-endian samples.
        raw = np.zeros((len(rows), 1 + 2 * self.width), np.uint8)
        raw[:, 1:] = rows.astype(">u2").view(np.uint8).reshape(len(rows), -1)
        self._pending += self._zip.compress(raw.tobytes())
        self._rows += len(rows)
        if len(self._pending) >= 1 << 20:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._file.write(_chunk(b"IDAT", bytes(self._pending)))
            self._pending.clear()

    def close(self) -> None:
        """Finishes the file; raises ValueError if fewer than `height` rows were written."""
        if self._file.closed:
            return
        try:
            if self._rows != self.height:
                raise ValueError(f"{self.path}: {self._rows} rows written, expected {self.height}")
            self._pending += self._zip.flush()
            self._flush()
            self._file.write(_chunk(b"IEND", b""))
        finally:
            self._file.close()

    def __enter__(self) -> StreamingPngWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._file.close()


def read_alpha_png(path: str | Path) -> np.ndarray:
    """float32 [h, w] alpha in [0, 1] from a 16-bit greyscale matte PNG."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("I;16", "I;16B", "I"):
            raise ValueError(f"{path}: expected a 16-bit greyscale PNG, got mode {im.mode}")
        return np.asarray(im, np.uint16 if im.mode != "I" else np.int32).astype(np.float32) / 65535


def alpha_to_uint16(alpha: np.ndarray) -> np.ndarray:
    """Rounds alpha in [0, 1] to 0..65535 (error <= 0.5 / 65535)."""
    return np.round(np.clip(alpha, 0.0, 1.0) * 65535.0).astype(np.uint16)


class MatteWriter:
    """Writes the mattes of a video frame by frame (see the module docstring for the layout).

    Args:
      directory: the mattes directory (`OUT/mattes`).
      descriptor: the dataset (class names for `tracks.json`).
      pngs: write the per-track PNG sequences.
      cryptomatte: write `cryptomatte/<frame>.exr`.
      band_rows: PNG rows rebuilt from the ranks at a time (memory ~ band_rows x width x K).
    """

    def __init__(self, directory: str | Path, descriptor: DatasetDescriptor, *,
                 pngs: bool = True, cryptomatte: bool = False, band_rows: int = 256):
        if not (pngs or cryptomatte):
            raise ValueError("MatteWriter needs pngs and/or cryptomatte")
        self.directory = Path(directory)
        self.descriptor = descriptor
        self.pngs = pngs
        self.cryptomatte = cryptomatte
        self.band_rows = int(band_rows)
        self.tracks: dict[str, dict] = {}

    def add(self, frame: mattes.FrameMattes) -> None:
        """Writes one frame's files."""
        segments = frame.segments
        present = np.zeros(len(segments), bool)
        present[np.unique(frame.rank_ids[frame.rank_ids >= 0])] = True
        if self.pngs:
            self._write_pngs(frame, present)
        if self.cryptomatte:
            cryptomatte.write_cryptomatte(
                self.directory / "cryptomatte" / f"{frame.index:06d}.exr",
                frame.rank_ids, frame.rank_coverage, segments.names,
                extra_header={"vipdl/frame": str(frame.index)})
        d = self.descriptor.label_divisor
        for s in np.flatnonzero(present):
            if s == segments.void_index:
                continue
            name = segments.names[s]
            pid = int(segments.panoptic_ids[s])
            entry = self.tracks.setdefault(mattes.folder_name(name), {
                "panoptic_id": pid,
                "class_id": pid // d,
                "class_name": (self.descriptor.class_names[pid // d]
                               if pid // d < self.descriptor.num_classes else None),
                "track_id": pid % d,
                "cryptomatte_name": name,
                "first_frame": frame.index,
                "num_frames": 0,
                "frames": [],
            })
            entry["last_frame"] = frame.index
            entry["num_frames"] += 1
            entry["frames"].append(frame.index)

    def _write_pngs(self, frame: mattes.FrameMattes, present: np.ndarray) -> None:
        h, w = frame.shape
        targets = [s for s in np.flatnonzero(present) if s != frame.segments.void_index]
        writers = {
            s: StreamingPngWriter(
                self.directory / mattes.folder_name(frame.segments.names[s])
                / f"{frame.index:06d}.png", h, w)
            for s in targets
        }
        try:
            for y in range(0, h, self.band_rows):
                ids = frame.rank_ids[:, y : y + self.band_rows]
                cov = frame.rank_coverage[:, y : y + self.band_rows]
                in_band = set(np.unique(ids).tolist())
                for s, png in writers.items():
                    if s in in_band:
                        alpha = np.where(ids == s, cov, 0.0).sum(0, dtype=np.float32)
                        png.write_rows(alpha_to_uint16(alpha))
                    else:
                        png.write_rows(np.zeros(ids.shape[1:], np.uint16))
            for png in writers.values():
                png.close()
        except BaseException:
            for png in writers.values():
                png._file.close()
            raise

    def close(self) -> None:
        """Writes `tracks.json`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "tracks.json").write_text(json.dumps(self.tracks, indent=1))

"""Matte files: per-track 16-bit PNG alpha sequences, `tracks.json` and Cryptomatte EXRs.

Layout under an output directory `OUT/mattes/`:

    <name>/<frame>.png      16-bit greyscale alpha (0..65535) of one segment in one frame,
                            name = "person-7" (track 7 of class person), "road", ...
    tracks.json             {name: {class_id, class_name, track_id,
                            cryptomatte_name, first_frame, last_frame, num_frames, frames}}
    cryptomatte/<frame>.exr the frame's Cryptomatte (with `cryptomatte=True`)

The PNGs are streamed a band of rows at a time (`StreamingPngWriter`), so a 7680 x 4320 alpha
never exists as a whole array; each alpha is rebuilt from the frame's ranked (segment, coverage)
pairs, so a PNG and the Cryptomatte agree to within the PNG's 1/65535 quantisation.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from vipdl import formats
from vipdl.data.descriptors import DatasetDescriptor
from vipdl.editing import cryptomatte, mattes
from vipdl.postprocess import labels

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
        # Written under a temporary name, renamed by close(): no truncated PNG is ever visible.
        self._tmp = self.path.with_name(f".{self.path.name}.partial")
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in close() / abort()
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
        """Finishes the file and moves it into place; raises ValueError (and writes nothing)
        if fewer than `height` rows were written."""
        if self._file.closed:
            return
        try:
            if self._rows != self.height:
                raise ValueError(f"{self.path}: {self._rows} rows written, expected {self.height}")
            self._pending += self._zip.flush()
            self._flush()
            self._file.write(_chunk(b"IEND", b""))
            self._file.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stops without writing the file."""
        self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> StreamingPngWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abort()


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

    Every file is written atomically as soon as its frame is added, and the segments of each
    frame are appended to a journal (`tracks.jsonl`), so memory stays bounded however long the
    video. `close()` turns the journal into `tracks.json`; `write_json()` writes it for the
    frames so far without closing; `state()` / `resume=` continue an interrupted run (files of
    frames after the resumed state are deleted and redone).

    Args:
      directory: the mattes directory (`OUT/mattes`).
      descriptor: the dataset (class names for `tracks.json`).
      pngs: write the per-track PNG sequences.
      cryptomatte: write `cryptomatte/<frame>.exr`.
      band_rows: PNG rows rebuilt from the ranks at a time (memory ~ band_rows x width x K).
      resume: a `state()` of an interrupted run into the same directory.
    """

    JOURNAL = "tracks.jsonl"

    def __init__(self, directory: str | Path, descriptor: DatasetDescriptor, *,
                 pngs: bool = True, cryptomatte: bool = False, band_rows: int = 256,
                 resume: dict | None = None):
        if not (pngs or cryptomatte):
            raise ValueError("MatteWriter needs pngs and/or cryptomatte")
        self.directory = Path(directory)
        self.descriptor = descriptor
        self.pngs = pngs
        self.cryptomatte = cryptomatte
        self.band_rows = int(band_rows)
        self._lines = 0
        self._closed = False
        self.directory.mkdir(parents=True, exist_ok=True)
        journal = self.directory / self.JOURNAL
        if resume is None:
            journal.unlink(missing_ok=True)
        else:
            self._resume(int(resume["lines"]), journal)
        self._journal = open(journal, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def add(self, frame: mattes.FrameMattes) -> None:
        """Writes one frame's files."""
        if self._closed:
            raise RuntimeError(f"{self.directory}: writer already closed")
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
        listed = []
        for s in np.flatnonzero(present):
            if s != segments.void_index:
                class_id, track_id = divmod(int(segments.ids[s]), 1 << labels.TRACK_BITS)
                listed.append([segments.names[s], class_id, track_id])
        self._journal.write(json.dumps({"frame": int(frame.index), "segments": listed}) + "\n")
        self._journal.flush()
        self._lines += 1

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
                png.abort()
            raise

    # --- resume / output ------------------------------------------------------------------

    def state(self) -> dict:
        """JSON-able state after the frames added so far (for `resume=`)."""
        return {"lines": self._lines}

    def _resume(self, keep: int, journal: Path) -> None:
        kept: list[str] = []
        if journal.is_file():
            with open(journal, encoding="utf-8") as f:
                for line in f:
                    if len(kept) == keep or not line.endswith("\n"):
                        break
                    kept.append(line)
        if len(kept) < keep:
            raise ValueError(
                f"{journal}: holds {len(kept)} frames, the resume state expects {keep}; the "
                "output directory was changed since the run stopped"
            )
        formats.atomic_write_bytes(journal, "".join(kept).encode())
        self._lines = keep
        last = json.loads(kept[-1])["frame"] if kept else -1
        # Files of frames after the state were written by the stopped run; they are redone.
        for path in self.directory.glob("*/*"):
            if path.suffix in (".png", ".exr") and path.stem.isdigit() and int(path.stem) > last:
                path.unlink()

    def write_json(self) -> None:
        """Writes `tracks.json` (atomically) for the frames added so far."""
        self._journal.flush()
        tracks: dict[str, dict] = {}
        with open(self.directory / self.JOURNAL, encoding="utf-8") as journal:
            for line in journal:
                entry = json.loads(line)
                index = entry["frame"]
                for name, class_id, track_id in entry["segments"]:
                    track = tracks.setdefault(mattes.folder_name(name), {
                        "class_id": class_id,
                        "class_name": (self.descriptor.class_names[class_id]
                                       if class_id < self.descriptor.num_classes else None),
                        "track_id": track_id,
                        "cryptomatte_name": name,
                        "first_frame": index,
                        "num_frames": 0,
                        "frames": [],
                    })
                    track["last_frame"] = index
                    track["num_frames"] += 1
                    track["frames"].append(index)
        formats.atomic_write_json(self.directory / "tracks.json", tracks)

    def close(self) -> None:
        """Writes `tracks.json` and removes the journal. Idempotent."""
        if self._closed:
            return
        self.write_json()
        self._journal.close()
        (self.directory / self.JOURNAL).unlink(missing_ok=True)
        self._closed = True

    def abort(self) -> None:
        """Stops without writing `tracks.json` (the journal stays, for a resume)."""
        if not self._closed:
            self._journal.close()
            self._closed = True

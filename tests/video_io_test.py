"""Tests of frame readers/writers and the frame <-> model geometry (vipdl/video_io.py)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from vipdl import video_io
from vipdl.models.layers import resize_align_corners


def _frames(num: int, height: int = 24, width: int = 32) -> np.ndarray:
    """Smooth frames (video codecs keep them close) with a moving bright square."""
    yy, xx = np.mgrid[:height, :width]
    frames = np.zeros((num, height, width, 3), np.uint8)
    for t in range(num):
        frames[t, ..., 0] = (xx * 255 // (width - 1)).astype(np.uint8)
        frames[t, ..., 1] = (yy * 255 // (height - 1)).astype(np.uint8)
        frames[t, 4:12, 2 + 4 * t : 10 + 4 * t, 2] = 250
    return frames


# --- frame conversion ---------------------------------------------------------------------


def test_to_rgb_uint8_converts_common_layouts():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for frame in (grey, grey[..., None], np.stack([grey, np.full_like(grey, 9)], -1)):
        out = video_io.to_rgb_uint8(frame)
        assert out.shape == (3, 4, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, -1))
    rgba = np.random.default_rng(0).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    np.testing.assert_array_equal(video_io.to_rgb_uint8(rgba), rgba[..., :3])
    wide = np.array([[0, 65535, 32896]], np.uint16)
    np.testing.assert_array_equal(video_io.to_rgb_uint8(wide)[..., 0], [[0, 255, 128]])
    np.testing.assert_array_equal(
        video_io.to_rgb_uint8(np.array([[True, False]]))[..., 1], [[255, 0]]
    )


@pytest.mark.parametrize(
    "frame, match",
    [
        (np.zeros((4, 4, 3), np.float32), "float32"),
        (np.zeros((4, 4, 5), np.uint8), "shape"),
        (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
        (np.full((4, 4), 300, np.int32), r"\[0, 255\]"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
    ],
)
def test_to_rgb_uint8_rejects_bad_frames(frame, match):
    with pytest.raises(video_io.VideoReadError, match=match):
        video_io.to_rgb_uint8(frame, name="clip.png")


# --- readers -------------------------------------------------------------------------------


def test_image_folder_natural_order_and_modes(tmp_path):
    frames = _frames(11, 12, 16)
    for i, frame in enumerate(frames):
        name = tmp_path / f"frame{i}.png"
        if i == 3:  # Greyscale and RGBA files in the same folder.
            Image.fromarray(frame[..., 0]).save(name)
        elif i == 4:
            Image.fromarray(np.concatenate([frame, frame[..., :1]], -1)).save(name)
        else:
            Image.fromarray(frame).save(name)
    (tmp_path / "notes.txt").write_text("not an image")
    read = list(video_io.read_frames(tmp_path))
    assert len(read) == 11  # frame10 sorts after frame9, not after frame1.
    for i, (got, want) in enumerate(zip(read, frames)):
        if i == 3:
            want = np.repeat(want[..., :1], 3, -1)
        np.testing.assert_array_equal(got, want, err_msg=f"frame {i}")
    info = video_io.probe(tmp_path)
    assert (info.kind, info.height, info.width, info.num_frames) == ("folder", 12, 16, 11)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(video_io.read_frames(tmp_path / "missing"))
    with pytest.raises(video_io.VideoReadError, match="no images"):
        list(video_io.read_frames(tmp_path))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(tmp_path / "b.png")
    (tmp_path / "c.png").write_bytes(b"not a png")
    frames = video_io.read_frames(tmp_path)
    assert next(frames).shape == (8, 8, 3)  # Lazy: later files are not read yet.
    with pytest.raises(video_io.VideoReadError, match="b.png"):
        next(frames)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_video_round_trip(tmp_path, suffix):
    frames = _frames(5, 23, 31)  # Odd sizes: H.264 needs even ones (padded by one pixel).
    path = tmp_path / f"clip{suffix}"
    with video_io.VideoWriter(path, fps=8) as writer:
        for frame in frames:
            writer.write(frame)
    info = video_io.probe(path)
    assert info.kind == "video" and info.fps == pytest.approx(8.0, rel=0.1)  # GIF: 1/100 s steps
    read = list(video_io.read_frames(path))
    assert len(read) == len(frames)
    for got, want in zip(read, frames):
        assert got.dtype == np.uint8 and got.shape[:2] >= want.shape[:2]
        error = np.abs(got[:23, :31].astype(int) - want.astype(int)).mean()
        assert error < 12, error  # Lossy codecs; a wrong frame order/size would be far off.
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_unreadable_and_empty_videos(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.avi").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(video_io.VideoReadError, match="empty"):
        video_io.probe(tmp_path / "empty.mp4")
    with pytest.raises(video_io.VideoReadError, match="junk.avi"):
        list(video_io.read_frames(tmp_path / "junk.avi"))


def test_writer_refuses_existing_file_and_cleans_up_on_error(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous result")
    with pytest.raises(FileExistsError):
        video_io.VideoWriter(path)
    with pytest.raises(RuntimeError, match="boom"):
        with video_io.VideoWriter(path, overwrite=True) as writer:
            writer.write(_frames(1)[0])
            raise RuntimeError("boom")
    assert path.read_bytes() == b"previous result"  # Untouched by the failed run.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


# --- geometry ------------------------------------------------------------------------------


def test_compute_geometry():
    g = video_io.compute_geometry((1024, 2048), (1025, 2049))
    assert g == video_io.FrameGeometry((1024, 2048), (1024, 2048), (1025, 2049))
    assert not g.needs_resize
    # No eval size: the smallest 32k + 1 that holds the frame.
    assert video_io.compute_geometry((30, 41), None).padded_hw == (33, 65)
    assert video_io.compute_geometry((33, 64), None).padded_hw == (33, 65)
    # Larger than the eval size: scale = min(1025 / 1080, 2049 / 1920, 1), floor of each side.
    g = video_io.compute_geometry((1080, 1920), (1025, 2049))
    assert g.resized_hw == (1025, 1822) and g.padded_hw == (1025, 2049) and g.needs_resize


def test_numpy_geometry_matches_model_resize():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)
    g = video_io.compute_geometry(frame.shape[:2], (21, 33))
    model_input = video_io.frame_to_model_input_np(frame, g)
    assert model_input.shape == (21, 33, 3)
    rh, rw = g.resized_hw
    assert (model_input[rh:] == 127.5).all() and (model_input[:, rw:] == 127.5).all()
    want = resize_align_corners(jnp.asarray(frame, jnp.float32)[None], g.resized_hw)[0]
    np.testing.assert_allclose(model_input[:rh, :rw], np.asarray(want), atol=1e-3)
    # Corners coincide (align-corners).
    np.testing.assert_allclose(model_input[0, 0], frame[0, 0])
    np.testing.assert_allclose(model_input[rh - 1, rw - 1], frame[-1, -1])

    labels = rng.integers(0, 50, g.padded_hw).astype(np.int32)
    back = video_io.labels_to_frame_np(labels, g)
    assert back.shape == frame.shape[:2]
    want = resize_align_corners(jnp.asarray(labels[:rh, :rw])[None], g.frame_hw, "nearest")[0]
    np.testing.assert_array_equal(back, np.asarray(want))
    # Without resizing, restoring is a plain crop.
    g = video_io.compute_geometry((30, 41), None)
    labels = rng.integers(0, 50, g.padded_hw).astype(np.int32)
    np.testing.assert_array_equal(video_io.labels_to_frame_np(labels, g), labels[:30, :41])


# --- bad frames ----------------------------------------------------------------------------


def corrupt_avi_frame(path, k: int) -> None:
    """Flips bytes in the middle of the k-th video chunk of an AVI (one damaged frame)."""
    data = bytearray(path.read_bytes())
    pos, n = data.index(b"movi") + 4, 0
    while pos < len(data):
        tag, size = bytes(data[pos : pos + 4]), int.from_bytes(data[pos + 4 : pos + 8], "little")
        if tag.endswith(b"dc"):
            if n == k:
                middle = pos + 8 + size // 2
                data[middle : middle + 24] = bytes(b ^ 0x5A for b in data[middle : middle + 24])
                break
            n += 1
        pos += 8 + size + (size & 1)
    path.write_bytes(bytes(data))


def write_avi(path, frames, codec: str = "mjpeg") -> None:
    import imageio_ffmpeg

    height, width = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=10, codec=codec,
                                         macro_block_size=1, output_params=["-q:v", "3"],
                                         ffmpeg_log_level="error")
    with video_io._quiet_fork():
        writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame).tobytes())
    writer.close()


@pytest.mark.parametrize("codec", ["mjpeg", "mpeg4"])
def test_damaged_video_frame_is_reported_by_index(tmp_path, codec):
    frames = [np.random.default_rng(t).integers(0, 256, (48, 64, 3), dtype=np.uint8)
              for t in range(12)]
    path = tmp_path / "damaged.avi"
    write_avi(path, frames, codec)
    corrupt_avi_frame(path, 7)
    got = {}
    for policy in video_io.BAD_FRAME_POLICIES:
        reader = video_io.FrameReader(path, on_bad_frame=policy)
        got[policy] = list(reader)
        assert [(b.index, b.damaged) for b in reader.bad_frames] == [(7, True)], policy
        assert "decoder" in reader.bad_frames[0].reason
        assert (reader.stopped is not None) == (policy == "stop")
    assert [i for i, _ in got["stop"]] == list(range(7))
    assert [i for i, _ in got["skip"]] == [*range(7), *range(8, 12)]
    assert [i for i, _ in got["repeat"]] == list(range(12))
    np.testing.assert_array_equal(got["repeat"][7][1], got["repeat"][6][1])
    assert [i for i, _ in got["keep"]] == list(range(12))
    # The damaged frame was decoded (concealed); the others equal the stop/skip ones.
    np.testing.assert_array_equal(got["keep"][8][1], got["skip"][7][1])
    assert len(list(video_io.read_frames(path))) == 12  # The library default keeps them.
    starting = [i for i, _ in video_io.FrameReader(path, on_bad_frame="skip", start=5)]
    assert starting == [5, 6, 8, 9, 10, 11]


def test_image_folder_bad_frames(tmp_path):
    frames = _frames(6, 10, 12)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"{i}.png")
    (tmp_path / "2.png").write_bytes(b"not a png")
    Image.fromarray(_frames(1, 11, 12)[0]).save(tmp_path / "4.png")
    reports = []
    reader = video_io.FrameReader(tmp_path, on_bad_frame="repeat", on_report=reports.append)
    out = list(reader)
    assert [i for i, _ in out] == list(range(6))
    assert [(b.index, b.damaged) for b in reports] == [(2, False), (4, False)]
    assert "2.png" in reports[0].reason and "differs" in reports[1].reason
    np.testing.assert_array_equal(out[2][1], frames[1])
    np.testing.assert_array_equal(out[4][1], frames[3])
    # Resuming at a repeated frame yields the same picture for it.
    resumed = list(video_io.FrameReader(tmp_path, on_bad_frame="repeat", start=4))
    assert [i for i, _ in resumed] == [4, 5]
    np.testing.assert_array_equal(resumed[0][1], frames[3])
    stop = video_io.FrameReader(tmp_path)
    assert [i for i, _ in stop] == [0, 1] and stop.stopped.index == 2
    with pytest.raises(video_io.VideoReadError, match="2.png"):
        list(video_io.read_frames(tmp_path))
    with pytest.raises(ValueError, match="on_bad_frame"):
        video_io.FrameReader(tmp_path, on_bad_frame="ignore")


def test_rotation_metadata_and_variable_frame_rate(tmp_path):
    """A phone video's rotation is applied, and a variable frame rate (a timestamp gap without
    decoder errors) is neither resampled nor reported as missing frames."""
    import subprocess

    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    base = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    source = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "12"]
    plain, rotated, vfr = tmp_path / "plain.mp4", tmp_path / "rot.mp4", tmp_path / "vfr.mp4"
    with video_io._quiet_fork():
        subprocess.run([*base, *source, "-pix_fmt", "yuv420p", str(plain)], check=True)
        subprocess.run([*base, "-display_rotation", "90", "-i", str(plain), "-c", "copy",
                        str(rotated)], check=True)
        subprocess.run([*base, *source, "-vf", "setpts='if(lt(N,6),N,N*2)/10/TB'",
                        "-fps_mode", "vfr", str(vfr)], check=True)
    assert [f.shape for f in video_io.read_frames(rotated)][:1] == [(64, 48, 3)]
    reader = video_io.FrameReader(vfr)
    assert len(list(reader)) == 12 and not reader.bad_frames

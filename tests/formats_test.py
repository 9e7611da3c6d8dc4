"""The on-disk codecs of `vipdl.formats`: round trips, atomic writes and errors naming the file."""

import json
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from vipdl import formats
from vipdl.data import descriptors


def _no_temporaries(directory):
    return not [p for p in directory.rglob("*") if p.name.startswith(".")]


# --- RGB segment ids ---------------------------------------------------------------------------


def test_rgb_id_round_trip(tmp_path):
    ids = np.array([[0, 1, 255], [256, 65535, (1 << 24) - 1]], dtype=np.int64)
    np.testing.assert_array_equal(formats.rgb_to_id(formats.id_to_rgb(ids)), ids)
    formats.write_rgb_ids(tmp_path / "ids.png", ids)
    got = formats.read_rgb_ids(tmp_path / "ids.png")
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ids)
    # R + 256 G + 256^2 B, as the Cityscapes-VPS PNGs store it.
    assert np.asarray(Image.open(tmp_path / "ids.png"))[1, 1].tolist() == [255, 255, 0]


def test_id_to_rgb_rejects_overflow(tmp_path):
    with pytest.raises(ValueError, match="2\\^24"):
        formats.id_to_rgb(np.array([[1 << 24]]))
    with pytest.raises(formats.FormatError, match="2\\^24") as e:
        formats.write_rgb_ids(tmp_path / "big.png", np.array([[1 << 24]]))
    assert e.value.path == str(tmp_path / "big.png")
    assert not (tmp_path / "big.png").exists() and _no_temporaries(tmp_path)


def test_rgb_ids_of_a_grey_png_name_the_file(tmp_path):
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(formats.FormatError, match="expected an 8-bit RGB PNG of segment ids") as e:
        formats.read_rgb_ids(tmp_path / "grey.png")
    assert str(e.value).startswith(str(tmp_path / "grey.png"))


# --- KITTI-STEP ------------------------------------------------------------------------------


def test_step_round_trip():
    pan = np.array([[11 * 1000 + 3, 13 * 1000 + 999], [255 * 1000, 0]])
    rgb = formats.panoptic_to_step_rgb(pan, 1000)
    assert tuple(rgb[0, 1]) == (13, 3, 231)
    np.testing.assert_array_equal(formats.step_rgb_to_panoptic(rgb, 1000), pan)


def test_step_png_round_trip(tmp_path):
    p = np.array([[11000 + 300, 13002], [255000, 0]])
    formats.write_step_png(tmp_path / "a.png", p, label_divisor=1000)
    rgb = np.asarray(Image.open(tmp_path / "a.png"))
    assert rgb[0, 0].tolist() == [11, 1, 44] and rgb[1, 0].tolist() == [255, 0, 0]
    assert (formats.step_rgb_to_panoptic(rgb, 1000) == p).all()
    semantic, instance = formats.read_step_png(tmp_path / "a.png")
    np.testing.assert_array_equal(semantic * 1000 + instance, p)
    # STEP instances go up to 2^16 - 1, beyond a label divisor of 1000.
    big = np.array([[7 * 65536 + 40000]])
    formats.write_step_png(tmp_path / "b.png", big, label_divisor=65536)
    semantic, instance = formats.read_step_png(tmp_path / "b.png")
    assert (semantic[0, 0], instance[0, 0]) == (7, 40000)
    with pytest.raises(ValueError, match="does not fit label_divisor 1000"):
        formats.step_rgb_to_panoptic(np.asarray(Image.open(tmp_path / "b.png")), 1000)


def test_step_encoding_errors_name_the_file(tmp_path):
    path = tmp_path / "s.png"
    with pytest.raises(formats.FormatError, match="semantic must be <= 255") as e:
        formats.write_step_png(path, np.array([[256 * 1000]]), label_divisor=1000)
    assert str(path) in str(e.value) and not path.exists()
    with pytest.raises(ValueError, match=f"{path}: expected an integer panoptic map"):
        formats.write_step_png(path, np.zeros((2, 2), np.float32), label_divisor=1000)
    with pytest.raises(ValueError, match="negative panoptic value"):
        formats.write_step_png(path, np.full((2, 2), -1), label_divisor=1000)


# --- Cityscapes-DVPS ---------------------------------------------------------------------------


def test_dvps_label_encoding_round_trip():
    d = descriptors.SYNTHETIC
    conv = {"label_divisor": d.label_divisor, "ignore_label": d.ignore_label}
    rng = np.random.default_rng(0)
    sem = rng.choice([0, 3, 6, 7, 255], size=(4, 5))
    inst = np.where(np.isin(sem, d.thing_ids), rng.integers(1, 999, size=(4, 5)), 0)
    panoptic = sem * 1000 + inst
    encoded = formats.encode_dvps_label(panoptic, **conv)
    assert encoded.dtype == np.uint16
    assert np.all(encoded[sem == 255] == 32000)  # The DVPS void, whatever the ignore label.
    np.testing.assert_array_equal(
        formats.decode_dvps_label(encoded.astype(np.int64), **conv), panoptic
    )


def test_dvps_label_png_round_trip_with_another_divisor(tmp_path):
    # In memory D = 65536, ignore 255; on disk always class * 1000 + instance, void class 32.
    conv = {"label_divisor": 65536, "ignore_label": 255}
    panoptic = np.array([[13 * 65536 + 7, 255 * 65536], [0, 31 * 65536 + 999]])
    formats.write_dvps_label_png(tmp_path / "l.png", panoptic, **conv)
    raw = formats.read_grey_png(tmp_path / "l.png")
    assert raw.dtype == np.uint16 and raw.tolist() == [[13007, 32000], [0, 31999]]
    np.testing.assert_array_equal(formats.decode_dvps_label(raw, **conv), panoptic)
    with pytest.raises(formats.FormatError, match="class ids < 32 and instance ids < 1000"):
        formats.write_dvps_label_png(tmp_path / "x.png", np.array([[1000]]), **conv)
    assert not (tmp_path / "x.png").exists()


def test_dvps_prediction_and_depth_pngs(tmp_path):
    formats.write_dvps_panoptic_png(
        tmp_path / "p.png", np.array([[13005, 32000]]), label_divisor=1000
    )
    rgb = formats.read_png(tmp_path / "p.png")
    assert rgb[0, :, :2].tolist() == [[13, 5], [32, 0]]
    cls, inst = formats.read_dvps_prediction_png(tmp_path / "p.png")
    assert cls.tolist() == [[13, 32]] and inst.tolist() == [[5, 0]]
    formats.write_depth_png(tmp_path / "d.png", np.array([[1.5, 0.0]]))
    depth = formats.read_png(tmp_path / "d.png")
    assert depth.dtype == np.uint16 and depth.tolist() == [[384, 0]]
    with pytest.raises(ValueError, match="exceeds"):
        formats.write_depth_png(tmp_path / "d.png", np.array([[300.0]]))
    with pytest.raises(formats.FormatError, match="instance must be <= 255"):
        formats.write_dvps_panoptic_png(tmp_path / "q.png", np.array([[1300]]), label_divisor=1000)
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(formats.FormatError, match="class in channel 0") as e:
        formats.read_dvps_prediction_png(tmp_path / "grey.png")
    assert e.value.path == str(tmp_path / "grey.png")


# --- Depth -------------------------------------------------------------------------------------


def test_depth_round_trip(tmp_path):
    depth = np.array([[0.0, 1 / 256, 80.0], [255.99, 12.3456, 3.0]], np.float32)
    formats.write_depth_png(tmp_path / "d.png", depth)
    got = formats.read_depth_png(tmp_path / "d.png")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, depth, atol=0.5 / 256)
    assert got[0, 0] == 0.0  # 0 stays "no depth".
    # In-memory form (the TFDS feature) is the same encoding.
    np.testing.assert_array_equal(formats.depth_to_png(depth), formats.read_png(tmp_path / "d.png"))
    np.testing.assert_array_equal(formats.depth_from_png(formats.depth_to_png(depth)), got)


@pytest.mark.parametrize(
    "depth, message",
    [
        (np.array([[-1.0]]), "finite and >= 0"),
        (np.array([[np.nan]]), "finite and >= 0"),
        (np.zeros((2, 2, 1)), "expected depth \\[height, width\\]"),
    ],
)
def test_bad_depth_names_the_file(tmp_path, depth, message):
    path = tmp_path / "d.png"
    with pytest.raises(formats.FormatError, match=message) as e:
        formats.write_depth_png(path, depth)
    assert e.value.path == str(path) and not path.exists() and _no_temporaries(tmp_path)


def test_png_bytes_decode_like_files(tmp_path):
    values = formats.depth_to_png(np.array([[2.5, 0.0]]))
    data = formats.encode_png(values)
    np.testing.assert_array_equal(formats.decode_png_bytes(data, "depth of x"), values)
    with pytest.raises(formats.FormatError, match="^depth of x: cannot decode"):
        formats.decode_png_bytes(data[:30], "depth of x")


# --- VIPSeg ------------------------------------------------------------------------------------


def test_vipseg_mask_decoding():
    raw = np.array([[0, 1, 6, 124], [125, 6100, 6101, 12499]])
    got = formats.decode_vipseg_mask(raw, label_divisor=1000, void_label=255000)
    # 0 void; v < 125: class v - 1; else class v // 100 - 1, instance v % 100 + 1.
    assert got.tolist() == [[255000, 0, 5000, 123000], [0 + 26, 60001, 60002, 123100]]


# --- Generic reading -------------------------------------------------------------------------


def test_read_image_converts_and_read_png_does_not(tmp_path):
    grey = np.array([[0, 128]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    assert formats.read_image(tmp_path / "g.png").tolist() == [[[0, 0, 0], [128, 128, 128]]]
    assert formats.read_png(tmp_path / "g.png").tolist() == [[0, 128]]
    Image.fromarray(np.zeros((1, 2, 4), np.uint8)).save(tmp_path / "a.png")
    assert formats.read_rgb_png(tmp_path / "a.png").shape == (1, 2, 3)  # Alpha dropped.
    Image.fromarray(np.full((1, 2), 60000, np.uint16)).save(tmp_path / "w.png")
    with pytest.raises(formats.FormatError, match="expected an 8-bit colour image"):
        formats.read_image(tmp_path / "w.png")
    with pytest.raises(formats.FormatError, match="expected a single-channel PNG"):
        formats.read_grey_png(tmp_path / "a.png")


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(formats.FormatError, match="file not found") as e:
        formats.read_png(tmp_path / "nope.png")
    assert e.value.path == str(tmp_path / "nope.png")
    formats.write_step_png(tmp_path / "t.png", np.zeros((8, 8), np.int64), label_divisor=1000)
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    for read in (formats.read_png, formats.read_image, formats.read_step_png):
        with pytest.raises(formats.FormatError, match="cannot decode image") as e:
            read(tmp_path / "t.png")
        assert str(e.value).startswith(f"{tmp_path / 't.png'}: ")
    (tmp_path / "t.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=f"{tmp_path / 't.png'}: cannot decode"):
        formats.read_rgb_ids(tmp_path / "t.png")


def test_format_error_survives_pickling():
    # Evaluation workers raise it in a child process; the parent re-raises the unpickled copy.
    e = pickle.loads(pickle.dumps(formats.FormatError("/a/b.png", "cannot decode image (x)")))
    assert isinstance(e, ValueError) and (e.path, e.problem) == (
        "/a/b.png",
        "cannot decode image (x)",
    )
    assert str(e) == "/a/b.png: cannot decode image (x)"


# --- Atomic writes -----------------------------------------------------------------------------


def test_atomic_writes_replace_whole_files(tmp_path):
    path = tmp_path / "sub" / "x.json"
    formats.atomic_write_json(path, {"a": [1, 2]})
    formats.atomic_write_json(path, {"b": None})
    assert json.loads(path.read_text()) == {"b": None}
    assert _no_temporaries(tmp_path)


def test_atomic_write_leaves_no_partial_file_on_error(tmp_path):
    path = tmp_path / "x.json"
    formats.atomic_write_json(path, {"old": 1})
    with pytest.raises(ValueError):  # NaN is not JSON: fails before anything is written.
        formats.atomic_write_json(path, {"new": float("nan")})
    assert json.loads(path.read_text()) == {"old": 1}

    real_fdopen = os.fdopen

    class HalfWritten:
        """A file whose write stops after 3 bytes, as on a full disk."""

        def __init__(self, fd, mode):
            self.file = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            self.file.write(data[:3])
            self.file.flush()
            raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fdopen", HalfWritten)
        with pytest.raises(OSError, match="No space left"):
            formats.atomic_write_bytes(path, b'{"new": 2}')
        with pytest.raises(OSError, match="No space left"):
            formats.atomic_write_png(tmp_path / "p.png", np.zeros((2, 2), np.uint8))
    assert json.loads(path.read_text()) == {"old": 1}  # The old file is untouched.
    assert not (tmp_path / "p.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]  # No temporary left.


def test_atomic_write_png_rejects_unwritable_arrays(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path / 'f.png'}: cannot write a float32"):
        formats.atomic_write_png(tmp_path / "f.png", np.zeros((2, 2), np.float32))
    assert not list(tmp_path.iterdir())


def test_replace_dir(tmp_path):
    target = tmp_path / "out"
    first = tmp_path / "first"
    first.mkdir()
    (first / "a").write_text("1")
    formats.replace_dir(first, target)
    assert (target / "a").read_text() == "1" and not first.exists()
    second = tmp_path / "second"
    second.mkdir()
    (second / "b").write_text("2")
    formats.replace_dir(second, target)
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # The old copy is gone.


def test_replace_dir_keeps_the_old_directory_when_the_swap_fails(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("keep")
    with pytest.raises(FileNotFoundError):
        formats.replace_dir(tmp_path / "missing", target)
    assert (target / "old").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path):
    # mkstemp makes 0o600 files; outputs must be as readable as any other file the user writes.
    import os
    import stat

    old = os.umask(0o022)
    try:
        formats._FILE_MODE = None
        formats.atomic_write_bytes(tmp_path / "a.bin", b"x")
        formats.atomic_write_json(tmp_path / "b.json", {"a": 1})
        with open(tmp_path / "plain.txt", "w"):
            pass
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        assert modes == {"a.bin": 0o644, "b.json": 0o644, "plain.txt": 0o644}
    finally:
        os.umask(old)
        formats._FILE_MODE = None

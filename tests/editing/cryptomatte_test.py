"""Cryptomatte: MurmurHash3 against published vectors, the float conversion, the EXR round trip
(manifest hashes, ids, reconstructed mattes equal to the per-track PNGs)."""

import json

import numpy as np
import pytest

from vipdl.data.descriptors import SYNTHETIC
from vipdl.editing import cryptomatte, mattes, writers
from vipdl.postprocess import labels

# (data, seed, hash): the widely published MurmurHash3_x86_32 test vectors.
MURMUR_VECTORS = [
    (b"", 0, 0x00000000),
    (b"", 1, 0x514E28B7),
    (b"", 0xFFFFFFFF, 0x81F16F39),
    (b"\xff\xff\xff\xff", 0, 0x76293B50),
    (b"!Ce\x87", 0, 0xF55B516B),
    (b"!Ce\x87", 0x5082EDEE, 0x2362F9DE),
    (b"!Ce", 0, 0x7E4A8634),
    (b"!C", 0, 0xA0F7B07A),
    (b"!", 0, 0x72661CF4),
    (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
    (b"\x00\x00\x00", 0, 0x85F0B427),
    (b"\x00\x00", 0, 0x30F4C306),
    (b"\x00", 0, 0x514E28B7),
    (b"Hello, world!", 0x9747B28C, 0x24884CBA),
    (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
    (b"aaaa", 0x9747B28C, 0x5A97808A),
    (b"aaa", 0x9747B28C, 0x283E0130),
    (b"aa", 0x9747B28C, 0x5D211726),
    (b"a", 0x9747B28C, 0x7FA09EA6),
    (b"abcd", 0x9747B28C, 0xF0478627),
    (b"abc", 0x9747B28C, 0xC84A62DD),
    (b"ab", 0x9747B28C, 0x74875592),
]


@pytest.mark.parametrize("data,seed,expected", MURMUR_VECTORS)
def test_murmurhash3_vectors(data, seed, expected):
    assert cryptomatte.murmurhash3_32(data, seed) == expected


def test_cryptomatte_specification_examples():
    # The manifest example of the Cryptomatte specification (1.1) and the float ids of Psyop's
    # own test suite (names hashed as UTF-8).
    assert cryptomatte.manifest(["bunny", "default", "bunny_porcelain_mat"]) == {
        "bunny": "13851a76", "default": "42c9679f", "bunny_porcelain_mat": "b24b26d4"}
    for name, value in {"hello": 6.0705627102400005616e-17, "cube": -4.08461912519e15,
                        "sphere": 2.79018604383e15, "plane": 3.66557617593e-11,
                        "m\u00e4dchen": 6.2361298211599995797e25}.items():
        assert cryptomatte.name_id(name) == np.float32(value), name


def test_uint32_to_float32_clamps_the_exponent():
    for bits in (0x00000001, 0x807FFFFF, 0x7F800000, 0xFFFFFFFF, 0x3F800000):
        f = np.array([cryptomatte.uint32_to_float32_bits(bits)], np.uint32).view(np.float32)[0]
        assert np.isfinite(f) and (f == 0 or abs(f) >= np.finfo(np.float32).tiny)
        assert (cryptomatte.uint32_to_float32_bits(bits) ^ bits) & ~(0xFF << 23) == 0
    assert cryptomatte.uint32_to_float32_bits(0x3F800000) == 0x3F800000  # unchanged
    assert cryptomatte.uint32_to_float32_bits(0x00000001) == 0x00800001  # exponent 0 -> 1
    assert cryptomatte.uint32_to_float32_bits(0x7F800000) == 0x7F000000  # exponent 255 -> 254


def test_exr_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    names = ["road", "person/7", "car/2", "void"]
    k, h, w = 3, 5, 7
    ids = rng.integers(-1, len(names), (k, h, w)).astype(np.int16)
    cov = np.where(ids >= 0, rng.random((k, h, w)), 0).astype(np.float32)
    path = tmp_path / "f.exr"
    cryptomatte.write_cryptomatte(path, ids, cov, names, extra_header={"vipdl/frame": "3"})
    crypto = cryptomatte.read_cryptomatte(path)
    key = cryptomatte.layer_key("CryptoObject")
    assert crypto.typename == "CryptoObject" and crypto.key == key
    assert crypto.header[f"cryptomatte/{key}/hash"] == "MurmurHash3_32"
    assert crypto.header[f"cryptomatte/{key}/conversion"] == "uint32_to_float32"
    assert crypto.header["vipdl/frame"] == "3"
    assert crypto.ids.shape == (4, h, w)  # Odd K: the last layer's second pair is empty.
    assert (crypto.coverage[3] == 0).all() and (crypto.ids[3] == 0).all()
    for name, hex_id in crypto.manifest.items():
        assert int(hex_id, 16) == cryptomatte.uint32_to_float32_bits(
            cryptomatte.murmurhash3_32(name))
    for i, name in enumerate(names):
        expected = np.where(ids == i, cov, 0).sum(0)
        np.testing.assert_array_equal(crypto.matte(name), expected)
    np.testing.assert_array_equal(crypto.ids[:k][ids < 0], 0)
    with pytest.raises(KeyError, match="not in the Cryptomatte manifest"):
        crypto.matte("bus/1")


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        cryptomatte.write_cryptomatte(tmp_path / "a.exr", np.zeros((1, 2, 2), int),
                                      np.zeros((1, 2, 2), np.float32), ["a", "a"])
    with pytest.raises(ValueError, match="index the 1 names"):
        cryptomatte.write_cryptomatte(tmp_path / "a.exr", np.ones((1, 2, 2), int),
                                      np.zeros((1, 2, 2), np.float32), ["a"])
    import OpenEXR

    plain = tmp_path / "plain.exr"
    OpenEXR.File({"type": OpenEXR.scanlineimage}, {"R": np.zeros((2, 2), np.float32)}).write(
        str(plain))
    with pytest.raises(ValueError, match="no cryptomatte/<key>/name"):
        cryptomatte.read_cryptomatte(plain)


def test_streaming_png_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 65536, (37, 23)).astype(np.uint16)
    path = tmp_path / "a.png"
    with writers.StreamingPngWriter(path, 37, 23) as png:
        for y in range(0, 37, 10):
            png.write_rows(image[y : y + 10])
    np.testing.assert_array_equal(writers.read_alpha_png(path), image / np.float32(65535))
    bad = writers.StreamingPngWriter(tmp_path / "b.png", 4, 3)
    bad.write_rows(np.zeros((2, 3), np.uint16))
    with pytest.raises(ValueError, match="2 rows written, expected 4"):
        bad.close()
    assert not (tmp_path / "b.png").exists() and not list(tmp_path.glob(".b.png*"))
    with pytest.raises(ValueError, match="uint16"):
        writers.StreamingPngWriter(tmp_path / "c.png", 4, 3).write_rows(np.zeros((1, 3)))


def _frame_mattes(index: int, seed: int) -> mattes.FrameMattes:
    """Ranked mattes of a 3-segment frame (+ void) with random soft borders."""
    rng = np.random.default_rng(seed)
    d = 1 << labels.TRACK_BITS  # wide ids class << 32 | track
    pan = np.array([0, 4 * d, 5 * d + 7, 255 * d])  # road, sky, person/7, void
    segments = mattes.segments_of(pan[:3].reshape(1, 3), SYNTHETIC, np.zeros(9, np.float32))
    alpha = rng.random((4, 11, 13)) ** 4
    alpha /= alpha.sum(0)
    order = np.argsort(-alpha, 0)[:2]
    cov = np.take_along_axis(alpha, order, 0).astype(np.float32)
    cov /= cov.sum(0)
    return mattes.FrameMattes(index, segments, order.astype(np.int16), cov, full_res=True)


def test_matte_writer_pngs_match_cryptomatte(tmp_path):
    out = tmp_path / "mattes"
    writer = writers.MatteWriter(out, SYNTHETIC, pngs=True, cryptomatte=True, band_rows=4)
    frames = [_frame_mattes(i, i) for i in range(2)]
    for f in frames:
        writer.add(f)
    writer.close()
    tracks = json.loads((out / "tracks.json").read_text())
    assert set(tracks) == {"road", "sky", "person-7"}
    assert tracks["person-7"]["cryptomatte_name"] == "person/7"
    assert tracks["person-7"]["track_id"] == 7 and tracks["person-7"]["frames"] == [0, 1]
    for f in frames:
        crypto = cryptomatte.read_cryptomatte(out / "cryptomatte" / f"{f.index:06d}.exr")
        assert set(crypto.manifest) == {"road", "sky", "person/7", "void"}
        for name, hex_id in crypto.manifest.items():
            assert hex_id == f"{cryptomatte.name_id_bits(name):08x}"
        for folder, entry in tracks.items():
            png = writers.read_alpha_png(out / folder / f"{f.index:06d}.png")
            from_ranks = crypto.matte(entry["cryptomatte_name"])
            np.testing.assert_array_less(np.abs(png - from_ranks), 1 / 65535)
            np.testing.assert_allclose(from_ranks, f.matte(entry["cryptomatte_name"]))

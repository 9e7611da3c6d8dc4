"""Cryptomatte ID mattes in multi-channel OpenEXR (docs/editing.md#cryptomatte).

Cryptomatte (Psyop, specification 1.1) stores, per pixel, the ids of the objects that cover it
ranked by coverage, two ranks per RGBA layer: `{typename}00.R` = id of rank 0, `.G` = its
coverage, `.B` = id of rank 1, `.A` = its coverage, then `{typename}01` for ranks 2 and 3, and
so on. An id is the 32-bit MurmurHash3 (x86, seed 0) of the object's name (UTF-8), turned into
a float32 by copying the bits and clamping the exponent field to [1, 254] (no zeros,
denormals, infinities or NaNs): the `uint32_to_float32` conversion. An empty rank has id 0 and
coverage 0. The header carries, under `cryptomatte/<key>/` with `key` the first 7 hex digits of
the hash of the type name: `name` (the type name), `hash` = `MurmurHash3_32`, `conversion` =
`uint32_to_float32` and `manifest`, a JSON object mapping each name to the 8 hex digits of its
float id's bits.

Nuke (the Cryptomatte gizmo), Fusion / DaVinci Resolve, Blender's compositor and After Effects
read these files and let a user pick objects by name or by clicking on them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HASH = "MurmurHash3_32"
CONVERSION = "uint32_to_float32"
DEFAULT_TYPENAME = "CryptoObject"

_M32 = 0xFFFFFFFF


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def murmurhash3_32(data: bytes | str, seed: int = 0) -> int:
    """MurmurHash3, x86 32-bit variant (Austin Appleby's public-domain algorithm).

    Args:
      data: bytes, or a str hashed as its UTF-8 encoding.
      seed: 32-bit seed (Cryptomatte uses 0).

    Returns:
      The unsigned 32-bit hash.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _M32
    n_blocks = len(data) // 4
    for (k,) in struct.iter_unpack("<I", data[: 4 * n_blocks]):
        k = _rotl32((k * c1) & _M32, 15)
        h ^= (k * c2) & _M32
        h = (_rotl32(h, 13) * 5 + 0xE6546B64) & _M32
    tail = data[4 * n_blocks :]
    if tail:
        k = int.from_bytes(tail, "little")
        k = _rotl32((k * c1) & _M32, 15)
        h ^= (k * c2) & _M32
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def uint32_to_float32_bits(value: int) -> int:
    """The Cryptomatte conversion on the bit level: exponent field clamped to [1, 254]."""
    exponent = (value >> 23) & 0xFF
    clamped = min(max(exponent, 1), 254)
    return (value & ~(0xFF << 23) & _M32) | (clamped << 23)


def name_id_bits(name: str) -> int:
    """The uint32 bit pattern of the float32 id of `name` (what the manifest's hex spells)."""
    return uint32_to_float32_bits(murmurhash3_32(name))


def name_id(name: str) -> np.float32:
    """The float32 id of `name` as stored in the id channels."""
    return np.array([name_id_bits(name)], np.uint32).view(np.float32)[0]


def layer_key(typename: str) -> str:
    """The 7-character metadata key of a Cryptomatte type (hex digits of its name's hash)."""
    return f"{murmurhash3_32(typename):08x}"[:7]


def manifest(names: Sequence[str]) -> dict[str, str]:
    """{name: 8 hex digits of the float id bits}, as in the `manifest` header entry."""
    return {name: f"{name_id_bits(name):08x}" for name in names}


def hex_to_id(hex_digits: str) -> np.float32:
    """Float32 id from the manifest's 8 hex digits (big-endian spelling of the bits)."""
    if len(hex_digits) != 8:
        raise ValueError(f"manifest id {hex_digits!r} is not 8 hex digits")
    return np.array([int(hex_digits, 16)], np.uint32).view(np.float32)[0]


def channel_names(typename: str, num_ranks: int) -> list[str]:
    """EXR channel names holding `num_ranks` ranks: `{typename}00.R`, `.G`, `.B`, `.A`, ..."""
    out = []
    for layer in range((num_ranks + 1) // 2):
        out += [f"{typename}{layer:02d}.{c}" for c in "RGBA"]
    return out


def write_cryptomatte(
    path: str | Path,
    rank_ids: np.ndarray,
    rank_coverage: np.ndarray,
    names: Sequence[str],
    *,
    typename: str = DEFAULT_TYPENAME,
    extra_header: dict | None = None,
) -> None:
    """Writes one Cryptomatte frame (scanline EXR, ZIP compression, float32 channels).

    Args:
      path: the .exr file.
      rank_ids: int [K, height, width], index into `names` of rank k at each pixel, -1 = none.
      rank_coverage: float32 [K, height, width] coverage of each rank (0 where the id is -1).
      names: the object names; their ids are hashed from these strings.
      typename: the Cryptomatte type (layer) name.
      extra_header: further string header attributes (e.g. the source frame index).

    Raises:
      ValueError: mismatched shapes, indices outside `names`, or duplicate names.
    """
    import OpenEXR

    rank_ids = np.asarray(rank_ids)
    if rank_ids.ndim != 3 or rank_coverage.shape != rank_ids.shape:
        raise ValueError(
            f"rank_ids and rank_coverage must both be [K, height, width], got {rank_ids.shape} "
            f"and {np.shape(rank_coverage)}"
        )
    if len(set(names)) != len(names):
        raise ValueError("Cryptomatte names must be unique")
    if rank_ids.size and (rank_ids.max() >= len(names) or rank_ids.min() < -1):
        raise ValueError(f"rank_ids must index the {len(names)} names (or be -1)")
    k, h, w = rank_ids.shape
    # Index -1 picks the appended 0.0: "no object" per the specification.
    table = np.array([name_id_bits(n) for n in names] + [0], np.uint32).view(np.float32)
    channels = {}
    chans = channel_names(typename, k)
    for rank in range(len(chans) // 2):
        id_name, cov_name = chans[2 * rank], chans[2 * rank + 1]
        if rank < k:
            channels[id_name] = table[rank_ids[rank]]
            channels[cov_name] = np.ascontiguousarray(rank_coverage[rank], np.float32)
        else:  # Odd K: the last layer's second pair is empty.
            channels[id_name] = np.zeros((h, w), np.float32)
            channels[cov_name] = np.zeros((h, w), np.float32)
    prefix = f"cryptomatte/{layer_key(typename)}/"
    header = {
        "compression": OpenEXR.ZIP_COMPRESSION,
        "type": OpenEXR.scanlineimage,
        prefix + "name": typename,
        prefix + "hash": HASH,
        prefix + "conversion": CONVERSION,
        prefix + "manifest": json.dumps(manifest(names), separators=(",", ":")),
    }
    header.update(extra_header or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic: a run stopped mid-write leaves no truncated EXR under the final name.
    tmp = path.with_name(f".{path.name}.partial.exr")
    try:
        OpenEXR.File(header, channels).write(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclasses.dataclass(frozen=True)
class Cryptomatte:
    """One Cryptomatte type read from an EXR file.

    Attributes:
      typename: the type name (e.g. "CryptoObject").
      key: its 7-character metadata key.
      manifest: {name: 8 hex digits}.
      ids: float32 [K, height, width] id of each rank.
      coverage: float32 [K, height, width] coverage of each rank.
      header: the whole EXR header.
    """

    typename: str
    key: str
    manifest: dict[str, str]
    ids: np.ndarray
    coverage: np.ndarray
    header: dict

    def matte(self, name: str) -> np.ndarray:
        """float32 [height, width]: the summed coverage of `name`'s id over all ranks."""
        if name not in self.manifest:
            raise KeyError(f"{name!r} is not in the Cryptomatte manifest")
        target = hex_to_id(self.manifest[name]).view(np.uint32)
        hit = self.ids.view(np.uint32) == target  # Bitwise: ids are hashes, not numbers.
        return np.where(hit, self.coverage, 0.0).sum(axis=0, dtype=np.float32)


def read_cryptomatte(path: str | Path, typename: str | None = None) -> Cryptomatte:
    """Reads a Cryptomatte type (the only one, or `typename`) from an EXR file.

    Raises:
      ValueError: no Cryptomatte metadata, an unknown hash or conversion, or missing channels.
    """
    import OpenEXR

    f = OpenEXR.File(str(path), separate_channels=True)
    header = f.header()
    types = {
        key.split("/")[1]: value
        for key, value in header.items()
        if key.startswith("cryptomatte/") and key.endswith("/name")
    }
    if not types:
        raise ValueError(f"{path}: no cryptomatte/<key>/name header entry")
    if typename is None:
        if len(types) > 1:
            raise ValueError(f"{path}: holds several Cryptomatte types {sorted(types.values())}")
        key, typename = next(iter(types.items()))
    else:
        matches = [k for k, v in types.items() if v == typename]
        if not matches:
            raise ValueError(f"{path}: no Cryptomatte type {typename!r} (has {sorted(types.values())})")
        key = matches[0]
    prefix = f"cryptomatte/{key}/"
    for field, expected in (("hash", HASH), ("conversion", CONVERSION)):
        if header.get(prefix + field) != expected:
            raise ValueError(
                f"{path}: {prefix}{field} is {header.get(prefix + field)!r}, expected {expected!r}"
            )
    entries = json.loads(header.get(prefix + "manifest", "{}"))
    channels = f.channels()
    layer_names = sorted(
        {n.rsplit(".", 1)[0] for n in channels if n.startswith(typename) and n[len(typename):][:2].isdigit()}
    )
    if not layer_names:
        raise ValueError(f"{path}: no {typename}00 channels")
    ids, coverage = [], []
    for layer in layer_names:
        for id_c, cov_c in (("R", "G"), ("B", "A")):
            try:
                ids.append(channels[f"{layer}.{id_c}"].pixels.astype(np.float32, copy=False))
                coverage.append(channels[f"{layer}.{cov_c}"].pixels.astype(np.float32, copy=False))
            except KeyError as e:
                raise ValueError(f"{path}: channel {e.args[0]} missing") from None
    return Cryptomatte(
        typename=typename,
        key=key,
        manifest=entries,
        ids=np.stack(ids),
        coverage=np.stack(coverage),
        header=header,
    )

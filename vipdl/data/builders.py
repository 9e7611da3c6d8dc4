"""TFDS builders (ArrayRecord) of annotated frame pairs, and `load_source` to read them.

One record is an annotated pair (t, t+1) of one video: both images (PNG), both panoptic labels
(PNG of the RGB segment-id encoding `formats.id_to_rgb(semantic * D + instance)`), the depth of
frame t when the dataset has depth (uint16 PNG of metres * 256, `formats.depth_to_png`), the
sequence id and both frame indices. Examples are written in generation order (no shuffling),
i.e. by (sequence, frame), so evaluation splits keep whole videos in order.

Conversion reads the raw files the user downloaded (`manual_dir`, see docs/datasets.md) through
`vipdl.data.layouts`, so structure and label values are validated first and every problem is
reported together with its file name. TFDS builds into a temporary directory that is renamed
only after success, and `prepare` builds into a private staging directory that replaces the
final one at the very end, so an interrupted conversion never leaves a dataset that looks
complete and never destroys an existing one. Nothing here touches the network.
"""

from __future__ import annotations

import abc
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from vipdl import formats, keys
from vipdl.data import descriptors, layouts, synthetic_export
from vipdl.data.descriptors import DatasetDescriptor

_INSTRUCTIONS = (
    "Download the dataset as described in docs/datasets.md of vipdl and pass its root folder "
    "as --manual_dir (`vipdl-prepare-data --dataset {name} --manual_dir DIR --data_dir OUT`)."
)


class _PairBuilder(tfds.core.GeneratorBasedBuilder, abc.ABC):
    """Builder of annotated pairs read from a raw `layouts.Layout`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: annotated pairs (t, t+1)."}
    # No URL checksums to look up (manual data only). This also avoids TFDS resolving the
    # module's resource path, which needs the optional `importlib_resources` package.
    code_path = None
    DESCRIPTOR: DatasetDescriptor
    HOMEPAGE = ""

    # Set by `prepare` before building; -1 disables the split-size check.
    expected_frames: dict[str, int] | None = None
    check_counts: bool = True

    @abc.abstractmethod
    def _make_layout(self, manual_dir: Path) -> layouts.Layout:
        """The raw layout found in `manual_dir`."""

    def _expected_frames(self, split: str) -> int | None:
        if not self.check_counts:
            return -1
        return (self.expected_frames or {}).get(split)

    def _info(self) -> tfds.core.DatasetInfo:
        image = tfds.features.Image(shape=(None, None, 3), encoding_format="png")
        rgb_label = tfds.features.Image(shape=(None, None, 3), encoding_format="png")
        features = {
            keys.IMAGE: image,
            keys.NEXT_IMAGE: image,
            keys.PANOPTIC: rgb_label,
            keys.NEXT_PANOPTIC: rgb_label,
            keys.SEQUENCE_ID: tfds.features.Text(),
            keys.FRAME_INDEX: tfds.features.Scalar(np.int32),
            keys.NEXT_FRAME_INDEX: tfds.features.Scalar(np.int32),
        }
        if self.DESCRIPTOR.has_depth:
            features[keys.DEPTH] = tfds.features.Image(
                shape=(None, None, 1), dtype=np.uint16, encoding_format="png"
            )
        return self.dataset_info_from_configs(
            description=(
                f"{self.DESCRIPTOR.name}: annotated frame pairs (t, t+1) for video panoptic "
                "segmentation, labels as semantic * "
                f"{self.DESCRIPTOR.label_divisor} + instance in an RGB id PNG."
            ),
            features=tfds.features.FeaturesDict(features),
            homepage=self.HOMEPAGE or None,
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        layout = self._make_layout(Path(dl_manager.manual_dir))
        splits = layout.splits()
        if not splits:
            raise layouts.DatasetError(
                f"{self.DESCRIPTOR.name} at {layout.root}",
                [f"{layout.root}: no labelled split found ({type(layout).__name__} layout)"],
            )
        problems, videos = [], {}
        for split in splits:  # Structure of every split first: all problems in one report.
            try:
                videos[split] = layout.videos(split, expected_frames=self._expected_frames(split))
            except layouts.DatasetError as e:
                problems += e.problems
        if problems:
            raise layouts.DatasetError(f"{self.DESCRIPTOR.name} at {layout.root}", problems)
        return {split: self._generate_examples(layout, v) for split, v in videos.items()}

    def _generate_examples(self, layout: layouts.Layout, videos: list[layouts.Video]) -> Iterator:
        for video in videos:
            prev = None  # (frame, decoded) of the previous frame: each file is decoded once.
            for frame in video.frames:
                try:
                    decoded = layout.read_frame(frame)
                except layouts.DatasetError as e:
                    self._problems.extend(e.problems)
                    prev = None
                    continue
                if prev is not None:
                    yield self._example(video, prev[0], prev[1], frame, decoded)
                prev = (frame, decoded)

    def _example(self, video, frame, decoded, next_frame, next_decoded) -> tuple[str, dict]:
        (image, panoptic, depth), (next_image, next_panoptic, _) = decoded, next_decoded
        if next_image.shape != image.shape:  # Recorded; the build fails at the end.
            self._problems.append(
                f"{next_frame.image}: size {next_image.shape[1]}x{next_image.shape[0]} differs "
                f"from the previous frame {frame.image} ({image.shape[1]}x{image.shape[0]})"
            )
        example = {
            keys.IMAGE: image,
            keys.NEXT_IMAGE: next_image,
            keys.PANOPTIC: formats.id_to_rgb(panoptic),
            keys.NEXT_PANOPTIC: formats.id_to_rgb(next_panoptic),
            keys.SEQUENCE_ID: video.sequence_id,
            keys.FRAME_INDEX: frame.index,
            keys.NEXT_FRAME_INDEX: next_frame.index,
        }
        if self.DESCRIPTOR.has_depth:
            if depth is None:
                depth = np.zeros(panoptic.shape, np.float32)  # 0 = no ground truth.
            example[keys.DEPTH] = formats.depth_to_png(depth)[..., None]
        return f"{video.sequence_id}/{frame.index:06d}", example

    def _download_and_prepare(self, dl_manager, download_config) -> None:
        self._problems: list[str] = []
        super()._download_and_prepare(dl_manager, download_config)
        if self._problems:
            # Raising here (inside TFDS's incomplete-directory context) discards the output.
            raise layouts.DatasetError(
                f"{self.DESCRIPTOR.name} at {dl_manager.manual_dir}", self._problems
            )


# Registration is skipped: the builders are used through `prepare` / `load_source` only, so no
# global TFDS name can clash and no registry/GCS lookup ever happens.
with tfds.core.registered.skip_registration():

    class VipdlCityscapesVps(_PairBuilder):
        """Cityscapes-VPS (mcahny/vps) annotated pairs."""

        name = "vipdl_cityscapes_vps"
        DESCRIPTOR = descriptors.CITYSCAPES_VPS
        HOMEPAGE = "https://github.com/mcahny/vps"
        MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(name="cityscapes_vps")

        def _make_layout(self, manual_dir):
            return layouts.CityscapesVpsLayout(manual_dir, self.DESCRIPTOR)

    class VipdlCityscapesDvps(_PairBuilder):
        """Cityscapes-DVPS (ViP-DeepLab) annotated pairs with depth."""

        name = "vipdl_cityscapes_dvps"
        DESCRIPTOR = descriptors.CITYSCAPES_DVPS
        HOMEPAGE = "https://github.com/joe-siyuan-qiao/ViP-DeepLab"
        MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(name="cityscapes_dvps")

        def _make_layout(self, manual_dir):
            return layouts.CityscapesDvpsLayout(manual_dir, self.DESCRIPTOR)

    class VipdlKittiStep(_PairBuilder):
        """KITTI-STEP consecutive frame pairs."""

        name = "vipdl_kitti_step"
        DESCRIPTOR = descriptors.KITTI_STEP
        HOMEPAGE = "https://www.cvlibs.net/datasets/kitti/eval_step.php"
        MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(name="kitti_step")

        def _make_layout(self, manual_dir):
            return layouts.StepLayout(manual_dir, self.DESCRIPTOR)

    class VipdlMotchallengeStep(_PairBuilder):
        """MOTChallenge-STEP consecutive frame pairs (same layout as KITTI-STEP)."""

        name = "vipdl_motchallenge_step"
        DESCRIPTOR = descriptors.MOTCHALLENGE_STEP
        HOMEPAGE = "https://motchallenge.net/data/STEP-ICCV21/"
        MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(name="motchallenge_step")

        def _make_layout(self, manual_dir):
            return layouts.StepLayout(manual_dir, self.DESCRIPTOR)

    class VipdlVipseg(_PairBuilder):
        """VIPSeg consecutive annotated frame pairs."""

        name = "vipdl_vipseg"
        DESCRIPTOR = descriptors.VIPSEG
        HOMEPAGE = "https://github.com/VIPSeg-Dataset/VIPSeg-Dataset"
        MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(name="vipseg")

        def _make_layout(self, manual_dir):
            return layouts.VipsegLayout(manual_dir, self.DESCRIPTOR)

    class VipdlSynthetic(_PairBuilder):
        """The synthetic world, read from the layouts written by `synthetic_export.write_dataset`.

        The Cityscapes-DVPS layout (with depth) is used when present, else Cityscapes-VPS
        (depth 0 = no ground truth). Expected split sizes come from `synthetic.json`.
        """

        name = "vipdl_synthetic"
        DESCRIPTOR = descriptors.SYNTHETIC
        MANUAL_DOWNLOAD_INSTRUCTIONS = (
            "Generate the raw files with `vipdl-make-synthetic --out DIR` and pass DIR as "
            "--manual_dir."
        )

        def _make_layout(self, manual_dir):
            meta = synthetic_export.read_metadata(manual_dir)
            if self.check_counts:
                self.expected_frames = dict(meta["split_num_frames"])
            if "cityscapes_dvps" in meta["layouts"]:
                return layouts.CityscapesDvpsLayout(manual_dir, self.DESCRIPTOR)
            if "cityscapes_vps" in meta["layouts"]:
                return layouts.CityscapesVpsLayout(manual_dir, self.DESCRIPTOR)
            raise layouts.DatasetError(
                str(manual_dir),
                [f"needs the cityscapes_dvps or cityscapes_vps layout, has {meta['layouts']}"],
            )


BUILDERS: dict[str, type[_PairBuilder]] = {
    "cityscapes_vps": VipdlCityscapesVps,
    "cityscapes_dvps": VipdlCityscapesDvps,
    "kitti_step": VipdlKittiStep,
    "motchallenge_step": VipdlMotchallengeStep,
    "vipseg": VipdlVipseg,
    "synthetic": VipdlSynthetic,
}


def _builder_class(dataset: str) -> type[_PairBuilder]:
    try:
        return BUILDERS[dataset]
    except KeyError:
        raise KeyError(f"unknown dataset {dataset!r}; known: {sorted(BUILDERS)}") from None


def dataset_dir(dataset: str, data_dir: str | os.PathLike) -> Path:
    """Directory of the prepared dataset: `<data_dir>/<builder name>/<version>`."""
    cls = _builder_class(dataset)
    return Path(data_dir) / cls.name / str(cls.VERSION)


def is_prepared(dataset: str, data_dir: str | os.PathLike) -> bool:
    """Whether a complete prepared copy exists (TFDS writes dataset_info.json last)."""
    return (dataset_dir(dataset, data_dir) / "dataset_info.json").is_file()


def prepare(
    dataset: str,
    *,
    manual_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    overwrite: bool = False,
    check_counts: bool = True,
) -> Path:
    """Converts the raw files in `manual_dir` into ArrayRecord files under `data_dir`.

    Args:
        dataset: one of `BUILDERS` (e.g. "synthetic", "cityscapes_dvps").
        manual_dir: root of the downloaded raw dataset (layout in docs/datasets.md).
        data_dir: TFDS data directory to write to.
        overwrite: replace an existing complete dataset (only after the new one is complete).
        check_counts: compare split sizes with the descriptor (disable for partial downloads).

    Returns:
        The prepared dataset directory.

    Raises:
        FileExistsError: a complete dataset exists and `overwrite` is False.
        layouts.DatasetError: the raw files have problems (all listed, with file names).
    """
    cls = _builder_class(dataset)
    manual_dir = Path(manual_dir)
    if not manual_dir.is_dir():
        raise FileNotFoundError(f"--manual_dir {manual_dir} is not a directory")
    final = dataset_dir(dataset, data_dir)
    if is_prepared(dataset, data_dir) and not overwrite:
        raise FileExistsError(
            f"{final} is already prepared; pass overwrite=True (--overwrite) to rebuild it"
        )
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cls.name}.", suffix=".staging", dir=data_dir))
    try:
        builder = cls(data_dir=os.fspath(staging), file_format="array_record")
        builder.check_counts = check_counts
        if check_counts:
            builder.expected_frames = dict(cls.DESCRIPTOR.split_num_frames)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=os.fspath(manual_dir), try_download_gcs=False
            )
        )
        final.parent.mkdir(parents=True, exist_ok=True)
        # The old copy goes only once the new one is in place.
        formats.replace_dir(staging / cls.name / str(cls.VERSION), final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


class DecodedSource:
    """Random-access source of decoded pairs of a prepared split.

    `source[i]` is the decoded dataset example of docs/architecture.md: images uint8
    [h, w, 3], panoptic labels int32 [h, w], depth float32 [h, w] metres (if the dataset has
    depth), sequence id str, frame indices int.
    """

    def __init__(self, data_source, has_depth: bool):
        self._source = data_source
        self._has_depth = has_depth

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"example {index} out of range [0, {len(self)})")
        return self._decode(self._source[index])

    def _decode(self, raw: dict) -> dict:
        seq = raw[keys.SEQUENCE_ID]
        out = {
            keys.IMAGE: np.asarray(raw[keys.IMAGE], np.uint8),
            keys.NEXT_IMAGE: np.asarray(raw[keys.NEXT_IMAGE], np.uint8),
            keys.PANOPTIC: formats.rgb_to_id(np.asarray(raw[keys.PANOPTIC])),
            keys.NEXT_PANOPTIC: formats.rgb_to_id(np.asarray(raw[keys.NEXT_PANOPTIC])),
            keys.SEQUENCE_ID: seq.decode() if isinstance(seq, bytes) else str(seq),
            keys.FRAME_INDEX: int(raw[keys.FRAME_INDEX]),
            keys.NEXT_FRAME_INDEX: int(raw[keys.NEXT_FRAME_INDEX]),
        }
        if self._has_depth:  # Skipped by TFDS (its numpy path cannot decode uint16 PNGs).
            png = formats.decode_png_bytes(raw[keys.DEPTH], f"depth of sequence {seq!r}")
            out[keys.DEPTH] = formats.depth_from_png(png)
        return out


def load_source(dataset: str, split: str, data_dir: str | os.PathLike) -> DecodedSource:
    """Opens a prepared split as a random-access source of decoded examples (no network).

    Args:
        dataset: one of `BUILDERS`.
        split: split name (e.g. "train", "val").
        data_dir: the `data_dir` given to `prepare`.
    """
    cls = _builder_class(dataset)
    if not is_prepared(dataset, data_dir):
        raise FileNotFoundError(
            f"{dataset_dir(dataset, data_dir)} is not a prepared dataset; run "
            f"`vipdl-prepare-data --dataset {dataset} --manual_dir RAW --data_dir {data_dir}`"
        )
    builder = cls(data_dir=os.fspath(data_dir))
    if split not in builder.info.splits:
        raise KeyError(f"{dataset} has no split {split!r}; available: {list(builder.info.splits)}")
    has_depth = cls.DESCRIPTOR.has_depth
    decoders = {keys.DEPTH: tfds.decode.SkipDecoding()} if has_depth else None
    return DecodedSource(builder.as_data_source(split=split, decoders=decoders), has_depth)

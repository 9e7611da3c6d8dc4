"""TFDS builders (ArrayRecord) of annotated frame pairs, and `load_source` to read them.

One record is an annotated pair (t, t+1) of one video: both images (PNG), both panoptic labels
(PNG of the RGB segment-id encoding `formats.id_to_rgb(semantic * D + instance)`), the depth of
frame t when the dataset has depth (uint16 PNG of metres * 256, `formats.depth_to_png`), the
sequence id and both frame indices. Examples are written in generation order (no shuffling),
i.e. by (sequence, frame), so evaluation splits keep whole videos in order. Image datasets
(`descriptor.is_video` False: Cityscapes panoptic, COCO panoptic) store one image per record and
no next frame. Custom datasets (`vipdl.data.custom`) also store the raw frame numbers of both
frames, and their descriptor as `descriptor.json` in the prepared directory.

Conversion reads the raw files the user downloaded (`manual_dir`, see docs/datasets.md) through
`vipdl.data.layouts`, so structure and label values are validated first and every problem is
reported together with its file name. TFDS builds into a temporary directory that is renamed
only after success, and `prepare` builds into a private staging directory that replaces the
final one at the very end, so an interrupted conversion never leaves a dataset that looks
complete and never destroys an existing one. Nothing here touches the network.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from vipdl import formats, keys
from vipdl.data import custom, descriptors, layouts, synthetic_export
from vipdl.data.descriptors import DatasetDescriptor

CUSTOM = "custom"  # The `--dataset` of your own videos (vipdl.data.custom).

_INSTRUCTIONS = (
    "Download the dataset as described in docs/datasets.md of vipdl and pass its root folder "
    "as --manual_dir (`vipdl-prepare-data --dataset {name} --manual_dir DIR --data_dir OUT`)."
)


def _thing_instances(panoptic: np.ndarray, descriptor: DatasetDescriptor) -> set[int]:
    """Panoptic values of the thing instances (instance > 0) in a label map."""
    d = descriptor.label_divisor
    values = np.unique(panoptic)
    return {int(v) for v in values if v % d and descriptor.is_thing(int(v) // d)}


class _PairBuilder(tfds.core.GeneratorBasedBuilder, abc.ABC):
    """Builder of annotated pairs read from a raw `layouts.Layout`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: annotated pairs (t, t+1)."}
    # No URL checksums to look up (manual data only). This also avoids TFDS resolving the
    # module's resource path, which needs the optional `importlib_resources` package.
    code_path = None
    DESCRIPTOR: DatasetDescriptor
    HOMEPAGE = ""

    # Set by `prepare` before building: compare split sizes with the published ones.
    check_counts: bool = True

    @classmethod
    @abc.abstractmethod
    def make_layout(cls, manual_dir: Path) -> layouts.Layout:
        """The raw layout found in `manual_dir`."""

    @classmethod
    def expected_split_frames(cls, manual_dir: Path) -> dict[str, int]:
        """Annotated frames expected per split (splits not listed are not checked)."""
        return dict(cls.DESCRIPTOR.split_num_frames)

    # Custom datasets also record the raw frame numbers of a pair (its real distance).
    RAW_FRAMES = False

    def _info(self) -> tfds.core.DatasetInfo:
        image = tfds.features.Image(shape=(None, None, 3), encoding_format="png")
        rgb_label = tfds.features.Image(shape=(None, None, 3), encoding_format="png")
        features = {
            keys.IMAGE: image,
            keys.PANOPTIC: rgb_label,
            keys.SEQUENCE_ID: tfds.features.Text(),
            keys.FRAME_INDEX: tfds.features.Scalar(np.int32),
        }
        if self.DESCRIPTOR.is_video:
            features[keys.NEXT_IMAGE] = image
            features[keys.NEXT_PANOPTIC] = rgb_label
            features[keys.NEXT_FRAME_INDEX] = tfds.features.Scalar(np.int32)
        if self.RAW_FRAMES:
            features[keys.RAW_FRAME] = tfds.features.Scalar(np.int32)
            features[keys.NEXT_RAW_FRAME] = tfds.features.Scalar(np.int32)
        if self.DESCRIPTOR.has_depth:
            features[keys.DEPTH] = tfds.features.Image(
                shape=(None, None, 1), dtype=np.uint16, encoding_format="png"
            )
        what = ("annotated frame pairs (t, t+1) for video panoptic segmentation"
                if self.DESCRIPTOR.is_video else "images for panoptic segmentation")
        return self.dataset_info_from_configs(
            description=(
                f"{self.DESCRIPTOR.name}: {what}, labels as semantic * "
                f"{self.DESCRIPTOR.label_divisor} + instance in an RGB id PNG."
            ),
            features=tfds.features.FeaturesDict(features),
            homepage=self.HOMEPAGE or None,
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        manual_dir = Path(dl_manager.manual_dir)
        layout = self.make_layout(manual_dir)
        expected = self.expected_split_frames(manual_dir) if self.check_counts else {}
        splits = layout.splits()
        if not splits:
            raise layouts.DatasetError(
                f"{self.DESCRIPTOR.name} at {layout.root}",
                [f"{layout.root}: no labelled split found ({type(layout).__name__} layout)"],
            )
        problems, videos = [], {}
        for split in splits:  # Structure of every split first: all problems in one report.
            try:
                videos[split] = layout.videos(split, expected_frames=expected.get(split, -1))
            except layouts.DatasetError as e:
                problems += e.problems
                continue
            if self.DESCRIPTOR.is_video and all(len(v.frames) < 2 for v in videos[split]):
                problems.append(f"{layout.root}: split {split!r} has no video with two annotated "
                                "frames, so no (t, t+1) pair")
        if problems:
            raise layouts.DatasetError(f"{self.DESCRIPTOR.name} at {layout.root}", problems)
        self._listed(layout, videos)
        return {split: self._generate_examples(layout, v) for split, v in videos.items()}

    def _listed(self, layout: layouts.Layout, videos: dict[str, list[layouts.Video]]) -> None:
        """Called once every split is listed and valid, before any example is generated."""
        self._warnings.extend(layout.warnings)

    def _generate_examples(self, layout: layouts.Layout, videos: list[layouts.Video]) -> Iterator:
        for video in videos:
            prev = None  # (frame, decoded) of the previous frame: each file is decoded once.
            things = []  # Thing instance values per frame, for the track-persistence check.
            for frame in video.frames:
                try:
                    decoded = layout.read_frame(frame)
                except layouts.DatasetError as e:
                    self._problems.extend(e.problems)
                    prev = None
                    continue
                if self.RAW_FRAMES:
                    things.append(_thing_instances(decoded[1], self.DESCRIPTOR))
                if not self.DESCRIPTOR.is_video:
                    yield self._single(video, frame, decoded)
                elif prev is not None:
                    yield self._example(video, prev[0], prev[1], frame, decoded)
                prev = (frame, decoded)
            warning = custom.persistence_warning(video, things) if self.RAW_FRAMES else None
            if warning:
                self._warnings.append(warning)

    def _single(self, video, frame, decoded) -> tuple[str, dict]:
        image, panoptic, depth = decoded
        example = {
            keys.IMAGE: image,
            keys.PANOPTIC: formats.id_to_rgb(panoptic),
            keys.SEQUENCE_ID: video.sequence_id,
            keys.FRAME_INDEX: frame.index,
        }
        if self.DESCRIPTOR.has_depth:
            example[keys.DEPTH] = formats.depth_to_png(
                np.zeros(panoptic.shape, np.float32) if depth is None else depth
            )[..., None]
        return video.sequence_id, example

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
        if self.RAW_FRAMES:
            example[keys.RAW_FRAME] = frame.token
            example[keys.NEXT_RAW_FRAME] = next_frame.token
        if self.DESCRIPTOR.has_depth:
            if depth is None:
                depth = np.zeros(panoptic.shape, np.float32)  # 0 = no ground truth.
            example[keys.DEPTH] = formats.depth_to_png(depth)[..., None]
        return f"{video.sequence_id}/{frame.index:06d}", example

    def _download_and_prepare(self, dl_manager, download_config) -> None:
        self._problems: list[str] = []
        self._warnings: list[str] = []
        try:
            super()._download_and_prepare(dl_manager, download_config)
        except Exception:
            # E.g. TFDS refusing a split whose every frame was bad: the files are the cause.
            if self._problems:
                raise layouts.DatasetError(
                    f"{self.DESCRIPTOR.name} at {dl_manager.manual_dir}", self._problems
                ) from None
            raise
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

        @classmethod
        def make_layout(cls, manual_dir):
            return layouts.CityscapesVpsLayout(manual_dir, cls.DESCRIPTOR)

    class VipdlCityscapesDvps(_PairBuilder):
        """Cityscapes-DVPS (ViP-DeepLab) annotated pairs with depth."""

        name = "vipdl_cityscapes_dvps"
        DESCRIPTOR = descriptors.CITYSCAPES_DVPS
        HOMEPAGE = "https://github.com/joe-siyuan-qiao/ViP-DeepLab"
        MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(name="cityscapes_dvps")

        @classmethod
        def make_layout(cls, manual_dir):
            return layouts.CityscapesDvpsLayout(manual_dir, cls.DESCRIPTOR)

    class VipdlKittiStep(_PairBuilder):
        """KITTI-STEP consecutive frame pairs."""

        name = "vipdl_kitti_step"
        DESCRIPTOR = descriptors.KITTI_STEP
        HOMEPAGE = "https://www.cvlibs.net/datasets/kitti/eval_step.php"
        MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(name="kitti_step")

        @classmethod
        def make_layout(cls, manual_dir):
            return layouts.StepLayout(manual_dir, cls.DESCRIPTOR)

    class VipdlMotchallengeStep(_PairBuilder):
        """MOTChallenge-STEP consecutive frame pairs (same layout as KITTI-STEP)."""

        name = "vipdl_motchallenge_step"
        DESCRIPTOR = descriptors.MOTCHALLENGE_STEP
        HOMEPAGE = "https://motchallenge.net/data/STEP-ICCV21/"
        MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(name="motchallenge_step")

        @classmethod
        def make_layout(cls, manual_dir):
            return layouts.StepLayout(manual_dir, cls.DESCRIPTOR)

    class VipdlVipseg(_PairBuilder):
        """VIPSeg consecutive annotated frame pairs."""

        name = "vipdl_vipseg"
        DESCRIPTOR = descriptors.VIPSEG
        HOMEPAGE = "https://github.com/VIPSeg-Dataset/VIPSeg-Dataset"
        MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(name="vipseg")

        @classmethod
        def make_layout(cls, manual_dir):
            return layouts.VipsegLayout(manual_dir, cls.DESCRIPTOR)

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

        @classmethod
        def expected_split_frames(cls, manual_dir):
            return dict(synthetic_export.read_metadata(manual_dir)["split_num_frames"])

        @classmethod
        def make_layout(cls, manual_dir):
            meta = synthetic_export.read_metadata(manual_dir)
            if "cityscapes_dvps" in meta["layouts"]:
                return layouts.CityscapesDvpsLayout(manual_dir, cls.DESCRIPTOR)
            if "cityscapes_vps" in meta["layouts"]:
                return layouts.CityscapesVpsLayout(manual_dir, cls.DESCRIPTOR)
            raise layouts.DatasetError(
                str(manual_dir),
                [f"needs the cityscapes_dvps or cityscapes_vps layout, has {meta['layouts']}"],
            )


    class VipdlSemkittiDvps(_PairBuilder):
        """SemKITTI-DVPS consecutive frame pairs with sparse LiDAR depth."""

        name = "vipdl_semkitti_dvps"
        DESCRIPTOR = descriptors.SEMKITTI_DVPS
        HOMEPAGE = "https://github.com/joe-siyuan-qiao/ViP-DeepLab"
        MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(name="semkitti_dvps")

        @classmethod
        def make_layout(cls, manual_dir):
            return layouts.SemKittiDvpsLayout(manual_dir, cls.DESCRIPTOR)

    class VipdlCityscapesPanoptic(_PairBuilder):
        """Cityscapes panoptic images (gtFine, train ids), one image per record."""

        name = "vipdl_cityscapes_panoptic"
        DESCRIPTOR = descriptors.CITYSCAPES_PANOPTIC
        HOMEPAGE = "https://www.cityscapes-dataset.com/"
        MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(name="cityscapes_panoptic")

        @classmethod
        def make_layout(cls, manual_dir):
            return layouts.CityscapesPanopticLayout(manual_dir, cls.DESCRIPTOR)

    class VipdlCocoPanoptic(_PairBuilder):
        """COCO panoptic 2017 images, one image per record."""

        name = "vipdl_coco_panoptic"
        DESCRIPTOR = descriptors.COCO_PANOPTIC
        HOMEPAGE = "https://cocodataset.org/#panoptic-2018"
        MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(name="coco_panoptic")

        @classmethod
        def make_layout(cls, manual_dir):
            return layouts.CocoPanopticLayout(manual_dir, cls.DESCRIPTOR)

    class VipdlCustom(_PairBuilder):
        """Your own labelled videos (`vipdl.data.custom`). `DESCRIPTOR` is the dataset's own:
        use `custom_builder_class(descriptor)`."""

        name = custom.BUILDER_NAME
        VERSION = tfds.core.Version(custom.BUILDER_VERSION)
        DESCRIPTOR = None
        RAW_FRAMES = True
        MANUAL_DOWNLOAD_INSTRUCTIONS = (
            "Pass the folder holding dataset.json as --manual_dir (docs/datasets.md#custom)."
        )

        @classmethod
        def make_layout(cls, manual_dir):
            return custom.make_layout(manual_dir)

        def _listed(self, layout, videos):
            super()._listed(layout, videos)
            # The descriptor stored with the data records the typical annotation gap.
            self.prepared_descriptor = dataclasses.replace(
                self.DESCRIPTOR, annotation_stride=custom.annotation_stride(videos)
            )


def custom_builder_class(descriptor: DatasetDescriptor) -> type[_PairBuilder]:
    """The custom-data builder for `descriptor` (TFDS features depend on its depth flag)."""
    with tfds.core.registered.skip_registration():
        return type("VipdlCustom", (VipdlCustom,), {"DESCRIPTOR": descriptor,
                                                    "__module__": __name__})


BUILDERS: dict[str, type[_PairBuilder]] = {
    "cityscapes_vps": VipdlCityscapesVps,
    "cityscapes_dvps": VipdlCityscapesDvps,
    "kitti_step": VipdlKittiStep,
    "motchallenge_step": VipdlMotchallengeStep,
    "vipseg": VipdlVipseg,
    "semkitti_dvps": VipdlSemkittiDvps,
    "cityscapes_panoptic": VipdlCityscapesPanoptic,
    "coco_panoptic": VipdlCocoPanoptic,
    "synthetic": VipdlSynthetic,
    CUSTOM: VipdlCustom,
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


def make_layout(dataset: str, manual_dir: str | os.PathLike) -> layouts.Layout:
    """The reader of the raw files `prepare` converts (e.g. for `vipdl-dataset-stats`)."""
    manual_dir = Path(manual_dir)
    if not manual_dir.is_dir():
        raise FileNotFoundError(f"--manual_dir {manual_dir} is not a directory")
    return _builder_class(dataset).make_layout(manual_dir)


def prepared_descriptor(dataset: str, data_dir: str | os.PathLike) -> DatasetDescriptor:
    """The descriptor of a prepared dataset: the built-in one, or a custom dataset's own."""
    if dataset == CUSTOM:
        return custom.read_prepared_descriptor(data_dir)
    _builder_class(dataset)
    return descriptors.get_descriptor(dataset)


def prepare(
    dataset: str,
    *,
    manual_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    overwrite: bool = False,
    check_counts: bool = True,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Converts the raw files in `manual_dir` into ArrayRecord files under `data_dir`.

    Args:
        dataset: one of `BUILDERS` (e.g. "synthetic", "cityscapes_dvps", "custom").
        manual_dir: root of the downloaded raw dataset (layout in docs/datasets.md).
        data_dir: TFDS data directory to write to. It holds at most one custom dataset.
        overwrite: replace an existing complete dataset (only after the new one is complete).
        check_counts: compare split sizes with the descriptor (disable for partial downloads).
        warn: receives each finding that does not stop the conversion (e.g. a video whose frame
            size changes), after a successful build.

    Returns:
        The prepared dataset directory (custom data: with `descriptor.json`).

    Raises:
        FileExistsError: a complete dataset exists and `overwrite` is False.
        layouts.DatasetError: the raw files have problems (all listed, with file names).
    """
    cls = _builder_class(dataset)
    manual_dir = Path(manual_dir)
    if not manual_dir.is_dir():
        raise FileNotFoundError(f"--manual_dir {manual_dir} is not a directory")
    if dataset == CUSTOM:
        cls = custom_builder_class(custom.read_spec(manual_dir).descriptor)
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
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=os.fspath(manual_dir), try_download_gcs=False
            )
        )
        built = staging / cls.name / str(cls.VERSION)
        if dataset == CUSTOM:
            formats.atomic_write_json(built / custom.DESCRIPTOR_FILE,
                                      builder.prepared_descriptor.to_dict())
        final.parent.mkdir(parents=True, exist_ok=True)
        # The old copy goes only once the new one is in place.
        formats.replace_dir(built, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for message in getattr(builder, "_warnings", ()):
        if warn is not None:
            warn(message)
    return final


class DecodedSource:
    """Random-access source of decoded pairs of a prepared split.

    `source[i]` is the decoded dataset example of docs/architecture.md: images uint8
    [h, w, 3], panoptic labels int32 [h, w], depth float32 [h, w] metres (if the dataset has
    depth), sequence id str, frame indices int (no next frame for image datasets; raw frame
    numbers for custom datasets).
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
            keys.PANOPTIC: formats.rgb_to_id(np.asarray(raw[keys.PANOPTIC])),
            keys.SEQUENCE_ID: seq.decode() if isinstance(seq, bytes) else str(seq),
            keys.FRAME_INDEX: int(raw[keys.FRAME_INDEX]),
        }
        if keys.NEXT_IMAGE in raw:  # Image datasets have no next frame.
            out[keys.NEXT_IMAGE] = np.asarray(raw[keys.NEXT_IMAGE], np.uint8)
            out[keys.NEXT_PANOPTIC] = formats.rgb_to_id(np.asarray(raw[keys.NEXT_PANOPTIC]))
            out[keys.NEXT_FRAME_INDEX] = int(raw[keys.NEXT_FRAME_INDEX])
        for key in (keys.RAW_FRAME, keys.NEXT_RAW_FRAME):
            if key in raw:
                out[key] = int(raw[key])
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
    if dataset == CUSTOM:
        cls = custom_builder_class(prepared_descriptor(dataset, data_dir))
    builder = cls(data_dir=os.fspath(data_dir))
    if split not in builder.info.splits:
        raise KeyError(f"{dataset} has no split {split!r}; available: {list(builder.info.splits)}")
    has_depth = cls.DESCRIPTOR.has_depth
    decoders = {keys.DEPTH: tfds.decode.SkipDecoding()} if has_depth else None
    return DecodedSource(builder.as_data_source(split=split, decoders=decoders), has_depth)

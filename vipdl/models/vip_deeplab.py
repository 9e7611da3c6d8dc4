"""Meta-architectures: `PanopticDeepLab` (one frame) and `ViPDeepLab` (a frame pair).

Wiring follows deeplab2 (docs/architecture.md#vip-deeplab-wiring): one shared encoder; semantic and instance decoders (and the
optional depth head) see frame t only; the next-frame decoder takes concat(res5_t, res5_t+1)
with low-level features of frame t+1 and predicts, on frame t+1's pixels, offsets to frame t's
instance centres. Every output is resized (align-corners) to the input size; offsets are first
rescaled by (H - 1) / (h - 1).

Mixed precision: parameters are always float32; `dtype=jnp.bfloat16` runs the convolutions and
BatchNorm normalisation in bfloat16 (BatchNorm statistics in float32) while the final 1x1
prediction convs, the resizes and all outputs are float32.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vipdl import keys
from vipdl.models.backbones import create_backbone
from vipdl.models.decoder import ASPP, PanopticDeepLabDecoder
from vipdl.models.heads import PredictionHead
from vipdl.models.layers import (
    BatchNorm,
    resize_align_corners,
    resize_and_rescale_offsets,
    scale_size,
)


def _check_images(images: jax.Array, channels: int, name: str) -> None:
    if images.ndim != 4 or images.shape[-1] != channels:
        raise ValueError(
            f"{name}: expected images [batch, height, width, {channels}], got {images.shape}"
        )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a `PanopticDeepLab` / `ViPDeepLab` (docs/architecture.md#network).

    The defaults are deeplab2's Cityscapes(-DVPS) ResNet-50-beta OS32 model.

    Attributes:
        num_classes: semantic classes (the dataset's, void excluded).
        backbone: a name of `vipdl.models.backbones.BACKBONES`.
        backbone_width: base width of "resnet_tiny" or "wide_resnet41" (None = its default).
        backbone_blocks: blocks-per-stage override (None = the backbone's own; 4 entries for
            ResNets, 5 for Wide-ResNet).
        output_stride: 8, 16 or 32.
        aspp_rates: atrous rates of the three 3x3 ASPP branches.
        aspp_channels: channels of every ASPP branch and of its projection.
        aspp_pool_size_hw: window of the ASPP image-pooling branch in feature pixels (deeplab2
            fixes it from the training crop); None = global pooling.
        semantic_decoder_channels / semantic_head_channels / semantic_low_level_channels:
            widths of the semantic branch (low-level projections of res3, res2).
        instance_decoder_channels / instance_head_channels / instance_low_level_channels:
            widths of the instance (and next-frame) branches.
        use_depth: adds the depth head; `max_depth` is its output range in metres.
        depth_head_channels: width of the depth head.
        dropout_rate: after each ASPP projection, training only.
        batchnorm_epsilon: epsilon of every BatchNorm (deeplab2's `batchnorm_epsilon`: 1e-3 by
            default, 1e-5 in its MobileNetV3 Cityscapes recipes; docs/model_zoo.md).
        dtype: compute dtype name, "float32" or "bfloat16" (parameters stay float32).
        remat: rematerialise backbone stages in the backward pass.
    """

    num_classes: int
    backbone: str = "resnet50_beta"
    backbone_width: int | None = None
    backbone_blocks: tuple[int, ...] | None = None
    output_stride: int = 32
    aspp_rates: tuple[int, ...] = (3, 6, 9)
    aspp_channels: int = 256
    aspp_pool_size_hw: tuple[int, int] | None = None
    semantic_decoder_channels: int = 256
    semantic_head_channels: int = 256
    semantic_low_level_channels: tuple[int, int] = (64, 32)
    instance_decoder_channels: int = 128
    instance_head_channels: int = 32
    instance_low_level_channels: tuple[int, int] = (32, 16)
    use_depth: bool = False
    max_depth: float = 88.0
    depth_head_channels: int = 64
    dropout_rate: float = 0.1
    batchnorm_epsilon: float = 1e-3
    dtype: str = "float32"
    remat: bool = False

    def __post_init__(self):
        # Normalise sequences to tuples so equal configs compare (and hash) equal.
        for name in ("backbone_blocks", "aspp_rates", "aspp_pool_size_hw",
                     "semantic_low_level_channels", "instance_low_level_channels"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(v) for v in value))
        if self.num_classes < 1:
            raise ValueError(f"ModelConfig.num_classes must be positive, got {self.num_classes}")
        if len(self.semantic_low_level_channels) != 2 or len(self.instance_low_level_channels) != 2:
            raise ValueError(
                "ModelConfig.semantic_low_level_channels and instance_low_level_channels need "
                f"two widths (res3, res2), got {self.semantic_low_level_channels}, "
                f"{self.instance_low_level_channels}"
            )
        if not self.batchnorm_epsilon > 0:
            raise ValueError(
                f"ModelConfig.batchnorm_epsilon must be positive, got {self.batchnorm_epsilon}"
            )
        if self.dtype not in _DTYPES:
            raise ValueError(f"ModelConfig.dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")

    @property
    def compute_dtype(self) -> jnp.dtype:
        return _DTYPES[self.dtype]


_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _decoder_kwargs(config: ModelConfig) -> dict:
    return dict(
        aspp_channels=config.aspp_channels,
        aspp_rates=config.aspp_rates,
        aspp_pool_size_hw=config.aspp_pool_size_hw,
        dropout_rate=config.dropout_rate,
        dtype=config.compute_dtype,
    )


def _set_batchnorm_epsilon(model: nnx.Module, epsilon: float) -> None:
    # One value for the whole network, as deeplab2 builds every BatchNorm from one factory;
    # set after construction so the backbones need no extra argument.
    for _, module in nnx.iter_graph(model):
        if isinstance(module, BatchNorm):
            module.epsilon = float(epsilon)


class PanopticDeepLab(nnx.Module):
    """Panoptic-DeepLab: semantic logits, center heatmap and center offsets of one frame.

    `model(images [b, h, w, 3] float32, raw 0..255)` returns float32 predictions at `h x w`:
    `PRED_SEMANTIC_LOGITS` `[b, h, w, num_classes]`, `PRED_CENTER_HEATMAP` `[b, h, w]` (no
    sigmoid), `PRED_OFFSET_MAP` `[b, h, w, 2]` (dy, dx), and `PRED_DEPTH` `[b, h, w]` (metres) when
    `use_depth`.

    The module starts in training mode (nnx convention: BatchNorm uses batch statistics and
    updates its running averages, dropout is active); call `.eval()` for inference.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.num_classes = config.num_classes
        self.dtype = dtype = config.compute_dtype
        self.use_depth = config.use_depth
        self.max_depth = float(config.max_depth)
        self.encoder = create_backbone(
            config.backbone,
            output_stride=config.output_stride,
            width=config.backbone_width,
            blocks=config.backbone_blocks,
            dtype=dtype,
            remat=config.remat,
            rngs=rngs,
        )
        ch = self.encoder.endpoint_channels
        low = (ch["res3"], ch["res2"])
        decoder_kwargs = _decoder_kwargs(config)
        semantic_decoder_channels = config.semantic_decoder_channels
        instance_decoder_channels = config.instance_decoder_channels
        instance_head_channels = config.instance_head_channels
        self.semantic_decoder = PanopticDeepLabDecoder(
            ch["res5"],
            low,
            config.semantic_low_level_channels,
            decoder_channels=semantic_decoder_channels,
            rngs=rngs,
            **decoder_kwargs,
        )
        self.semantic_head = PredictionHead(
            semantic_decoder_channels,
            config.semantic_head_channels,
            config.num_classes,
            dtype=dtype,
            rngs=rngs,
        )
        self.instance_decoder = PanopticDeepLabDecoder(
            ch["res5"],
            low,
            config.instance_low_level_channels,
            decoder_channels=instance_decoder_channels,
            rngs=rngs,
            **decoder_kwargs,
        )
        self.center_head = PredictionHead(
            instance_decoder_channels, instance_head_channels, 1, dtype=dtype, rngs=rngs
        )
        self.offset_head = PredictionHead(
            instance_decoder_channels, instance_head_channels, 2, dtype=dtype, rngs=rngs
        )
        self.depth_head = (
            PredictionHead(
                semantic_decoder_channels, config.depth_head_channels, 1, dtype=dtype, rngs=rngs
            )
            if config.use_depth
            else None
        )
        _set_batchnorm_epsilon(self, config.batchnorm_epsilon)

    # -- helpers ---------------------------------------------------------------------------

    def _normalise(self, frames: jax.Array) -> jax.Array:
        # Padding pixels carry 127.5 and become exactly 0 (docs/architecture.md#inputs).
        return (frames.astype(jnp.float32) / 127.5 - 1.0).astype(self.dtype)

    def set_aspp_pool_size(self, pool_size_hw: tuple[int, int] | None) -> None:
        """Sets the pooling window of every ASPP (None = global), e.g. for multi-scale eval."""
        value = None if pool_size_hw is None else tuple(int(v) for v in pool_size_hw)
        for _, module in nnx.iter_graph(self):
            if isinstance(module, ASPP):
                module.pool_size_hw = value

    # -- streaming API ---------------------------------------------------------------------

    def encode(self, frames: jax.Array) -> dict[str, jax.Array]:
        """Encodes raw frames `[b, h, w, 3]` (0..255) into endpoints `res2..res5` (compute dtype)."""
        _check_images(frames, 3, "encode")
        return self.encoder(self._normalise(frames))

    def decode_frame(
        self, features: dict[str, jax.Array], output_hw: tuple[int, int]
    ) -> dict[str, jax.Array]:
        """Per-frame predictions from one frame's endpoints, resized to `output_hw` (float32).

        Returns semantic logits `[b, H, W, num_classes]`, center heatmap `[b, H, W]`, offsets
        `[b, H, W, 2]` and, with `use_depth`, depth `[b, H, W]` in metres.
        """
        lows = (features["res3"], features["res2"])
        semantic_features = self.semantic_decoder(features["res5"], lows)
        instance_features = self.instance_decoder(features["res5"], lows)
        out = {
            keys.PRED_SEMANTIC_LOGITS: resize_align_corners(
                self.semantic_head(semantic_features), output_hw
            ),
            keys.PRED_CENTER_HEATMAP: resize_align_corners(
                self.center_head(instance_features), output_hw
            )[..., 0],
            keys.PRED_OFFSET_MAP: resize_and_rescale_offsets(
                self.offset_head(instance_features), output_hw
            ),
        }
        if self.depth_head is not None:
            # The depth head runs at stride 2: x2 align-corners upsampling (129 -> 257).
            h, w = semantic_features.shape[1:3]
            up = resize_align_corners(semantic_features, (scale_size(h, 2), scale_size(w, 2)))
            depth = self.max_depth * jax.nn.sigmoid(self.depth_head(up))
            out[keys.PRED_DEPTH] = resize_align_corners(depth, output_hw)[..., 0]
        return out

    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        """`images` float32 `[b, h, w, 3]`, raw 0..255 -> predictions dict at `h x w`."""
        _check_images(images, 3, type(self).__name__)
        return self.decode_frame(self.encode(images), images.shape[1:3])


class ViPDeepLab(PanopticDeepLab):
    """ViP-DeepLab: Panoptic-DeepLab of frame t plus next-frame offsets of frame t+1.

    `model(images [b, h, w, 6])` (frame t in channels 0-2, t+1 in 3-5, raw 0..255) returns the
    `PanopticDeepLab` outputs of frame t plus `PRED_NEXT_OFFSET_MAP` `[b, h, w, 2]`: for every
    pixel of frame t+1, the (dy, dx) to its instance's centre in frame t.

    Both frames go through the shared encoder in a single call on an interleaved `[2b, ...]`
    batch whose BatchNorms keep separate statistics per frame (`groups=2`). This reproduces the
    reference's two encoder calls exactly -- each frame normalised by its own batch statistics,
    running averages updated twice per step, frame t first -- while compiling the encoder once
    and keeping the batch axis evenly sharded. `__call__` therefore equals
    `decode_frame(encode(f_t))` + `decode_next(encode(f_t), encode(f_t1))`.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        ch = self.encoder.endpoint_channels
        # Same hyper-parameters as the instance decoder, but its own weights and a 2x wider
        # ASPP input (res5 of both frames, frame t first).
        self.next_decoder = PanopticDeepLabDecoder(
            2 * ch["res5"],
            (ch["res3"], ch["res2"]),
            config.instance_low_level_channels,
            decoder_channels=config.instance_decoder_channels,
            rngs=rngs,
            **_decoder_kwargs(config),
        )
        self.next_offset_head = PredictionHead(
            config.instance_decoder_channels,
            config.instance_head_channels,
            2,
            dtype=self.dtype,
            rngs=rngs,
        )
        _set_batchnorm_epsilon(self, config.batchnorm_epsilon)

    def decode_next(
        self,
        features_t: dict[str, jax.Array],
        features_t1: dict[str, jax.Array],
        output_hw: tuple[int, int],
    ) -> jax.Array:
        """Next-frame offsets `[b, H, W, 2]` float32 on frame t+1's pixels (towards t's centres)."""
        high = jnp.concatenate([features_t["res5"], features_t1["res5"]], axis=-1)
        x = self.next_decoder(high, (features_t1["res3"], features_t1["res2"]))
        return resize_and_rescale_offsets(self.next_offset_head(x), output_hw)

    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        """`images` float32 `[b, h, w, 6]`, raw 0..255 -> predictions dict at `h x w`."""
        _check_images(images, 6, "ViPDeepLab")
        b = images.shape[0]
        x = self._normalise(images)
        # [b, h, w, 6] -> [b, 2, h, w, 3] -> [2b, h, w, 3]: sample i's frames at rows 2i, 2i+1,
        # so a batch sharded on its leading axis stays sharded without data movement.
        pair = jnp.stack([x[..., :3], x[..., 3:]], axis=1).reshape((2 * b,) + x.shape[1:3] + (3,))
        both = self.encoder(pair, groups=2)
        split = {k: v.reshape((b, 2) + v.shape[1:]) for k, v in both.items()}
        features_t = {k: v[:, 0] for k, v in split.items()}
        features_t1 = {k: v[:, 1] for k, v in split.items()}
        out = self.decode_frame(features_t, images.shape[1:3])
        out[keys.PRED_NEXT_OFFSET_MAP] = self.decode_next(
            features_t, features_t1, images.shape[1:3]
        )
        return out

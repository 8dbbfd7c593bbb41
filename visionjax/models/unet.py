"""U-Net (Ronneberger, Fischer & Brox 2015).

Contracting path of double 3×3 convolutions and 2×2 max pools, expanding
path of 2× up-convolutions, skip concatenation and double convolutions, and
a final 1×1 classifier. With the default features (64, 128, 256, 512, 1024)
that is the paper's 23 convolutional layers (18 3×3, 4 up-convs, one 1×1).

Options:
  padding='same'  (default) padded convs; the input is padded to a multiple
                  of 2**(levels-1) and the logits cropped back.
  padding='valid' the paper's unpadded convs with crop-and-copy skips. The
                  input is mirror-padded (the paper's overlap-tile strategy)
                  so the smaller valid output still covers every pixel, then
                  cropped to the input resolution.
  upsample        'learned' (2×2 up-conv as 1×1 conv + depth-to-space, see
                  layers.UpConv2x) or 'bilinear' (resize + 1×1 conv).
  dropout_rate    dropout at the bottleneck (the paper's end of the
                  contracting path), active when train=True.
  encoder         None (the paper's encoder) or a backbone name from
                  backbones.ENCODERS ('resnet34', 'vgg16_bn', ...), with
                  `encoder_kwargs` field overrides. Its features replace the
                  contracting path: features[i] is the decoder width at
                  stride 2**i, the backbone's stride-2**(len-1) map is the
                  bottleneck (features[-1] is then unused), and strides the
                  backbone lacks are filled by DoubleConvs.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from visionjax.models.backbones import SMOKE_ENCODER, build_encoder, by_stride
from visionjax.models.layers import (
  ConvNormAct,
  ModelSpec,
  UpConv2x,
  ZooModule,
  batch_norm,
  center_crop,
  check_images,
  crop_to,
  frozen,
  max_pool,
  pad_to_multiple,
)


def _valid_output_size(n: int, depth: int) -> Optional[int]:
  """Output side of an unpadded U-Net for input side n (None if invalid)."""
  for _ in range(depth):
    n -= 4
    if n <= 0 or n % 2:
      return None
    n //= 2
  n -= 4
  if n <= 0:
    return None
  for _ in range(depth):
    n = 2 * n - 4
  return n if n > 0 else None


def valid_tiling(size: int, depth: int) -> Tuple[int, int]:
  """(pad_before, pad_after) so an unpadded U-Net's output covers `size`.

  The unpadded network shrinks every side by a constant border (184 pixels
  for depth 4: 572 -> 388); output pixel k sits over input pixel k + border/2.
  Padding by border/2 in front and up to the next valid input size behind
  therefore maps output pixel k onto original pixel k.
  """
  n = 1
  while _valid_output_size(n, depth) is None:
    n += 1
  border = n - _valid_output_size(n, depth)
  n = size + border
  while _valid_output_size(n, depth) is None:
    n += 1
  return border // 2, n - size - border // 2


class DoubleConv(ZooModule):
  """Two 3×3 conv(-BN)-ReLU layers: [B, H, W, C] -> [B, H', W', features]."""
  features: int
  padding: str = "SAME"
  norm: Optional[Any] = None
  act: Callable = nn.relu

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(2):
      x = ConvNormAct(self.features, 3, padding=self.padding, norm=self.norm,
                      act=self.act, dtype=self.dtype,
                      param_dtype=self.param_dtype, name=f"conv{i + 1}")(x)
    return x


class UNet(ZooModule):
  """U-Net: images [B, H, W, C] -> logits [B, H, W, num_classes] (any H, W)."""
  num_classes: int = 2
  features: Sequence[int] = (64, 128, 256, 512, 1024)
  use_batchnorm: bool = True
  dropout_rate: float = 0.0
  upsample: str = "learned"
  padding: str = "same"
  encoder: Optional[str] = None
  encoder_kwargs: Optional[Mapping[str, Any]] = None
  act: Callable = nn.relu
  # Deep supervision (Lee et al. 2015, "Deeply-Supervised Nets"): in training
  # mode, a 1x1 classifier on the bottleneck and on every decoder level but
  # the last, returned as {'logits', 'aux_logits': (coarse..fine)}; the
  # segmentation task adds their loss (task_kwargs.aux_weight). Inference
  # outputs are unchanged: logits only.
  deep_supervision: bool = False

  def _check_fields(self) -> None:
    if self.padding not in ("same", "valid"):
      raise ValueError(
          f"UNet: padding must be 'same' or 'valid', got {self.padding!r}")
    if self.upsample not in ("learned", "bilinear"):
      raise ValueError("UNet: upsample must be 'learned' or 'bilinear', got "
                       f"{self.upsample!r}")
    if len(self.features) < 2:
      raise ValueError("UNet: features needs at least 2 levels, got "
                       f"{tuple(self.features)}")
    if self.encoder is not None and self.padding == "valid":
      raise ValueError("UNet: a pretrained-style encoder uses padded convs; "
                       "padding='valid' needs encoder=None")

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    check_images(images, "UNet")
    self._check_fields()
    depth = len(self.features) - 1
    norm = (batch_norm(train, self.axis_name, self.dtype, self.param_dtype)
            if self.use_batchnorm else None)
    conv_pad = "SAME" if self.padding == "same" else "VALID"
    block = functools.partial(DoubleConv, padding=conv_pad, norm=norm,
                              act=self.act, dtype=self.dtype,
                              param_dtype=self.param_dtype)
    x = images.astype(self.dtype)
    h, w = x.shape[1:3]
    if self.padding == "valid":
      (th, bh), (tw, bw) = valid_tiling(h, depth), valid_tiling(w, depth)
      x = jnp.pad(x, ((0, 0), (th, bh), (tw, bw), (0, 0)), mode="reflect")
    else:
      x, _ = pad_to_multiple(x, 2 ** depth)

    if self.encoder is None:
      skips = []
      for i, f in enumerate(self.features[:-1]):
        x = block(f, name=f"down{i + 1}")(x)
        skips.append(x)
        x = max_pool(x, 2)
      x = block(self.features[-1], name="bottleneck")(x)
    else:
      skips, x = self._encode(x, depth, train)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    aux = []

    for i, (f, skip) in enumerate(zip(reversed(self.features[:-1]),
                                      reversed(skips))):
      if self.deep_supervision:  # also in eval (unused there, XLA drops it): same params
        aux.append(self._aux_head(x, i))
      x = UpConv2x(f, self.upsample, dtype=self.dtype,
                   param_dtype=self.param_dtype, name=f"up{i + 1}")(x)
      skip = center_crop(skip, x.shape[1:3])  # no-op when padded.
      x = jnp.concatenate([skip, x.astype(skip.dtype)], axis=-1)
      x = block(f, name=f"up{i + 1}_conv")(x)
    x = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype,
                param_dtype=self.param_dtype, name="classifier")(x)
    logits = crop_to(x, (h, w)).astype(jnp.float32)
    if self.deep_supervision and train:
      return {"logits": logits, "aux_logits": tuple(aux)}
    return logits

  def _aux_head(self, x: jax.Array, i: int) -> jax.Array:
    """Deep-supervision logits [B, h/s, w/s, K] of one coarse level."""
    return nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, param_dtype=self.param_dtype,
                   name=f"aux_classifier{i + 1}")(x).astype(jnp.float32)

  def _encode(self, x: jax.Array, depth: int, train: bool
              ) -> Tuple[list, jax.Array]:
    """Skips at strides 1..2**(depth-1) and the stride-2**depth bottleneck."""
    enc = build_encoder(self.encoder, self.encoder_kwargs,
                        axis_name=self.axis_name, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="encoder")
    feats = by_stride(enc(x, train=train), enc.feature_strides)
    if 2 ** depth not in feats:
      raise ValueError(
          f"UNet: encoder {self.encoder!r} has strides {sorted(feats)}; a "
          f"{len(self.features)}-entry `features` needs stride {2 ** depth} "
          "for the bottleneck")
    # Strides the backbone lacks (ResNet has no stride-1 map) get a
    # DoubleConv on the image, or on a pool of the previous skip.
    skips, prev = [], x
    for i in range(depth):
      if 2 ** i in feats:
        prev = feats[2 ** i]
      else:
        norm = batch_norm(train, self.axis_name, self.dtype, self.param_dtype)
        prev = DoubleConv(self.features[i], norm=norm, act=self.act,
                          dtype=self.dtype, param_dtype=self.param_dtype,
                          name=f"stem{i + 1}")(
                              x if i == 0 else max_pool(prev, 2))
      skips.append(prev)
    return skips, feats[2 ** depth]


_SMALL = frozen(features=(8, 16, 32))


def _with_encoder(encoder: str, features: Sequence[int],
                  smoke_features: Sequence[int]) -> ModelSpec:
  return ModelSpec(
      functools.partial(UNet, encoder=encoder, features=features),
      "segmentation", input_size=(256, 256),
      smoke=frozen(features=smoke_features,
                   encoder_kwargs=SMOKE_ENCODER[encoder]))


def denoiser(num_classes: int | None = None, *, out_channels: int = 3, **kwargs) -> UNet:
  """A U-Net that outputs an image: ``out_channels`` values per pixel (the
  clean image, [0, 1] scale, for the denoising task) instead of class logits.
  ``num_classes`` (the class count of the dataset's labels, which the spine
  passes to every model) is ignored."""
  del num_classes
  return UNet(num_classes=out_channels, **kwargs)


REGISTRY: dict[str, ModelSpec] = {
    "unet": ModelSpec(functools.partial(UNet), "segmentation",
                      input_size=(256, 256), smoke=_SMALL),
    "unet_small": ModelSpec(
        functools.partial(UNet, features=(16, 32, 64, 128)), "segmentation",
        input_size=(64, 64), smoke=_SMALL),
    "unet_paper": ModelSpec(
        functools.partial(UNet, use_batchnorm=False, padding="valid",
                          dropout_rate=0.5), "segmentation",
        input_size=(388, 388), in_channels=1,
        smoke=frozen(features=(8, 16, 32))),
    "unet_resnet34": _with_encoder("resnet34", (32, 64, 64, 128, 256, 512),
                                   (4, 4, 8, 8, 16, 16)),
    "unet_vgg16_bn": _with_encoder("vgg16_bn",
                                   (64, 128, 256, 512, 512, 512),
                                   (4, 8, 8, 16, 16, 16)),
    "unet_bilinear": ModelSpec(
        functools.partial(UNet, upsample="bilinear"), "segmentation",
        input_size=(256, 256), smoke=_SMALL),
    "unet_denoise": ModelSpec(
        functools.partial(denoiser, features=(16, 32, 64)), "denoising",
        input_size=(32, 32), smoke=frozen(features=(4, 8))),
}

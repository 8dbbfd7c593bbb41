"""Named backbones for decoders and heads (U-Net, FCN, DeepLab, localizer, SSD).

Every encoder maps images [B, H, W, C] to a dict of named feature maps and
has a `feature_strides` property (name -> stride) that needs no init, so a
head can choose its inputs by stride:

    enc = build_encoder("resnet50", axis_name=None, name="encoder")
    feats = enc(images, train=train)            # {'stem': ..., 'layer4': ...}
    coarsest = max(enc.feature_strides, key=enc.feature_strides.get)

Heads hold the backbone as a name plus keyword overrides (hashable fields),
and pass their own `axis_name`/`dtype`/`param_dtype` down, so
`model.clone(axis_name='batch')` reaches the backbone's BatchNorm too.
The same encoders are registered as task 'backbone' ('<name>_backbone').
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Mapping, Optional

import flax.linen as nn

from visionjax.models import resnet, vgg
from visionjax.models.layers import ModelSpec, frozen


def _encoders() -> Dict[str, Callable[..., nn.Module]]:
  out: Dict[str, Callable[..., nn.Module]] = {}
  for name, stages in vgg.STAGES.items():
    out[name] = functools.partial(vgg.VGGEncoder, stage_sizes=stages)
    out[name + "_bn"] = functools.partial(vgg.VGGEncoder, stage_sizes=stages,
                                          use_batchnorm=True)
  for name, (stages, block) in resnet.DEPTHS.items():
    out[name] = functools.partial(resnet.ResNetEncoder, stage_sizes=stages,
                                  block=block)
  return out


ENCODERS: Mapping[str, Callable[..., nn.Module]] = frozen(**_encoders())

# Tiny widths/depths with the same code paths, for smoke tests and demos:
# `UNet(encoder="resnet34", encoder_kwargs=SMOKE_ENCODER["resnet34"])`.
SMOKE_ENCODER: Mapping[str, Mapping[str, Any]] = frozen(**{
    name: (frozen(stage_sizes=(1,) * 5, widths=(4, 8, 8, 16, 16))
           if name.startswith("vgg") else
           frozen(stage_sizes=(1,) * 4, widths=(4, 8, 8, 16), stem_width=4))
    for name in ENCODERS})


def build_encoder(encoder: str, encoder_kwargs: Optional[Mapping[str, Any]]
                  = None, **kwargs: Any) -> nn.Module:
  """Builds backbone `encoder` with field overrides from both mappings.

  Raises ValueError listing the valid names for an unknown backbone.
  """
  if encoder not in ENCODERS:
    raise ValueError(f"unknown encoder {encoder!r}; valid encoders: "
                     f"{', '.join(sorted(ENCODERS))}")
  return ENCODERS[encoder](**dict(encoder_kwargs or {}), **kwargs)


def coarsest(strides: Mapping[str, int]) -> str:
  """Name of the largest-stride feature (the last one on ties)."""
  best = max(strides.values())
  return [k for k, s in strides.items() if s == best][-1]


def by_stride(feats: Mapping[str, Any], strides: Mapping[str, int]
              ) -> Dict[int, Any]:
  """{stride: feature}, keeping the deepest feature for a repeated stride."""
  return {strides[k]: v for k, v in feats.items()}


def _backbones() -> Dict[str, ModelSpec]:
  out = {}
  for name, make in ENCODERS.items():
    out[name + "_backbone"] = ModelSpec(make, "backbone",
                                        smoke=SMOKE_ENCODER[name])
  out["vgg16_ssd_backbone"] = ModelSpec(
      functools.partial(ENCODERS["vgg16"], ssd=True), "backbone",
      input_size=(300, 300),
      smoke=frozen(**SMOKE_ENCODER["vgg16"], ssd_width=16))
  return out


REGISTRY: Dict[str, ModelSpec] = _backbones()

"""visionjax.models: the Flax Linen model zoo and its registry.

    model = visionjax.models.create("unet_small", num_classes=21)
    variables = model.init({"params": key}, images, train=False)
    logits, updates = model.apply(variables, images, train=True,
                                  rngs={"dropout": key},
                                  mutable=["batch_stats"])

Images are [B, H, W, C] floats. Classifiers return logits [B, num_classes];
segmenters logits [B, H, W, num_classes] at the input resolution;
localizers {'logits': [B, K], 'boxes': [B, 4]} (sigmoid cx, cy, w, h);
Mask R-CNN a dict of RPN, box and mask outputs (`visionjax.models.maskrcnn`);
backbones a dict of named feature maps (strides in `.feature_strides`).

The registry is one read-only mapping assembled from each model file's own
`REGISTRY` dict at import time; nothing registers itself at runtime.
"""
from __future__ import annotations

import types
from typing import Any, Mapping

import flax.linen as nn

from visionjax.models import (
  backbones,
  cnn,
  deeplab,
  efficientnet,
  fcn,
  localizer,
  maskrcnn,
  resnet,
  segnet,
  ssd,
  unet,
  vgg,
  yolo,
)
from visionjax.models.layers import ModelSpec, count_params

__all__ = ["create", "list_models", "task_of", "spec_of", "MODEL_TASKS",
           "REGISTRY", "ModelSpec", "count_params", "BACKBONE"]

# A model's `ModelSpec.task` is the name of the task it is trained with
# (`visionjax.tasks.NAMES`; the tasks layer sits above the models, so the
# names are checked there, in tests/test_models_registry.py) or BACKBONE for
# feature extractors that no task trains on their own.
BACKBONE = "backbone"


def _merge(*registries: Mapping[str, ModelSpec]) -> Mapping[str, ModelSpec]:
  merged: dict[str, ModelSpec] = {}
  for reg in registries:
    for name, spec in reg.items():
      if name in merged:
        raise ValueError(f"model name {name!r} is registered twice")
      merged[name] = spec
  return types.MappingProxyType(merged)


REGISTRY: Mapping[str, ModelSpec] = _merge(
    cnn.REGISTRY, vgg.REGISTRY, resnet.REGISTRY, efficientnet.REGISTRY,
    backbones.REGISTRY, localizer.REGISTRY, fcn.REGISTRY, unet.REGISTRY,
    segnet.REGISTRY, deeplab.REGISTRY, ssd.REGISTRY, yolo.REGISTRY, maskrcnn.REGISTRY)

MODEL_TASKS: Mapping[str, str] = types.MappingProxyType(
    {name: spec.task for name, spec in REGISTRY.items()})


def list_models(task: str | None = None) -> list[str]:
  """Sorted registered names, optionally only those of one task."""
  if task is not None and task not in MODEL_TASKS.values():
    raise ValueError(f"no model is registered for task {task!r}; tasks with models: "
                     f"{sorted(set(MODEL_TASKS.values()))}")
  return sorted(n for n, t in MODEL_TASKS.items() if task in (None, t))


def spec_of(name: str) -> ModelSpec:
  """The registry entry of `name`; ValueError listing valid names otherwise."""
  try:
    return REGISTRY[name]
  except KeyError:
    raise ValueError(f"unknown model {name!r}; valid names: "
                     f"{', '.join(list_models())}") from None


def task_of(name: str) -> str:
  """'classification' | 'segmentation' | 'localization' | 'detection' |
  'backbone'."""
  return spec_of(name).task


def create(name: str, **kwargs: Any) -> nn.Module:
  """Builds registered model `name`, overriding dataclass fields by kwargs.

  Example: `create("resnet50", num_classes=10, dtype=jnp.bfloat16)`.
  """
  return spec_of(name).factory(**kwargs)

"""visionjax.tasks: one file per problem type, and the one registry of names.

    task = visionjax.tasks.create("segmentation", num_classes=11, dice_weight=0.5)

The contract every task fulfils is `visionjax.tasks.base.Task`. Config
validation (`config.task`), the data pipeline (which annotation to read,
how to fit images), the model registry check and the loop all read
`REGISTRY`; adding a task is one file here and one line below.
"""
from __future__ import annotations

import types
from typing import Any, Mapping

from visionjax.tasks.base import Task
from visionjax.tasks.classification import ClassificationTask
from visionjax.tasks.denoising import DenoisingTask
from visionjax.tasks.detection import DetectionTask
from visionjax.tasks.instance_segmentation import InstanceSegmentationTask
from visionjax.tasks.localization import LocalizationTask
from visionjax.tasks.segmentation import SegmentationTask

REGISTRY: Mapping[str, type[Task]] = types.MappingProxyType({
    cls.name: cls for cls in (ClassificationTask, SegmentationTask, LocalizationTask,
                              DetectionTask, DenoisingTask, InstanceSegmentationTask)})
NAMES: tuple[str, ...] = tuple(REGISTRY)

__all__ = ["Task", "REGISTRY", "NAMES", "create", "ClassificationTask", "SegmentationTask",
           "LocalizationTask", "DetectionTask", "DenoisingTask", "InstanceSegmentationTask"]


def create(name: str, num_classes: int, **kwargs: Any) -> Task:
  """The task registered as ``name`` with its options (``config.task_kwargs``)."""
  if name not in REGISTRY:
    raise ValueError(f"unknown task {name!r}; expected one of {list(NAMES)}")
  try:
    return REGISTRY[name](num_classes=num_classes, **kwargs)
  except TypeError as e:
    raise ValueError(f"bad option for task {name!r} (config.task_kwargs): {e}") from None

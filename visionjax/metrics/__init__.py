"""visionjax.metrics: classification, segmentation and detection metrics.

Submodules: ``classification``, ``segmentation`` (each has a jit-safe
``confusion_matrix``; they differ in the ``ignore_index`` default), ``voc``
and ``coco`` (detection AP).
"""
from visionjax.metrics import classification, segmentation
from visionjax.metrics.classification import accuracy, top_k_accuracy, top_k_correct
from visionjax.metrics.segmentation import segmentation_scores

__all__ = ["classification", "segmentation", "accuracy", "top_k_accuracy", "top_k_correct",
           "segmentation_scores"]

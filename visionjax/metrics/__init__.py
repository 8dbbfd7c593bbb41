"""visionjax.metrics: classification, segmentation and detection metrics.

Submodules: ``classification``, ``segmentation`` (each has a jit-safe
``confusion_matrix``; they differ in the ``ignore_index`` default), ``voc``
(PASCAL VOC AP), ``coco`` (COCOeval bbox and segm protocols) and ``image_quality``
(per-image PSNR and SSIM). Device-side functions
return sums/counts that merge by addition; scores are computed at the end.
"""
from visionjax.metrics import classification, coco, image_quality, segmentation, voc
from visionjax.metrics.classification import (
                                              accuracy,
                                              precision_recall_f1,
                                              top_k_accuracy,
                                              top_k_correct,
)
from visionjax.metrics.coco import (
                                              coco_compute,
                                              coco_init,
                                              coco_merge,
                                              coco_update,
                                              coco_update_batch,
                                              coco_update_segm,
                                              coco_update_segm_batch,
                                              evaluate_coco,
)
from visionjax.metrics.segmentation import segmentation_scores
from visionjax.metrics.voc import voc_ap, voc_compute, voc_init, voc_update, voc_update_batch

__all__ = ["classification", "coco", "image_quality", "segmentation", "voc", "accuracy",
           "precision_recall_f1",
           "top_k_accuracy", "top_k_correct", "coco_compute", "coco_init", "coco_merge",
           "coco_update", "coco_update_batch", "coco_update_segm", "coco_update_segm_batch",
           "evaluate_coco", "segmentation_scores", "voc_ap",
           "voc_compute", "voc_init", "voc_update", "voc_update_batch"]

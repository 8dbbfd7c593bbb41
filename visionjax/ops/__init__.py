"""visionjax.ops: box ops, jit-safe NMS, RoIAlign and mask pasting (pooling lives in
``ops.pooling``)."""
from visionjax.ops.boxes import (
                                 FORMATS,
                                 box_area,
                                 box_convert,
                                 box_iou,
                                 box_iou_elementwise,
                                 clip_boxes,
                                 denormalize_boxes,
                                 generalized_box_iou,
                                 generalized_box_iou_elementwise,
                                 normalize_boxes,
                                 remove_small_boxes,
)
from visionjax.ops.masks import paste_masks
from visionjax.ops.nms import batched_nms, nms, soft_nms, top_k
from visionjax.ops.roi import (
                               fpn_levels,
                               infer_scales,
                               multiscale_roi_align,
                               roi_align,
                               roi_align_indexed,
)

__all__ = ["FORMATS", "box_area", "box_convert", "box_iou", "box_iou_elementwise", "clip_boxes",
           "denormalize_boxes", "generalized_box_iou", "generalized_box_iou_elementwise",
           "normalize_boxes", "remove_small_boxes", "batched_nms", "nms", "soft_nms", "top_k",
           "paste_masks", "fpn_levels", "infer_scales", "multiscale_roi_align", "roi_align",
           "roi_align_indexed"]

"""visionjax.detection: SSD-style object detection with static shapes.

  anchors         default boxes (SSD300: 8,732; SSD512: 24,564; any backbone)
  coding          encode/decode with variances
  matching        ground truth -> default boxes (best box per object, IoU >= 0.5)
  multibox        smooth-L1 + cross-entropy with 3:1 hard-negative mining
  postprocessing  score threshold, class-aware NMS, top-k, padded outputs
  grid            anchor-free grid heads (YOLO-style): cell assignment with
                  centre sampling, focal/BCE/GIoU loss, post-processing
  evaluation      padded detections -> VOC (11-point, all-point) and COCO AP
  proposals       R-CNN: FPN anchors, RPN proposals (decode, top-k per level, NMS)
  rcnn            R-CNN box-head post-processing (per-class decode, NMS), mask choice
  rcnn_targets    R-CNN training: matcher, balanced sampler, RPN / box-head / mask targets
                  and losses (torchvision's)

The SSD models live in `visionjax.models.ssd` (registry names
'ssd300_vgg16', 'ssd512_vgg16', 'ssd300_resnet18', 'ssd_lite'), the
YOLO-style ones in `visionjax.models.yolo` ('yolo_lite', 'yolo_resnet18');
both train with `visionjax.tasks.DetectionTask`.
"""
from visionjax.detection.anchors import (
                                         AnchorSpec,
                                         default_boxes,
                                         num_default_boxes,
                                         paper_specs,
                                         ssd300_default_boxes,
                                         ssd300_specs,
                                         ssd512_default_boxes,
                                         ssd512_specs,
)
from visionjax.detection.coding import SSD_VARIANCES, decode, encode
from visionjax.detection.grid import (
                                         GridLossParts,
                                         GridTargets,
                                         grid_loss,
                                         grid_postprocess,
                                         grid_targets,
)
from visionjax.detection.matching import Match, Targets, match, ssd_targets
from visionjax.detection.multibox import (
                                         LossParts,
                                         hard_negatives,
                                         image_multibox_loss,
                                         multibox_loss,
)
from visionjax.detection.postprocessing import (
                                         Detections,
                                         batch_postprocess,
                                         postprocess,
                                         select_detections,
)
from visionjax.detection.proposals import Proposals, fpn_anchors, generate_proposals

__all__ = ["AnchorSpec", "default_boxes", "num_default_boxes", "paper_specs",
           "ssd300_default_boxes", "ssd300_specs", "ssd512_default_boxes", "ssd512_specs",
           "SSD_VARIANCES", "decode", "encode", "Match", "Targets", "match", "ssd_targets",
           "LossParts", "hard_negatives", "image_multibox_loss", "multibox_loss", "Detections",
           "batch_postprocess", "postprocess", "select_detections", "GridLossParts",
           "GridTargets", "grid_loss", "grid_postprocess", "grid_targets", "Proposals",
           "fpn_anchors", "generate_proposals"]

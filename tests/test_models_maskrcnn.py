"""Mask R-CNN: parameter counts equal torchvision's (R50-FPN: the stock
``maskrcnn_resnet50_fpn``; R18-FPN: torchvision's MaskRCNN assembled from the
same parts at the same widths), and the FPN's nearest upsampling equals
PyTorch's. The forward/backward smoke run is the shared registry test."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visionjax.models import maskrcnn
from visionjax.models.layers import count_params

torchvision = pytest.importorskip("torchvision")
import torch  # noqa: E402
from torchvision.models.detection import backbone_utils, mask_rcnn  # noqa: E402
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead  # noqa: E402


def n_torch(module):
  return sum(p.numel() for p in module.parameters())


def n_ours(model):
  # Parameters do not depend on the image size; a small one keeps tracing short.
  return count_params(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3))))


def test_r50_fpn_parameter_count_equals_torchvision():
  ref = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
  assert n_ours(maskrcnn.MaskRCNN()) == n_torch(ref) == 44_454_513


def test_r18_fpn_parameter_count_equals_torchvision_assembly():
  spec = maskrcnn.REGISTRY["maskrcnn_r18_fpn"]
  ours = spec.factory()
  c, k = ours.fpn_features, ours.num_classes + 1  # ours: foreground only
  backbone = backbone_utils.BackboneWithFPN(
      torchvision.models.resnet18(norm_layer=torch.nn.BatchNorm2d),
      {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}, [64, 128, 256, 512], c)
  ref = mask_rcnn.MaskRCNN(
      backbone, box_head=TwoMLPHead(c * 7 * 7, ours.representation),
      box_predictor=FastRCNNPredictor(ours.representation, k),
      mask_head=mask_rcnn.MaskRCNNHeads(c, list(ours.mask_layers), 1),
      mask_predictor=mask_rcnn.MaskRCNNPredictor(ours.mask_layers[-1], ours.mask_layers[-1], k))
  assert n_ours(ours) == n_torch(ref)


@pytest.mark.parametrize("src,dst", [((9, 13), (17, 25)), ((4, 6), (8, 12)), ((3, 5), (7, 7))])
def test_upsample_nearest_matches_torch(src, dst):
  x = np.random.default_rng(0).normal(size=(1, *src, 2)).astype(np.float32)
  ref = torch.nn.functional.interpolate(torch.tensor(x).permute(0, 3, 1, 2), size=dst,
                                        mode="nearest").permute(0, 2, 3, 1).numpy()
  np.testing.assert_array_equal(np.asarray(maskrcnn.upsample_nearest(jnp.asarray(x), dst)), ref)

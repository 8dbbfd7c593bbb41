"""RoIAlign, multi-scale RoIAlign and mask pasting vs torchvision run on CPU.

Random boxes cover the edge cases the kernels distinguish: partly outside the
feature map (clamped and zeroed samples), tiny and zero-size boxes (the
legacy 1-cell floor, the adaptive grid of 0), huge boxes (top FPN level) and
padded rows. Values and feature gradients are compared with torch autograd.
"""
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visionjax.ops import masks as masks_lib
from visionjax.ops import roi as ra

torchvision = pytest.importorskip("torchvision")
import torch  # noqa: E402
from torchvision.models.detection.roi_heads import paste_masks_in_image  # noqa: E402


def random_boxes(rng, b, r, lo, hi, max_side):
  """[b, r, 4] pixel xyxy; the first rows tiny (< 2 px), one zero-size."""
  xy = rng.uniform(lo, hi, (b, r, 2))
  wh = np.exp(rng.uniform(np.log(0.5), np.log(max_side), (b, r, 2)))
  wh[:, :3] = rng.uniform(0, 2, (b, 3, 2))
  wh[:, 3] = 0.0
  return np.concatenate([xy, xy + wh], -1).astype(np.float32)


def nchw(x):
  return torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()


def torch_roi_align(feats, boxes, out, **kw):
  """torchvision on our layouts: feats [B,H,W,C], boxes [B,R,4] -> [B,R,PH,PW,C], and
  the feature gradient of sum(out * cot)."""
  ft = nchw(feats).requires_grad_(True)
  res = torchvision.ops.roi_align(ft, [torch.tensor(b) for b in boxes], out, **kw)
  b, r = boxes.shape[:2]
  res = res.permute(0, 2, 3, 1).reshape(b, r, *res.shape[2:], res.shape[1])
  return res, ft


@pytest.mark.parametrize("aligned,sampling_ratio", [(False, 2), (True, 1), (False, 0), (True, 0)])
def test_roi_align_values_and_gradients_match_torchvision(aligned, sampling_ratio):
  rng = np.random.default_rng(int(aligned) * 10 + sampling_ratio)
  b, h, w, c, r, out = 2, 11, 14, 3, 24, (5, 4)
  feats = rng.normal(size=(b, h, w, c)).astype(np.float32)
  # Boxes partly outside the 44x56 image (scale 1/4), tiny, zero-size, large.
  boxes = random_boxes(rng, b, r, -20, 60, 80)
  cap = 8  # adaptive grid: enough samples for the largest box (80 px / 4 / 4 bins)
  fn = jax.jit(lambda f: ra.roi_align(f, boxes, out, spatial_scale=0.25,
                                      sampling_ratio=sampling_ratio, aligned=aligned,
                                      max_sampling_ratio=cap))
  got = fn(feats)
  ref, ft = torch_roi_align(feats, boxes, out, spatial_scale=0.25,
                            sampling_ratio=sampling_ratio, aligned=aligned)
  np.testing.assert_allclose(np.asarray(got), ref.detach().numpy(), rtol=1e-5, atol=1e-5)
  cot = rng.normal(size=got.shape).astype(np.float32)
  grad = jax.grad(lambda f: jnp.sum(fn(f) * cot))(feats)
  (ref * torch.tensor(cot)).sum().backward()
  np.testing.assert_allclose(np.asarray(grad), ft.grad.permute(0, 2, 3, 1).numpy(),
                             rtol=1e-5, atol=1e-5)
  assert np.abs(ref.detach().numpy()).max() > 0.1  # not a vacuous all-zero comparison


def test_roi_align_adaptive_default_cap_is_exact_inside_the_map():
  rng = np.random.default_rng(3)
  feats = rng.normal(size=(1, 20, 16, 2)).astype(np.float32)
  xy = rng.uniform(0, 10, (1, 12, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(0.2, 6, (1, 12, 2))], -1).astype(np.float32)
  # Default cap: ceil(20 / 3), ceil(16 / 3) samples per bin and axis.
  got = jax.jit(lambda f: ra.roi_align(f, boxes, 3, sampling_ratio=-1))(feats)
  ref, _ = torch_roi_align(feats, boxes, 3, sampling_ratio=-1)
  np.testing.assert_allclose(np.asarray(got), ref.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_roi_align_padded_rows_are_zero_and_nan_free():
  rng = np.random.default_rng(4)
  feats = rng.normal(size=(1, 8, 8, 2)).astype(np.float32)
  boxes = np.array([[[1, 1, 6, 5], [np.nan, 0, np.inf, 3]]], np.float32)
  valid = np.array([[True, False]])
  f = jax.jit(lambda x: ra.roi_align(x, boxes, 2, sampling_ratio=2, valid=valid))
  out = f(feats)
  ref, _ = torch_roi_align(feats, boxes[:, :1], 2, sampling_ratio=2)
  np.testing.assert_allclose(np.asarray(out[:, :1]), ref.detach().numpy(), rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(out[:, 1]) == 0)
  grad = jax.grad(lambda x: jnp.sum(f(x)))(feats)
  assert np.all(np.isfinite(np.asarray(grad)))


def test_roi_align_bad_inputs_name_the_problem():
  feats = np.zeros((2, 4, 4, 1), np.float32)
  with pytest.raises(ValueError, match=r"boxes has shape \(2, 4\)"):
    ra.roi_align(feats, np.zeros((2, 4)), 2)
  with pytest.raises(ValueError, match=r"features\[0\] has shape"):
    ra.roi_align(feats, np.zeros((3, 1, 4)), 2)
  with pytest.raises(ValueError, match="output_size=0"):
    ra.roi_align(feats, np.zeros((2, 1, 4)), 0)
  with pytest.raises(ValueError, match="not a power of two"):
    ra.multiscale_roi_align([feats, feats[:, :2, :2]], np.zeros((2, 1, 4)), 2,
                            scales=[1.0, 0.3])


def test_multiscale_roi_align_matches_torchvision_with_gradients():
  rng = np.random.default_rng(5)
  b, c, image = 2, 3, (64, 96)
  sizes = [(16, 24), (8, 12), (4, 6), (2, 3)]
  feats = [rng.normal(size=(b, h, w, c)).astype(np.float32) for h, w in sizes]
  # Sides 0.5..1000 px: every level from k_min (clamped) to k_max (clamped).
  boxes = random_boxes(rng, b, 40, -10, 90, 1000)
  scales = ra.infer_scales(sizes, image)
  pool = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
  fts = [nchw(f).requires_grad_(True) for f in feats]
  ref = pool(OrderedDict((str(i), f) for i, f in enumerate(fts)),
             [torch.tensor(x) for x in boxes], [image] * b)
  assert pool.scales == scales
  ref = ref.permute(0, 2, 3, 1).reshape(b, 40, 7, 7, c)
  fn = jax.jit(lambda fs: ra.multiscale_roi_align(fs, boxes, 7, scales=scales, sampling_ratio=2))
  got = fn(feats)
  np.testing.assert_allclose(np.asarray(got), ref.detach().numpy(), rtol=1e-5, atol=1e-5)
  cot = rng.normal(size=got.shape).astype(np.float32)
  grads = jax.grad(lambda fs: jnp.sum(fn(fs) * cot))(feats)
  (ref * torch.tensor(cot)).sum().backward()
  for g, f in zip(grads, fts):
    np.testing.assert_allclose(np.asarray(g), f.grad.permute(0, 2, 3, 1).numpy(), rtol=1e-5,
                               atol=1e-5)
  levels = np.asarray(ra.fpn_levels(boxes.reshape(-1, 4), 2, 5))
  mapper = torchvision.ops.poolers.LevelMapper(2, 5)
  np.testing.assert_array_equal(levels, mapper([torch.tensor(boxes.reshape(-1, 4))]).numpy())
  assert set(levels.tolist()) == {0, 1, 2, 3}


def test_fpn_levels_hand_checked():
  # k = floor(4 + log2(sqrt(area) / 224) + 1e-6), clamped to [2, 5], minus 2:
  # sqrt(area) 224 -> 4; exactly 112 -> 3; 111.95 -> 2.9994 -> 2; 448 -> 5;
  # 1 px -> -0.8 -> clamped to 2.
  boxes = np.array([[0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 111.9, 112], [0, 0, 448, 448],
                    [5, 5, 6, 6]], np.float32)
  np.testing.assert_array_equal(np.asarray(ra.fpn_levels(boxes, 2, 5)), [2, 1, 0, 3, 0])


def test_paste_masks_matches_torchvision():
  rng = np.random.default_rng(6)
  n, m, h, w = 40, 14, 37, 53
  masks = rng.random((n, m, m)).astype(np.float32)
  xy = rng.uniform(-30, 60, (n, 2))
  wh = np.exp(rng.uniform(np.log(0.3), np.log(90), (n, 2)))
  wh[:4] = rng.uniform(0, 1, (4, 2))  # tiny boxes: 1-3 pixel pastes
  # torchvision's slicing needs each box to touch the image (a box wholly
  # outside wraps its negative slice bounds and raises); ours gives zeros.
  xy = np.minimum(np.maximum(xy, 2 - wh), [w - 3, h - 3])
  boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
  mt = torch.tensor(masks).requires_grad_(True)
  ref_t = paste_masks_in_image(mt[:, None], torch.tensor(boxes), (h, w), padding=1)[:, 0]
  ref = ref_t.detach().numpy()
  fn = jax.jit(lambda x: masks_lib.paste_masks(x, boxes, (h, w)))
  got = fn(masks)
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(got) > 0.5, ref > 0.5)
  assert (ref > 0).sum() > 1000
  # Gradient with respect to the masks (bilinear resize backward) vs autograd.
  cot = rng.normal(size=ref.shape).astype(np.float32)
  (ref_t * torch.tensor(cot)).sum().backward()
  grad = jax.grad(lambda x: jnp.sum(fn(x) * cot))(masks)
  np.testing.assert_allclose(np.asarray(grad), mt.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_paste_masks_outside_and_padded_are_zero():
  masks = np.ones((3, 4, 4), np.float32)
  boxes = np.array([[-50, -50, -20, -20], [100, 100, 120, 130], [2, 2, 5, 5]], np.float32)
  out = np.asarray(masks_lib.paste_masks(masks, boxes, (10, 10),
                                         valid=np.array([True, True, False])))
  assert np.all(out == 0)
  with pytest.raises(ValueError, match=r"masks has shape \(3, 4, 5\)"):
    masks_lib.paste_masks(np.ones((3, 4, 5)), boxes, (10, 10))

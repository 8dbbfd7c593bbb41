"""Box ops vs hand formulas, a scalar loop reference, and pycocotools' IoU."""
import jax
import jax.numpy as jnp
from jax_versions import enable_x64
import numpy as np
import pytest

from visionjax import ops


def rand_xyxy(rng, n, lo=0.0, hi=100.0):
  xy = rng.uniform(lo, hi, (n, 2))
  return np.concatenate([xy, xy + rng.uniform(0.5, 40, (n, 2))], -1)


def scalar_iou_giou(a, b):
  """Loop-free scalar reference written from the definitions."""
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = iw * ih
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
  return inter / union, inter / union - (hull - union) / hull


def test_convert_round_trips_and_hand_values():
  b = np.array([[10.0, 20.0, 30.0, 60.0]])                     # xyxy
  np.testing.assert_allclose(ops.box_convert(b, "xyxy", "xywh"), [[10, 20, 20, 40]])
  np.testing.assert_allclose(ops.box_convert(b, "xyxy", "cxcywh"), [[20, 40, 20, 40]])
  np.testing.assert_allclose(ops.box_convert([[20.0, 40, 20, 40]], "cxcywh", "xywh"),
                             [[10, 20, 20, 40]])
  rng = np.random.default_rng(0)
  x = rand_xyxy(rng, 20).reshape(4, 5, 4)
  for f in ops.FORMATS:
    for g in ops.FORMATS:
      there = ops.box_convert(ops.box_convert(x, "xyxy", f), f, g)
      back = ops.box_convert(there, g, "xyxy")
      np.testing.assert_allclose(back, x, rtol=1e-5, atol=1e-4)


def test_normalize_denormalize_per_image_sizes():
  b = np.array([[[64.0, 48, 128, 96]], [[10, 10, 20, 20]]])   # [B=2, N=1, 4]
  hw = np.array([[[480.0, 640]], [[100, 200]]])                 # (h, w) per image
  n = ops.normalize_boxes(b, hw)
  np.testing.assert_allclose(n, [[[0.1, 0.1, 0.2, 0.2]], [[0.05, 0.1, 0.1, 0.2]]], rtol=1e-6)
  np.testing.assert_allclose(ops.denormalize_boxes(n, hw), b, rtol=1e-6)
  # Normalized cxcywh from normalized xyxy is the same conversion.
  np.testing.assert_allclose(ops.box_convert(n, "xyxy", "cxcywh")[0, 0], [0.15, 0.15, 0.1, 0.1],
                             rtol=1e-6)


def test_area_clip_small_boxes():
  b = np.array([[0.0, 0, 10, 5], [5, 5, 4, 9], [-5, -5, 700, 20]])
  np.testing.assert_allclose(ops.box_area(b), [50, 0, 705 * 25])  # degenerate -> 0
  np.testing.assert_allclose(ops.clip_boxes(b, (480, 640)), [[0, 0, 10, 5], [5, 5, 4, 9],
                                                             [0, 0, 640, 20]])
  np.testing.assert_array_equal(ops.remove_small_boxes(b, 5.0), [True, False, True])
  np.testing.assert_array_equal(ops.remove_small_boxes(b, 6.0), [False, False, True])
  np.testing.assert_allclose(ops.box_area([[1.0, 2, 3, 4]], fmt="xywh"), [12])


def test_pairwise_iou_giou_against_scalar_reference():
  rng = np.random.default_rng(1)
  a, b = rand_xyxy(rng, 7), rand_xyxy(rng, 9)
  iou = np.asarray(jax.jit(ops.box_iou)(a, b))
  giou = np.asarray(jax.jit(ops.generalized_box_iou)(a, b))
  for i in range(7):
    for j in range(9):
      ri, rg = scalar_iou_giou(a[i], b[j])
      assert iou[i, j] == pytest.approx(ri, abs=1e-6)
      assert giou[i, j] == pytest.approx(rg, abs=1e-6)
  assert np.any(iou > 0) and np.any(iou == 0)
  np.testing.assert_allclose(ops.box_iou_elementwise(a[:7], b[:7]), np.diag(iou[:, :7]), atol=1e-6)
  np.testing.assert_allclose(ops.generalized_box_iou_elementwise(a[:7], b[:7]),
                             np.diag(giou[:, :7]), atol=1e-6)
  # Batched leading axes and vmap agree.
  aa, bb = np.stack([a, a + 3]), np.stack([b, b])
  np.testing.assert_allclose(ops.box_iou(aa, bb), jax.vmap(ops.box_iou)(aa, bb), atol=1e-6)


def test_iou_equals_pycocotools():
  mask = pytest.importorskip("pycocotools.mask")
  rng = np.random.default_rng(2)
  a, b = rand_xyxy(rng, 12), rand_xyxy(rng, 10)
  to_xywh = lambda x: np.concatenate([x[:, :2], x[:, 2:] - x[:, :2]], 1)
  ref = mask.iou(to_xywh(a), to_xywh(b), np.zeros(10, np.uint8))
  with enable_x64(True):
    ours = np.asarray(ops.box_iou(to_xywh(a), to_xywh(b), fmt="xywh"))
  np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_empty_and_degenerate_boxes_are_finite():
  z = np.zeros((2, 4))
  assert np.all(np.asarray(ops.box_iou(z, z)) == 0)
  assert np.all(np.isfinite(np.asarray(ops.generalized_box_iou(z, z))))
  g = jax.grad(lambda b: ops.generalized_box_iou_elementwise(b, jnp.zeros(4)))(jnp.zeros(4))
  assert np.all(np.isfinite(g))


def test_bad_shapes_and_formats():
  with pytest.raises(ValueError, match=r"boxes has shape \(3, 5\); expected \[\.\.\., 4\]"):
    ops.box_area(np.zeros((3, 5)))
  with pytest.raises(ValueError, match="in_fmt='xyz'"):
    ops.box_convert(np.zeros((3, 4)), "xyz", "xyxy")
  with pytest.raises(ValueError, match="expected \\[\\.\\.\\., N, 4\\]"):
    ops.box_iou(np.zeros(4), np.zeros((2, 4)))
  with pytest.raises(ValueError, match="image_size has shape"):
    ops.normalize_boxes(np.zeros((3, 4)), (1, 2, 3))

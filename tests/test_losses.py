"""Losses vs independent NumPy formulas (float64), hand-computed cases, jit/vmap,
and gradients with jax.test_util.check_grads (in float64)."""
import jax
import jax.numpy as jnp
from jax.test_util import check_grads as _check_grads
from jax_versions import enable_x64
import numpy as np
import pytest

from visionjax import losses as L

RTOL = 2e-5


def check_grads(f, args, order, modes=("rev",)):
  # jit first: check_grads evaluates f many times, op-by-op dispatch is slow.
  _check_grads(jax.jit(f), args, order=order, modes=modes)


@pytest.fixture
def x64():
  with enable_x64(True):
    yield


def np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_sigmoid(z):
  return 1 / (1 + np.exp(-z))


def reduce_np(per, valid, reduction):
  per = np.where(valid, per, 0.0)
  if reduction == "none":
    return per
  if reduction == "sum":
    return per.sum()
  if reduction == "sum_and_count":
    return per.sum(), valid.sum()
  return per.sum() / max(valid.sum(), 1)


# --------------------------------------------------------------------------- CE

@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "sum_and_count"])
def test_softmax_cross_entropy_ignore_smoothing_weights(reduction):
  rng = np.random.default_rng(0)
  z = rng.normal(size=(3, 5, 4)) * 3
  y = rng.integers(0, 4, (3, 5))
  y[0, :2] = 255
  where = rng.random((3, 5)) < 0.8
  w = np.array([1.0, 2.0, 0.5, 3.0])
  eps = 0.1
  out = jax.jit(lambda z, y: L.softmax_cross_entropy(
      z, y, ignore_index=255, label_smoothing=eps, weights=w, reduction=reduction,
      where=where))(z, y)
  ls = np_log_softmax(z)
  valid = (y != 255) & where
  ys = np.where(valid, y, 0)
  q = np.full(z.shape, eps / 4) + (1 - eps) * np.eye(4)[ys]
  per = -(q * ls).sum(-1) * w[ys]
  ref = reduce_np(per, valid, reduction)
  if reduction == "sum_and_count":
    np.testing.assert_allclose(out[0], ref[0], rtol=RTOL)
    assert float(out[1]) == ref[1]
  else:
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=1e-6)


def test_softmax_cross_entropy_hand_cases():
  assert float(L.softmax_cross_entropy(np.zeros((1, 2)), np.array([0]))) == pytest.approx(
      np.log(2), rel=1e-6)
  # logits (ln 3, 0): p = (3/4, 1/4); label 1 -> -ln(1/4) = ln 4.
  z = np.array([[np.log(3.0), 0.0]])
  assert float(L.softmax_cross_entropy(z, np.array([1]))) == pytest.approx(np.log(4), rel=1e-6)
  # smoothing 0.5 over 2 classes: q = (3/4, 1/4) for label 0 -> -(3/4 ln 3/4 + 1/4 ln 1/4).
  ref = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
  assert float(L.softmax_cross_entropy(z, np.array([0]), label_smoothing=0.5)) == pytest.approx(
      ref, rel=1e-6)
  # all elements ignored: mean is 0, count 0
  s, n = L.softmax_cross_entropy(z, np.array([255]), ignore_index=255, reduction="sum_and_count")
  assert float(s) == 0 and float(n) == 0
  assert float(L.softmax_cross_entropy(z, np.array([255]), ignore_index=255)) == 0


def test_softmax_cross_entropy_traced_smoothing_and_vmap():
  rng = np.random.default_rng(1)
  z = rng.normal(size=(6, 4, 3)).astype(np.float32)
  y = rng.integers(0, 3, (6, 4))
  f = jax.jit(lambda z, y, e: L.softmax_cross_entropy(z, y, label_smoothing=e))
  per_example = jax.vmap(lambda z, y: L.softmax_cross_entropy(z, y, label_smoothing=0.2))(z, y)
  np.testing.assert_allclose(per_example.mean(), f(z, y, 0.2), rtol=RTOL)


def test_softmax_cross_entropy_grads(x64):
  rng = np.random.default_rng(2)
  z = rng.normal(size=(4, 5))
  y = np.array([0, 3, 255, 1])
  f = lambda z: L.softmax_cross_entropy(z, y, ignore_index=255, label_smoothing=0.1,
                                        weights=np.arange(1.0, 6.0))
  check_grads(f, (z,), order=1, modes=("rev",))
  g = jax.grad(f)(z)
  assert np.all(g[2] == 0)                      # ignored row gets no gradient


# ------------------------------------------------------------------ sigmoid / focal

def test_sigmoid_bce_and_focal_against_numpy():
  rng = np.random.default_rng(3)
  z = rng.normal(size=(4, 6)) * 3
  t = rng.integers(0, 2, (4, 6)).astype(float)
  t[0, 0] = 255                                  # ignored pixel of a binary mask
  w = rng.uniform(0.5, 2, 6)
  valid = t != 255
  tt = np.where(valid, t, 0)
  p = np_sigmoid(z)
  bce = -(tt * np.log(p) + (1 - tt) * np.log(1 - p))
  out = L.sigmoid_binary_cross_entropy(z, t, ignore_index=255, weights=w)
  np.testing.assert_allclose(out, (bce * w)[valid].sum() / valid.sum(), rtol=RTOL)
  for alpha, gamma in [(0.25, 2.0), (None, 0.5), (0.7, 0.0)]:
    pt = p * tt + (1 - p) * (1 - tt)
    at = 1.0 if alpha is None else alpha * tt + (1 - alpha) * (1 - tt)
    fl = -at * (1 - pt) ** gamma * np.log(pt)
    out = L.sigmoid_focal_loss(z, t, alpha=alpha, gamma=gamma, ignore_index=255, reduction="sum")
    np.testing.assert_allclose(out, fl[valid].sum(), rtol=RTOL)
  # gamma = 0, alpha = None: focal == BCE
  np.testing.assert_allclose(L.sigmoid_focal_loss(z, tt, alpha=None, gamma=0.0),
                             L.sigmoid_binary_cross_entropy(z, tt), rtol=1e-6)


def test_softmax_focal_against_numpy_and_reduces_to_ce():
  rng = np.random.default_rng(4)
  z = rng.normal(size=(10, 5)) * 2
  y = rng.integers(0, 5, 10)
  y[3] = -1
  alpha = rng.uniform(0.2, 1, 5)
  p = np.exp(np_log_softmax(z))
  ys = np.where(y >= 0, y, 0)
  py = p[np.arange(10), ys]
  fl = -alpha[ys] * (1 - py) ** 1.5 * np.log(py)
  valid = y != -1
  out = L.softmax_focal_loss(z, y, alpha=alpha, gamma=1.5, ignore_index=-1)
  np.testing.assert_allclose(out, fl[valid].mean(), rtol=RTOL)
  np.testing.assert_allclose(L.softmax_focal_loss(z, ys, gamma=0.0),
                             L.softmax_cross_entropy(z, ys), rtol=1e-6)


def test_focal_grads_finite_when_saturated(x64):
  z = np.array([[30.0, -30.0, 0.0], [0.1, 0.2, 0.3]])
  y = np.array([0, 2])
  g = jax.grad(lambda z: L.softmax_focal_loss(z, y, gamma=0.5))(z)
  assert np.all(np.isfinite(g))
  check_grads(lambda z: L.softmax_focal_loss(z, y, gamma=2.0, alpha=0.25), (z,), order=1,
              modes=("rev",))
  zb = np.array([[40.0, -3.0], [0.5, -0.2]])
  tb = np.array([[1.0, 0.0], [1.0, 1.0]])
  check_grads(lambda z: L.sigmoid_focal_loss(z, tb), (zb,), order=1, modes=("rev",))
  check_grads(lambda z: L.sigmoid_binary_cross_entropy(z, tb), (zb,), order=2, modes=("rev",))


# ---------------------------------------------------------------------- overlap

def np_overlap(kind, p, t, valid, s=0.0, a=0.5, b=0.5, per_sample=False):
  p, t = p * valid, t * valid
  axes = tuple(range(1 if per_sample else 0, p.ndim - 1))
  i, ps, ts = (p * t).sum(axes), p.sum(axes), t.sum(axes)
  if kind == "dice":
    return 1 - (2 * i + s) / (ps + ts + s)
  if kind == "jaccard":
    return 1 - (i + s) / (ps + ts - i + s)
  return 1 - (i + s) / (i + a * (ps - i) + b * (ts - i) + s)


@pytest.mark.parametrize("kind,fn", [("dice", L.soft_dice_loss), ("jaccard", L.soft_jaccard_loss),
                                     ("tversky", L.tversky_loss)])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_overlap_losses_against_numpy(kind, fn, mode):
  rng = np.random.default_rng(5)
  kw = dict(alpha=0.3, beta=0.7) if kind == "tversky" else {}
  if mode == "multiclass":
    z = rng.normal(size=(2, 6, 5, 4)) * 2
    y = rng.integers(0, 4, (2, 6, 5))
    y[0, 0] = 255
    p = np.exp(np_log_softmax(z))
    valid = (y != 255)[..., None]
    t = np.eye(4)[np.where(y != 255, y, 0)]
  else:
    shape = (2, 6, 5) if mode == "binary" else (2, 6, 5, 3)
    z = rng.normal(size=shape) * 2
    y = rng.integers(0, 2, shape).astype(float)
    y.flat[0] = 255
    p, valid, t = np_sigmoid(z), y != 255, np.where(y != 255, y, 0)
    if mode == "binary":
      p, valid, t = p[..., None], valid[..., None], t[..., None]
  a, b = (kw["alpha"], kw["beta"]) if kw else (0.5, 0.5)
  for per_sample in (False, True):
    ref = np_overlap(kind, p, t, valid, s=1.0, a=a, b=b, per_sample=per_sample)
    out = jax.jit(lambda z, y: fn(z, y, mode=mode, smooth=1.0, ignore_index=255,
                                  per_sample=per_sample, reduction="none", **kw))(z, y)  # noqa: B023
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=1e-6)
  mean = fn(z, y, mode=mode, smooth=1.0, ignore_index=255, **kw)
  np.testing.assert_allclose(mean, np_overlap(kind, p, t, valid, 1.0, a, b).mean(), rtol=RTOL)


def test_overlap_hand_cases_and_identities():
  # Perfect, confident binary prediction: Dice and Jaccard losses ~ 0.
  y = np.array([[1, 0], [0, 1]])
  z = np.where(y == 1, 30.0, -30.0)
  assert float(L.soft_dice_loss(z, y, mode="binary")) == pytest.approx(0, abs=1e-6)
  assert float(L.soft_jaccard_loss(z, y, mode="binary")) == pytest.approx(0, abs=1e-6)
  # p = 1/2 everywhere on 4 pixels, 2 positive: I = 1, P = 2, T = 2.
  z0 = np.zeros((2, 2))
  assert float(L.soft_dice_loss(z0, y, mode="binary")) == pytest.approx(1 - 2 / 4)
  assert float(L.soft_jaccard_loss(z0, y, mode="binary")) == pytest.approx(1 - 1 / 3)
  # Tversky alpha = beta = 1/2 is Dice; alpha = beta = 1 is Jaccard (smooth 0).
  rng = np.random.default_rng(6)
  zz, yy = rng.normal(size=(3, 4, 4, 5)), rng.integers(0, 5, (3, 4, 4))
  np.testing.assert_allclose(L.tversky_loss(zz, yy), L.soft_dice_loss(zz, yy), rtol=1e-6)
  np.testing.assert_allclose(L.tversky_loss(zz, yy, alpha=1.0, beta=1.0),
                             L.soft_jaccard_loss(zz, yy), rtol=1e-6)
  # Focal Tversky: per-class (1 - T)^gamma.
  per = L.tversky_loss(zz, yy, reduction="none")
  np.testing.assert_allclose(L.tversky_loss(zz, yy, gamma=0.75), np.mean(per ** 0.75), rtol=1e-5)


def test_overlap_skip_empty_where_and_weights():
  rng = np.random.default_rng(7)
  z = rng.normal(size=(2, 4, 4, 3))
  y = rng.integers(0, 2, (2, 4, 4))               # class 2 never present
  per = L.soft_dice_loss(z, y, reduction="none")
  assert float(L.soft_dice_loss(z, y, skip_empty=True)) == pytest.approx(
      float(per[:2].mean()), rel=1e-6)
  w = np.array([1.0, 2.0, 3.0])
  assert float(L.soft_dice_loss(z, y, weights=w, reduction="sum")) == pytest.approx(
      float((per * w).sum()), rel=1e-6)
  # where=[1, 0] on the batch equals evaluating the first example alone.
  np.testing.assert_allclose(L.soft_dice_loss(z, y, where=np.array([1, 0]), reduction="none"),
                             L.soft_dice_loss(z[:1], y[:1], reduction="none"), rtol=1e-6)


def test_overlap_grads(x64):
  rng = np.random.default_rng(8)
  z = rng.normal(size=(2, 3, 3, 4))
  y = rng.integers(0, 4, (2, 3, 3))
  for fn in (L.soft_dice_loss, L.soft_jaccard_loss, L.tversky_loss):
    check_grads(lambda z: fn(z, y, smooth=1.0), (z,), order=1, modes=("rev",))  # noqa: B023
  zb = rng.normal(size=(2, 3, 3, 2))
  yb = rng.integers(0, 2, (2, 3, 3, 2))
  check_grads(lambda z: L.soft_dice_loss(z, yb, mode="multilabel"), (zb,), order=1,
              modes=("rev",))


def test_dice_jit_with_probability_like_inputs():
  # optax.dice_loss(apply_softmax=False) raises on values under jit; ours
  # never inspects values, so any logits trace.
  f = jax.jit(lambda z, y: L.soft_dice_loss(z, y, mode="multilabel"))
  assert np.isfinite(float(f(jnp.full((2, 4, 3), 0.3), jnp.ones((2, 4, 3)))))


# ------------------------------------------------------------------------ boxes

def np_giou(a, b):
  ix = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
  iy = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
  inter = ix * iy
  area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
  union = area(a) + area(b) - inter
  cx = np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0])
  cy = np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])
  c = cx * cy
  return inter / union - (c - union) / c


def random_boxes(rng, n):
  xy = rng.uniform(0, 50, (n, 2))
  return np.concatenate([xy, xy + rng.uniform(1, 30, (n, 2))], -1)


def test_smooth_l1_and_huber_against_numpy():
  rng = np.random.default_rng(9)
  p, t = random_boxes(rng, 8), random_boxes(rng, 8)
  p[0] = t[0] + 0.3                              # quadratic region too
  where = np.array([1, 1, 0, 1, 1, 1, 0, 1], bool)
  for beta in (1.0, 0.5, 0.0):
    x = np.abs(p - t)
    sl1 = np.where(x < beta, 0.5 * x ** 2 / beta if beta else 0, x - 0.5 * beta).sum(-1)
    np.testing.assert_allclose(L.smooth_l1_loss(p, t, beta=beta, where=where),
                               sl1[where].mean(), rtol=RTOL)
  x = np.abs(p - t)
  hub = np.where(x <= 2.0, 0.5 * x ** 2, 2.0 * (x - 1.0)).sum(-1)
  np.testing.assert_allclose(L.huber_loss(p, t, delta=2.0, reduction="none"), hub, rtol=RTOL)
  # Hand case: error 0.5 and 2 with beta 1 -> 0.125 + 1.5.
  assert float(L.smooth_l1_loss(np.array([[0.5, 2, 0, 0]]), np.zeros((1, 4)))) == pytest.approx(
      1.625)


def test_giou_loss_against_numpy_and_hand_case():
  rng = np.random.default_rng(10)
  p, t = random_boxes(rng, 16), random_boxes(rng, 16)
  np.testing.assert_allclose(L.giou_loss(p, t, reduction="none"), 1 - np_giou(p, t), rtol=RTOL)
  # Disjoint unit boxes one apart: IoU 0, C = 3, U = 2 -> GIoU = -1/3 -> loss 4/3.
  a, b = np.array([[0.0, 0, 1, 1]]), np.array([[2.0, 0, 3, 1]])
  assert float(L.giou_loss(a, b)) == pytest.approx(4 / 3)
  assert float(L.giou_loss(a, a)) == pytest.approx(0.0)
  xywh = np.concatenate([p[:, :2], p[:, 2:] - p[:, :2]], -1)
  txywh = np.concatenate([t[:, :2], t[:, 2:] - t[:, :2]], -1)
  np.testing.assert_allclose(L.giou_loss(xywh, txywh, fmt="xywh"), L.giou_loss(p, t), rtol=1e-5)


def test_box_loss_grads(x64):
  rng = np.random.default_rng(11)
  p, t = random_boxes(rng, 5), random_boxes(rng, 5)
  check_grads(lambda p: L.giou_loss(p, t), (p,), order=1, modes=("rev",))
  check_grads(lambda p: L.smooth_l1_loss(p, t, beta=100.0), (p,), order=2, modes=("rev",))
  check_grads(lambda p: L.huber_loss(p, t, delta=0.5), (p,), order=1, modes=("rev",))


def test_classification_localization_loss():
  rng = np.random.default_rng(12)
  z = rng.normal(size=(6, 4))
  y = np.array([0, 1, 2, 0, 3, 255])             # class 0 = background, 255 ignored
  bp, bt = random_boxes(rng, 6), random_boxes(rng, 6)
  lam = 2.0
  total, parts = L.classification_localization_loss(
      z, bp, y, bt, lam=lam, background_class=0, ignore_index=255, return_parts=True)
  ys = np.where(y == 255, 0, y)
  ce = -np_log_softmax(z)[np.arange(6), ys]
  x = np.abs(bp - bt)
  loc = np.where(x < 1, 0.5 * x ** 2, x - 0.5).sum(-1)
  valid = y != 255
  fg = valid & (y != 0)
  ref = (ce[valid].sum() + lam * loc[fg].sum()) / valid.sum()
  np.testing.assert_allclose(total, ref, rtol=RTOL)
  np.testing.assert_allclose(parts["loc"], loc[fg].sum() / valid.sum(), rtol=RTOL)
  ys2 = np.array([1, 2, 3, 1, 2, 3])
  g = L.classification_localization_loss(z, bp, ys2, bt, loc_loss="giou", lam=0.5)
  ce2 = -np_log_softmax(z)[np.arange(6), ys2]
  np.testing.assert_allclose(g, (ce2 + 0.5 * (1 - np_giou(bp, bt))).mean(), rtol=RTOL)


def test_classification_localization_grads(x64):
  rng = np.random.default_rng(13)
  z, bp, bt = rng.normal(size=(4, 3)), random_boxes(rng, 4), random_boxes(rng, 4)
  y = np.array([0, 1, 2, 1])
  check_grads(lambda z, bp: L.classification_localization_loss(
      z, bp, y, bt, loc_loss="giou", background_class=0), (z, bp), order=1, modes=("rev",))


# ----------------------------------------------------------------------- errors

def test_errors_name_the_bad_value():
  with pytest.raises(ValueError, match=r"labels has shape \(3,\); expected \(4,\)"):
    L.softmax_cross_entropy(np.zeros((4, 5)), np.zeros(3, int))
  with pytest.raises(TypeError, match="labels has dtype float"):
    L.softmax_cross_entropy(np.zeros((4, 5)), np.zeros(4))
  with pytest.raises(ValueError, match="reduction='avg'"):
    L.softmax_cross_entropy(np.zeros((4, 5)), np.zeros(4, int), reduction="avg")
  with pytest.raises(ValueError, match=r"weights has shape \(3,\); expected \(5,\)"):
    L.softmax_cross_entropy(np.zeros((4, 5)), np.zeros(4, int), weights=np.ones(3))
  with pytest.raises(ValueError, match="mode='dense'"):
    L.soft_dice_loss(np.zeros((2, 3)), np.zeros(2, int), mode="dense")
  with pytest.raises(ValueError, match=r"targets has shape \(2, 4\); expected"):
    L.giou_loss(np.zeros((3, 4)), np.zeros((2, 4)))
  with pytest.raises(ValueError, match=r"preds has shape \(3, 5\); expected \[\.\.\., 4\]"):
    L.smooth_l1_loss(np.zeros((3, 5)), np.zeros((3, 5)))

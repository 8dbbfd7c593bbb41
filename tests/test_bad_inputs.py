"""Bad inputs are refused where they can be checked, and documented where not.

* Checked mode (`visionjax.losses.checked`, i.e. checkify): out-of-range class
  ids / targets and non-finite boxes raise an error naming the function, the
  element and its value; masked/ignored elements are not checked.
* Unchecked (ordinary jit): valid inputs give the reference numbers, and the
  checks compile to nothing (same optimized HLO as with them patched out).
* NMS drops NaN / inverted / zero-area boxes and refuses bad thresholds.
* Models refuse integer images, a wrong channel count and num_classes < 1.
"""
import functools
import re
import sys

import jax
from jax.experimental import checkify
import jax.numpy as jnp
from jax_versions import enable_x64
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from visionjax import losses as L
from visionjax import models
from visionjax.detection import postprocessing
from visionjax.metrics import classification as mc
from visionjax.metrics import segmentation as ms
from visionjax.ops import boxes as ob

# `visionjax.ops.nms` the attribute is the function; the module is needed here.
nms_mod = sys.modules["visionjax.ops.nms"]

RNG = np.random.default_rng(0)
LOGITS = jnp.asarray(RNG.normal(size=(2, 3, 4)), jnp.float32)
LABELS = jnp.asarray([[0, 1, 2], [3, 0, 1]], jnp.int32)
BOXES = jnp.asarray([[0, 0, 2, 2], [1, 1, 3, 4]], jnp.float32)
NAN_BOXES = BOXES.at[1, 2].set(jnp.nan)


def run_checked(fn, *args, **options):
  """jit(checkify(fn)) then throw: the full checked-mode round trip."""
  err, out = jax.jit(L.checked(fn, **options))(*args)
  err.throw()
  return out


# (id, fn, args, options, message regex)
BAD_CASES = [
    ("ce_minus_one", L.softmax_cross_entropy, (LOGITS, LABELS.at[1, 1].set(-1)), {},
     r"softmax_cross_entropy: labels must be class ids in \[0, 4\); got labels\[1, 1\] = -1"),
    ("ce_too_big", L.softmax_cross_entropy, (LOGITS, LABELS.at[0, 2].set(4)), {"ignore_index": 255},
     r"softmax_cross_entropy: labels must be class ids in \[0, 4\) or ignore_index=255; "
     r"got labels\[0, 2\] = 4"),
    ("softmax_focal", L.softmax_focal_loss, (LOGITS, LABELS.at[0, 0].set(-1)), {},
     r"softmax_focal_loss: labels .* got labels\[0, 0\] = -1"),
    ("sigmoid_focal", L.sigmoid_focal_loss, (LOGITS[..., 0], jnp.asarray([[0, 1, 2], [1, 0, 0]])),
     {}, r"sigmoid_focal_loss: labels must be targets in \[0, 1\]; got labels\[0, 2\] = 2"),
    ("bce", L.sigmoid_binary_cross_entropy, (LOGITS, jnp.full((2, 3, 4), -1.0)), {},
     r"sigmoid_binary_cross_entropy: labels must be targets in \[0, 1\]; got labels\[0, 0, 0\]"),
    ("dice", L.soft_dice_loss, (LOGITS, LABELS.at[1, 2].set(7)), {"ignore_index": 255},
     r"soft_dice_loss: labels must be class ids in \[0, 4\) or ignore_index=255; "
     r"got labels\[1, 2\] = 7"),
    ("jaccard", L.soft_jaccard_loss, (LOGITS, LABELS.at[1, 2].set(-3)), {},
     r"soft_jaccard_loss: .* got labels\[1, 2\] = -3"),
    ("tversky_binary", L.tversky_loss, (LOGITS[..., 0], jnp.asarray([[0, 1, 0], [1, 3, 0]])),
     {"mode": "binary"},
     r"tversky_loss: labels must be targets in \[0, 1\]; got labels\[1, 1\] = 3"),
    ("accuracy_both_minus_one", mc.accuracy, (jnp.asarray([1, -1]), jnp.asarray([1, -1])), {},
     r"accuracy: labels must be class ids >= 0; got labels\[1\] = -1"),
    ("accuracy_preds", mc.accuracy, (jnp.asarray([1, 5]), jnp.asarray([1, 2])), {"num_classes": 3},
     r"accuracy: preds must be class ids in \[0, 3\); got preds\[1\] = 5"),
    ("accuracy_logits", mc.accuracy, (LOGITS, LABELS.at[0, 1].set(4)), {},
     r"accuracy: labels must be class ids in \[0, 4\); got labels\[0, 1\] = 4"),
    ("top_k", mc.top_k_accuracy, (LOGITS, LABELS.at[0, 1].set(-2)), {"k": 2},
     r"top_k_accuracy: labels .* got labels\[0, 1\] = -2"),
    ("confusion_preds", mc.confusion_matrix, (LABELS, LABELS.at[1, 0].set(4)), {"num_classes": 4},
     r"confusion_matrix: preds must be class ids in \[0, 4\); got preds\[1, 0\] = 4"),
    ("seg_confusion_labels", ms.confusion_matrix, (LABELS.at[0, 0].set(9), LABELS),
     {"num_classes": 4}, r"segmentation.confusion_matrix: labels must be class ids in \[0, 4\) "
     r"or ignore_index=255; got labels\[0, 0\] = 9"),
    ("update_state", functools.partial(ms.update_state, np.zeros((4, 4), np.int32)),
     (LABELS, LABELS.at[0, 1].set(-1)), {}, r"update_state: preds .* got preds\[0, 1\] = -1"),
    ("box_iou", ob.box_iou, (BOXES, NAN_BOXES), {},
     r"box_iou: boxes2 must have finite coordinates; "
     r"got boxes2\[1, :\] = \[ *1\. +1\. +nan +4\.\]"),
    ("giou_pairwise", ob.generalized_box_iou, (NAN_BOXES, BOXES), {},
     r"generalized_box_iou: boxes1 .* got boxes1\[1, :\]"),
    ("iou_elementwise", ob.box_iou_elementwise, (BOXES.at[0, 0].set(jnp.inf), BOXES), {},
     r"box_iou_elementwise: boxes1 .* got boxes1\[0, :\] = \[ *inf"),
    ("giou_loss", L.giou_loss, (BOXES, NAN_BOXES), {},
     r"giou_loss: targets must have finite coordinates; got targets\[1, :\]"),
    ("smooth_l1", L.smooth_l1_loss, (NAN_BOXES, BOXES), {},
     r"smooth_l1_loss: preds must have finite coordinates; got preds\[1, :\]"),
    ("huber", L.huber_loss, (BOXES, NAN_BOXES), {}, r"huber_loss: targets .* targets\[1, :\]"),
    ("cls_loc_labels", L.classification_localization_loss,
     (LOGITS[0, :2], BOXES, jnp.asarray([0, 4]), BOXES), {},
     r"classification_localization_loss: labels .* got labels\[1\] = 4"),
    ("cls_loc_boxes", L.classification_localization_loss,
     (LOGITS[0, :2], NAN_BOXES, jnp.asarray([0, 3]), BOXES), {"background_class": 0},
     r"classification_localization_loss: preds .* got preds\[1, :\]"),
    ("nms_traced_threshold", lambda b, s, t: nms_mod.nms(b, s, t),
     (BOXES, jnp.asarray([0.9, 0.8]), jnp.float32(jnp.nan)), {},
     r"nms: iou_threshold must be in \[0.0, 1.0\]; got nan"),
]


@pytest.mark.parametrize("fn,args,options,pattern", [c[1:] for c in BAD_CASES],
                         ids=[c[0] for c in BAD_CASES])
def test_checked_mode_names_function_and_bad_value(fn, args, options, pattern):
  with pytest.raises(checkify.JaxRuntimeError, match=pattern) as info:
    run_checked(fn, *args, **options)
  assert isinstance(info.value, ValueError)


def _np_softmax_ce(z, y):
  z = np.asarray(z, np.float64)
  z = z - z.max(-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return -np.take_along_axis(logp, np.asarray(y)[..., None], -1)[..., 0]


def test_checked_mode_skips_ignored_and_masked_elements():
  labels = LABELS.at[0, 0].set(255).at[1].set(-7)  # row 1 masked by `where`
  where = jnp.asarray([True, False])
  ce = functools.partial(L.softmax_cross_entropy, ignore_index=255)
  out = run_checked(lambda z, y, w: ce(z, y, where=w), LOGITS, labels, where)
  np.testing.assert_allclose(out, _np_softmax_ce(LOGITS[0, 1:], LABELS[0, 1:]).mean(), rtol=2e-5)
  dice = run_checked(lambda z, y, w: L.soft_dice_loss(z, y, ignore_index=255, where=w),
                     LOGITS, labels, where)
  assert np.isfinite(float(dice))
  # Masked examples may hold any label or prediction; 255 is the ignore value.
  acc = run_checked(lambda p, y, m: mc.accuracy(p, y, mask=m), labels, labels, where)
  assert float(acc) == 1.0
  cm = run_checked(functools.partial(ms.confusion_matrix, num_classes=4),
                   labels.at[1].set(0), labels.at[0, 0].set(99).at[1].set(0))
  assert int(cm.sum()) == 5
  # NaN padding in a masked box is neither an error nor a NaN gradient.
  where_boxes = jnp.asarray([True, False])
  loss, grad = run_checked(jax.value_and_grad(
      lambda p, t, w: L.giou_loss(p, t, where=w)), BOXES, NAN_BOXES, where_boxes)
  assert float(loss) == 0.0 and bool(jnp.all(jnp.isfinite(grad)))
  # Void predictions are the void column's business, not an error.
  void = run_checked(functools.partial(ms.confusion_matrix, num_classes=4, void_column=True),
                     LABELS, LABELS.at[0, 0].set(200))
  assert int(void[0, 4]) == 1


def test_unchecked_and_checked_paths_agree_with_references_on_valid_input():
  logits = jnp.asarray(RNG.normal(size=(4, 5, 6)), jnp.float32)
  labels = jnp.asarray(RNG.integers(0, 6, (4, 5)), jnp.int32)
  preds = jnp.asarray(RNG.integers(0, 6, (4, 5)), jnp.int32)
  ref_ce = _np_softmax_ce(logits, labels).mean()
  np.testing.assert_allclose(jax.jit(L.softmax_cross_entropy)(logits, labels), ref_ce, rtol=2e-5)
  np.testing.assert_allclose(run_checked(L.softmax_cross_entropy, logits, labels), ref_ce,
                             rtol=2e-5)
  ref_cm = sk_confusion_matrix(np.ravel(labels), np.ravel(preds), labels=range(6))
  cm_fn = jax.jit(functools.partial(mc.confusion_matrix, num_classes=6))
  np.testing.assert_array_equal(cm_fn(labels, preds), ref_cm)
  np.testing.assert_array_equal(run_checked(mc.confusion_matrix, labels, preds, num_classes=6),
                                ref_cm)
  ref_acc = np.mean(np.asarray(preds) == np.asarray(labels))
  np.testing.assert_allclose(jax.jit(mc.accuracy)(preds, labels), ref_acc, rtol=1e-6)
  np.testing.assert_allclose(run_checked(mc.accuracy, preds, labels), ref_acc, rtol=1e-6)
  # IoU of two hand-made boxes: intersection 1, union 4 + 6 - 1.
  np.testing.assert_allclose(jax.jit(ob.box_iou)(BOXES, BOXES)[0, 1], 1 / 9, rtol=1e-6)
  np.testing.assert_allclose(run_checked(ob.box_iou, BOXES, BOXES)[0, 1], 1 / 9, rtol=1e-6)


def test_unchecked_accuracy_no_longer_counts_negative_ids_as_hits():
  preds, labels = jnp.asarray([-1, 1, 7]), jnp.asarray([-1, 1, 7])
  assert float(jax.jit(mc.accuracy)(preds, labels)) == pytest.approx(2 / 3)
  assert float(mc.accuracy(preds, labels, num_classes=3)) == pytest.approx(1 / 3)


def _hlo_ops(fn, *args):
  """Optimized-HLO instructions as 'shape opcode' lines (names/metadata dropped)."""
  text = jax.jit(fn).lower(*args).compile().as_text()
  return [f"{m.group(1)} {m.group(2)}" for m in
          re.finditer(r"%\S+ = (\S+) ([\w-]+)\(", text)]


@pytest.mark.parametrize("name", ["ce", "dice", "accuracy", "seg_cm", "box_iou", "giou_loss"])
def test_checks_compile_to_nothing_outside_checked_mode(name, monkeypatch):
  fn, args = {
      "ce": (functools.partial(L.softmax_cross_entropy, ignore_index=255), (LOGITS, LABELS)),
      "dice": (L.soft_dice_loss, (LOGITS, LABELS)),
      "accuracy": (mc.accuracy, (LOGITS, LABELS)),
      "seg_cm": (functools.partial(ms.confusion_matrix, num_classes=4), (LABELS, LABELS)),
      "box_iou": (ob.box_iou, (BOXES, BOXES)),
      "giou_loss": (L.giou_loss, (BOXES, BOXES)),
  }[name]
  with_checks = _hlo_ops(fn, *args)
  monkeypatch.setattr(checkify, "debug_check", lambda *a, **k: None)
  assert _hlo_ops(fn, *args) == with_checks


def test_nms_never_keeps_nan_inverted_or_zero_area_boxes():
  boxes = jnp.asarray([
      [0.0, 0.0, 10.0, 10.0],       # 0 good
      [0.0, 0.0, jnp.nan, 10.0],    # 1 NaN, best score
      [10.0, 10.0, 0.0, 0.0],       # 2 inverted (would contain box 0 if reordered)
      [5.0, 5.0, 5.0, 9.0],         # 3 zero width
      [1.0, 1.0, 10.0, 10.0],       # 4 good, IoU 0.81 with box 0: suppressed
      [20.0, 20.0, 30.0, 30.0],     # 5 good, disjoint
      [0.0, 0.0, jnp.inf, 10.0],    # 6 inf
  ])
  scores = jnp.asarray([0.5, 0.99, 0.98, 0.97, 0.4, 0.3, 0.96])
  idx, ok = jax.jit(functools.partial(nms_mod.nms, iou_threshold=0.5))(boxes, scores)
  assert np.asarray(idx)[np.asarray(ok)].tolist() == [0, 5]
  idx, _, ok = nms_mod.soft_nms(boxes, scores, method="hard", iou_threshold=0.5)
  assert np.asarray(idx)[np.asarray(ok)].tolist() == [0, 5]
  # Checked mode accepts them too: invalid boxes are a documented case, not an error.
  idx, ok = run_checked(nms_mod.nms, boxes, scores)
  assert np.asarray(idx)[np.asarray(ok)].tolist() == [0, 5]


@pytest.mark.parametrize("kwargs,pattern", [
    ({"iou_threshold": float("nan")}, r"nms: iou_threshold=nan; expected a number in \[0.0, 1.0\]"),
    ({"iou_threshold": 1.5}, r"nms: iou_threshold=1.5; expected"),
    ({"iou_threshold": -0.1}, r"nms: iou_threshold=-0.1; expected"),
    ({"iou_threshold": np.float32("nan")}, r"nms: iou_threshold=.*nan"),
    ({"score_threshold": float("nan")}, r"nms: score_threshold=nan; expected a number not NaN"),
])
def test_nms_rejects_bad_python_thresholds(kwargs, pattern):
  with pytest.raises(ValueError, match=pattern):
    nms_mod.nms(BOXES, jnp.asarray([0.9, 0.8]), **kwargs)


def test_soft_nms_and_postprocess_reject_bad_thresholds():
  with pytest.raises(ValueError, match=r"soft_nms: iou_threshold=2.0"):
    nms_mod.soft_nms(BOXES, jnp.asarray([0.9, 0.8]), iou_threshold=2.0)
  with pytest.raises(ValueError, match=r"soft_nms: sigma=0.0; expected > 0"):
    nms_mod.soft_nms(BOXES, jnp.asarray([0.9, 0.8]), sigma=0.0)
  logits, offsets, anchors = jnp.zeros((4, 3)), jnp.zeros((4, 4)), jnp.full((4, 4), 0.5)
  with pytest.raises(ValueError, match=r"nms: iou_threshold=nan"):  # a trace-time error
    jax.eval_shape(functools.partial(postprocessing.postprocess, iou_threshold=float("nan")),
                   logits, offsets, anchors)


def test_nms_traced_threshold_still_compiles_unchecked():
  scores = jnp.asarray([0.9, 0.8])
  far = jnp.asarray([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.1]])
  run = jax.jit(lambda t: nms_mod.nms(far, scores, t))
  assert np.asarray(run(0.5)[1]).tolist() == [True, False]
  # Documented: a traced NaN suppresses nothing (IoU > NaN is False).
  assert np.asarray(run(jnp.nan)[1]).tolist() == [True, True]


# The model checks run at trace time, so abstract variables (eval_shape) are
# enough and nothing is compiled; `apply` gets traced exactly as under jit.
@pytest.fixture(scope="module")
def small_cnn():
  model = models.create("small_cnn", features=(4, 4, 4), hidden=8)
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  return model, jax.eval_shape(model.init, jax.random.PRNGKey(0), x)


@pytest.fixture(scope="module")
def unet():
  model = models.create("unet_small", features=(4, 8), num_classes=3)
  x = jax.ShapeDtypeStruct((1, 17, 19, 3), jnp.float32)
  return model, jax.eval_shape(model.init, jax.random.PRNGKey(0), x)


@pytest.fixture(scope="module")
def ssd():
  model = models.create("ssd_lite", num_classes=3, **models.spec_of("ssd_lite").smoke)
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  return model, jax.eval_shape(model.init, jax.random.PRNGKey(0), x)


SIZES = {"small_cnn": (32, 32), "unet": (17, 19), "ssd": (64, 64)}


@pytest.mark.parametrize("which", ["small_cnn", "unet", "ssd"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.bool_])
def test_models_reject_integer_images(which, dtype, request):
  model, variables = request.getfixturevalue(which)
  hw = SIZES[which]
  images = jax.ShapeDtypeStruct((1, *hw, 3), dtype)
  name = np.dtype(dtype).name
  with pytest.raises(ValueError, match=r"expected float images normalized as in "
                     rf"config.dataset.mean/std; got {name}\b"):
    jax.eval_shape(model.apply, variables, images)


@pytest.mark.parametrize("which,shape,conv", [
    ("small_cnn", (1, 32, 32, 1), "conv1"),
    ("unet", (1, 17, 19, 4), "down1/conv1/conv"),
    ("ssd", (1, 64, 64, 1), "encoder/stem/conv"),
    ("ssd", (1, 64, 64, 4), "encoder/stem/conv"),
])
def test_models_reject_wrong_channel_count(which, shape, conv, request):
  model, variables = request.getfixturevalue(which)
  pattern = (rf"expected images with 3 channels, as the params were built \(first convolution "
             rf"'{conv}'.*got images of shape \({', '.join(map(str, shape))}\) with "
             rf"{shape[-1]} channels")
  with pytest.raises(ValueError, match=pattern):
    jax.eval_shape(model.apply, variables, jax.ShapeDtypeStruct(shape, jnp.float32))


@pytest.mark.parametrize("name", ["small_cnn", "unet_small", "ssd_lite", "ssd300_vgg16"])
@pytest.mark.parametrize("n", [0, -1, 2.0])
def test_models_reject_bad_num_classes(name, n):
  with pytest.raises(ValueError, match=rf"num_classes={n!r}; expected a positive int"):
    models.create(name, num_classes=n)


@pytest.mark.parametrize("which", ["small_cnn", "unet"])
def test_models_accept_and_cast_float64_images(which, request):
  """float64 (which exists only with x64 enabled) is cast to the compute dtype."""
  model, variables = request.getfixturevalue(which)
  hw = (32, 32) if which == "small_cnn" else (17, 19)
  with enable_x64(True):
    out = jax.eval_shape(model.apply, variables, jax.ShapeDtypeStruct((1, *hw, 3), jnp.float64))
  assert out.dtype == jnp.float32

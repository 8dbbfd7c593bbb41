"""Export round trips: StableHLO, TF SavedModel and ONNX against ``model.apply``.

The reference is the Flax model's own ``apply(variables, x, train=False)``
(jitted JAX), an independent path from each exported artifact, which is
reloaded in its own runtime (``jax.export.deserialize``, TensorFlow,
onnxruntime). Each artifact is exported once with a symbolic batch dimension
and called at two batch sizes.

Small registry 'smoke' variants at 32x32 / 64x64 keep the file fast; their
BatchNorm statistics are randomised so that eval-mode normalisation is not
the identity and a lost ``batch_stats`` would show.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visionjax import export
from visionjax.detection.postprocessing import batch_postprocess
import visionjax.models as vm

# name -> (registered model, (H, W, C)); one model per output kind.
CASES = {
    "classifier": ("small_cnn", (32, 32, 3)),   # logits [B, K]
    "segmenter": ("unet_small", (32, 32, 3)),   # logits [B, H, W, K]
    "detector": ("ssd_lite", (64, 64, 3)),      # {'anchors', 'logits', 'offsets'}
}
# Small padded outputs; the whole post-processing (softmax, decode, top-k,
# class-aware NMS) still runs.
POSTPROCESS = {"max_detections": 10, "pre_nms_top_k": 50, "score_threshold": 0.05}
BATCHES = (2, 5)
TOL = 1e-5


def _variables(model, hwc, seed=0):
  """Random variables of ``model`` in NumPy, without compiling ``model.init``
  (seconds per model on CPU): kernels N(0, 1/fan_in), biases and BatchNorm
  shifts N(0, 0.1), scales U(0.5, 1.5); BatchNorm means N(0, 0.1) and
  variances U(0.5, 1.5), so eval-mode normalisation is not the identity and a
  lost ``batch_stats`` would show."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *hwc)),
                                             train=False))

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return rng.normal(0.0, fan_in ** -0.5, leaf.shape).astype(leaf.dtype)
    if name in ("scale", "var"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(leaf.dtype)
    return rng.normal(0.0, 0.1, leaf.shape).astype(leaf.dtype)  # bias, mean

  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="module")
def built():
  """case -> (model, variables, (H, W, C))."""
  out = {}
  for case, (name, hwc) in CASES.items():
    model = vm.create(name, num_classes=3, **vm.spec_of(name).smoke)
    out[case] = (model, _variables(model, hwc), hwc)
  return out


def _images(batch, hwc, seed=0):
  return np.asarray(jax.random.normal(jax.random.key(seed + batch), (batch, *hwc)), np.float32)


_REFERENCES = {}


def _reference(model, variables, images, postprocess=None):
  """``model.apply`` (then ``batch_postprocess``) in JAX, cached per input."""
  key = (id(model), images.shape, None if postprocess is None else tuple(postprocess))

  def fn(x):
    out = model.apply(variables, x, train=False)
    if postprocess is None:
      return out
    return batch_postprocess(out["logits"], out["offsets"], out["anchors"],
                             **postprocess)._asdict()

  if key not in _REFERENCES:
    _REFERENCES[key] = jax.tree.map(np.asarray, jax.jit(fn)(images))
  return _REFERENCES[key]


def _assert_same(got, ref):
  """Same structure; floats within TOL (relative above magnitude 1), the rest
  equal. Returns the largest absolute float difference."""
  if isinstance(ref, dict):
    assert isinstance(got, dict) and sorted(got) == sorted(ref), (sorted(got), sorted(ref))
    return max(_assert_same(got[k], ref[k]) for k in ref)
  got, ref = np.asarray(got), np.asarray(ref)
  assert got.shape == ref.shape, (got.shape, ref.shape)
  if not np.issubdtype(ref.dtype, np.floating):
    np.testing.assert_array_equal(got, ref)
    return 0.0
  diff = float(np.max(np.abs(got.astype(np.float64) - ref), initial=0.0))
  scale = max(1.0, float(np.max(np.abs(ref), initial=0.0)))
  assert diff <= TOL * scale, f"max abs difference {diff} > {TOL} x {scale}"
  return diff


def _round_trip(call, model, variables, hwc, postprocess=None):
  for batch in BATCHES:
    images = _images(batch, hwc)
    _assert_same(call(images), _reference(model, variables, images, postprocess))


PARAMS = [pytest.param(case, None, id=case) for case in CASES] + [
    pytest.param("detector", POSTPROCESS, id="detector+postprocess")]


@pytest.mark.parametrize("case,postprocess", PARAMS)
def test_stablehlo_round_trip(built, case, postprocess):
  model, variables, hwc = built[case]
  data = export.export_stablehlo(model, variables, input_shape=(None, *hwc),
                                 postprocess=postprocess)
  assert isinstance(data, bytes)
  _round_trip(export.load_stablehlo(data), model, variables, hwc, postprocess)


@pytest.mark.parametrize("case,postprocess", PARAMS)
def test_saved_model_round_trip(built, case, postprocess, tmp_path):
  pytest.importorskip("tensorflow")
  model, variables, hwc = built[case]
  path = export.export_saved_model(model, variables, tmp_path / "saved",
                                   input_shape=(None, *hwc), postprocess=postprocess)
  _round_trip(export.load_saved_model(path), model, variables, hwc, postprocess)


@pytest.mark.parametrize("case", list(CASES))
def test_onnx_round_trip(built, case, tmp_path):
  pytest.importorskip("jax2onnx")
  pytest.importorskip("onnxruntime")
  model, variables, hwc = built[case]
  path = export.export_onnx(model, variables, tmp_path / "model.onnx",
                            input_shape=(None, *hwc))
  call = export.load_onnx(path)
  assert isinstance(call.session.get_inputs()[0].shape[0], str)  # symbolic batch
  _round_trip(call, model, variables, hwc)


def test_onnx_fixed_batch_round_trip_lenet5(tmp_path):
  # A fixed batch converts models whose symbolic-batch conversion fails
  # (LeNet-5's zero padding); LeNet-5 also takes the jaxpr way, as jax2onnx's
  # nn.avg_pool patch refuses its positional window argument.
  pytest.importorskip("jax2onnx")
  pytest.importorskip("onnxruntime")
  hwc = (28, 28, 1)
  model = vm.create("lenet5", num_classes=3)
  variables = _variables(model, hwc)
  call = export.load_onnx(export.export_onnx(model, variables, tmp_path / "lenet5.onnx",
                                             input_shape=(3, *hwc)))
  images = _images(3, hwc)
  _assert_same(call(images), _reference(model, variables, images))


def test_onnx_postprocess_is_a_clear_value_error(built, tmp_path):
  # jax2onnx 0.17 cannot lower the NMS's batched scatter. When it can, turn
  # this into a round trip like the ones above.
  pytest.importorskip("jax2onnx")
  model, variables, hwc = built["detector"]
  with pytest.raises(ValueError, match="cannot convert SSD with SSD post-processing"):
    export.export_onnx(model, variables, tmp_path / "pp.onnx", input_shape=(None, *hwc),
                       postprocess=POSTPROCESS)


def test_fixed_batch_exports_that_batch_only(built):
  model, variables, hwc = built["classifier"]
  call = export.load_stablehlo(
      export.export_stablehlo(model, variables, input_shape=(3, *hwc)))
  images = _images(3, hwc)
  _assert_same(call(images), _reference(model, variables, images))
  with pytest.raises(ValueError):
    call(_images(2, hwc))


def test_bad_arguments_raise_value_errors(built):
  model, variables, hwc = built["classifier"]
  with pytest.raises(ValueError, match="H, W and C must be positive ints"):
    export.export_stablehlo(model, variables, input_shape=(None, None, 32, 3))
  with pytest.raises(ValueError, match=r"expected \(B, H, W, C\)"):
    export.export_stablehlo(model, variables, input_shape=(None, 32, 32))
  with pytest.raises(ValueError, match="postprocess needs a detector"):
    export.export_stablehlo(model, variables, input_shape=(None, *hwc), postprocess=True)
  with pytest.raises(ValueError, match="flat dict"):
    export.output_names({"a": {"b": jnp.zeros(1)}})

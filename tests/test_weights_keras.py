"""Keras applications -> visionjax conversion: outputs equal Keras'.

Keras' ResNet50 and VGG16 are built with random weights (`weights=None`, no
download), with random BatchNorm statistics/affines and biases, and run in
inference mode on BGR images minus the Caffe means (Keras'
`preprocess_input`); the converted visionjax models take the same images as
RGB through the returned `Preprocessing`. Max relative difference
(max |a - b| / max |b|) must be <= 1e-5 in float32.

Keras' VGG16 classifier is built for 224×224 only (its flatten fixes the
fc1 input), so the logits are compared at 224×224 and the convolutional
features (pool5) at a size not divisible by 32, from a headless Keras VGG16
holding the same weights.
"""
import os

import jax
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

from weights_parity import RTOL, jitted, max_rel  # noqa: E402

from visionjax import weights as vw  # noqa: E402
from visionjax.models import vgg  # noqa: E402
from visionjax.weights import __main__ as cli  # noqa: E402

BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)


def randomize(model, seed=0):
  """Random BN statistics/affines and conv/dense biases."""
  rng = np.random.default_rng(seed)

  def assign(var, values):
    var.assign(values.astype(np.float32))

  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      assign(layer.gamma, rng.uniform(0.5, 1.5, layer.gamma.shape))
      assign(layer.beta, rng.normal(0, 0.2, layer.beta.shape))
      assign(layer.moving_mean, rng.normal(0, 0.2, layer.moving_mean.shape))
      assign(layer.moving_variance,
             rng.uniform(0.5, 1.5, layer.moving_variance.shape))
    elif getattr(layer, "bias", None) is not None:
      assign(layer.bias, rng.normal(0, 0.2, layer.bias.shape))
  return model


def keras_forward(model, rgb_0_255):
  """Keras' own preprocessing (RGB -> BGR, minus Caffe means), inference."""
  return np.asarray(model(rgb_0_255[..., ::-1] - BGR_MEAN, training=False))


def _image(size, seed=1):
  return np.random.default_rng(seed).uniform(
      0, 255, (1, *size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def resnet50():
  """Random Keras ResNet50s at both test sizes (same weights) and their
  conversion. Keras fixes the input size of a model with its classifier."""
  keras.utils.set_random_seed(0)
  models = {size: keras.applications.ResNet50(
      weights=None, input_shape=(*size, 3), classifier_activation=None)
            for size in ((64, 64), (45, 37))}
  first, *rest = models.values()
  randomize(first)
  for m in rest:
    m.set_weights(first.get_weights())
  return models, vw.from_keras("resnet50", first)


def test_resnet50_output_equals_keras(resnet50):
  models, conv = resnet50
  assert conv.model_kwargs == {"num_classes": 1000, "stride_in_1x1": True}
  apply = jitted(conv.model())
  for size, km in models.items():
    x = _image(size)
    rel = max_rel(apply(conv.variables, conv.preprocessing.normalize(x)),
                  keras_forward(km, x))
    print(f"keras resnet50 {size[0]}x{size[1]}: max relative difference "
          f"{rel:.2e}")
    assert rel <= RTOL


def test_vgg16_logits_and_features_equal_keras():
  keras.utils.set_random_seed(0)
  full = randomize(keras.applications.VGG16(weights=None,
                                            classifier_activation=None))
  conv = vw.from_keras("vgg16", full)
  assert conv.model_kwargs == {"num_classes": 1000, "ceil_mode": False}
  x = _image((224, 224))
  rel = max_rel(jitted(conv.model())(conv.variables,
                                     conv.preprocessing.normalize(x)),
                keras_forward(full, x))
  print(f"keras vgg16 224x224 logits: max relative difference {rel:.2e}")
  assert rel <= RTOL

  size = (45, 37)
  headless = keras.applications.VGG16(weights=None, include_top=False,
                                      input_shape=(*size, 3))
  for layer in headless.layers:
    if layer.weights:
      layer.set_weights(full.get_layer(layer.name).get_weights())
  x = _image(size)
  encoder = vgg.VGGEncoder(ceil_mode=False)
  feats = jitted(encoder)({"params": conv.variables["params"]["features"]},
                          conv.preprocessing.normalize(x))
  rel = max_rel(feats["pool5"], keras_forward(headless, x))
  print(f"keras vgg16 {size[0]}x{size[1]} pool5: max relative difference "
        f"{rel:.2e}")
  assert rel <= RTOL


def test_keras_provenance_preprocessing_and_cli_file(resnet50, tmp_path,
                                                     capsys):
  models, conv = resnet50
  p = conv.preprocessing
  assert p.mean == (123.68, 116.779, 103.939) and p.std == (1.0, 1.0, 1.0)
  assert p.value_range == (0.0, 255.0) and p.channel_order == "RGB"
  prov = conv.provenance
  assert prov.source == "keras" and prov.source_model == "ResNet50"
  assert prov.weights is None  # random weights: origin unknown
  assert "MIT" in prov.license

  # The same weights through a file and the command line.
  path = tmp_path / "random_resnet50.weights.h5"
  next(iter(models.values())).save_weights(path)
  out = tmp_path / "r50"
  assert cli.main(["fetch", "resnet50", "--from=keras", f"--file={path}",
                   f"--out={out}"]) == 0
  capsys.readouterr()
  loaded = vw.load(str(out))
  assert loaded.model_kwargs == conv.model_kwargs
  assert loaded.provenance.file == str(path)
  flat = lambda v: jax.tree_util.tree_leaves_with_path(v)  # noqa: E731
  for (ka, a), (kb, b) in zip(flat(loaded.variables), flat(conv.variables)):
    assert ka == kb
    np.testing.assert_array_equal(a, b)

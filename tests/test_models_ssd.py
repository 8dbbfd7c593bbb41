"""SSD models: parameter count of SSD300 by hand, default boxes, forward pass.

Parameter counts come from `jax.eval_shape(model.init)`: nothing is allocated
or compiled for the 26M-parameter models.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visionjax.detection import anchors
import visionjax.models as vm


def _conv(k, cin, cout):
  return k * k * cin * cout + cout


def _ssd300_vgg16_params_by_hand(num_classes):
  """The Caffe SSD300 layer list (Liu et al. 2016, Fig. 2), counted by hand."""
  vgg = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
         (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
  n = sum(_conv(3, a, b) for a, b in vgg)
  assert n == 14_714_688                      # VGG-16's 13 conv layers
  n += _conv(3, 512, 1024) + _conv(1, 1024, 1024)   # fc6 (dilated 3×3), fc7
  n += 512                                         # conv4_3 L2Norm scale
  extras = [(1024, 256, 1), (256, 512, 3), (512, 128, 1), (128, 256, 3), (256, 128, 1),
            (128, 256, 3), (256, 128, 1), (128, 256, 3)]
  n += sum(_conv(k, a, b) for a, b, k in extras)
  sources = [(512, 4), (1024, 6), (512, 6), (256, 6), (256, 4), (256, 4)]
  n += sum(_conv(3, c, 4 * m) + _conv(3, c, (num_classes + 1) * m) for c, m in sources)
  return n


def _count(name, **kwargs):
  spec = vm.spec_of(name)
  model = vm.create(name, **kwargs)
  x = jax.ShapeDtypeStruct((1, *spec.input_size, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  return vm.count_params(variables), jax.eval_shape(model.apply, variables, x)


def test_ssd300_vgg16_has_26_3m_parameters_on_voc():
  n, out = _count("ssd300_vgg16", num_classes=20)
  assert n == _ssd300_vgg16_params_by_hand(20) == 26_285_486
  assert round(n / 1e6, 1) == 26.3                 # "about 26.3M" (21 VOC classes)
  assert out["logits"].shape == (1, 8732, 21)
  assert out["offsets"].shape == (1, 8732, 4)
  assert out["anchors"].shape == (8732, 4)


def test_ssd512_and_resnet18_variants_shapes():
  n512, out = _count("ssd512_vgg16", num_classes=20)
  assert out["logits"].shape == (1, 24564, 21)
  # Two more extra-layer pairs and a 7th head than SSD300, same heads' widths.
  assert n512 > 26_285_486
  n18, out = _count("ssd300_resnet18", num_classes=20)
  assert out["anchors"].shape == (8732, 4) and n18 < n512 / 1.5   # "lighter"


def test_model_default_boxes_equal_the_reference_layout():
  model = vm.create("ssd300_vgg16", num_classes=3)
  x = jax.ShapeDtypeStruct((1, 300, 300, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  # The default boxes depend on shapes only: compiled alone, XLA drops the
  # VGG compute they do not depend on (no 300x300 forward pass is run).
  def default_boxes():
    zeros = lambda s: jnp.zeros(s.shape, s.dtype)  # noqa: E731
    return model.apply(jax.tree.map(zeros, variables), zeros(x))["anchors"]
  boxes = jax.jit(default_boxes)()
  np.testing.assert_allclose(boxes, anchors.ssd300_default_boxes())


def test_ssd_lite_forward_jit_and_bad_sources():
  model = vm.create("ssd_lite", num_classes=10, **vm.spec_of("ssd_lite").smoke)
  x = jnp.ones((2, 64, 64, 3))
  out = jax.jit(lambda x: model.apply(model.init(jax.random.key(0), x), x))(x)
  assert out["logits"].shape == (2, 480, 11) and out["offsets"].shape == (2, 480, 4)
  assert bool(jnp.all(jnp.isfinite(out["logits"])))
  bad = vm.create("ssd_lite", num_classes=10, sources=("layer9", "layer3"))
  with pytest.raises(ValueError, match="sources \\['layer9'\\] are not features"):
    jax.eval_shape(bad.init, jax.random.key(0), x)

"""benchmarks/profile_step.py's HLO categories on hand-checked programs."""
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "benchmarks"))

import profile_step as ps  # noqa: E402  (benchmarks/profile_step.py)


def _categories(fn, *args):
  text = jax.jit(fn).lower(*args).compile().as_text()
  c = ps.HloCategorizer(text)
  entry = text.split("ENTRY ", 1)[1].split()[0].lstrip("%")
  return [c.category(n) for n, v in c.instrs.items()
          if v["comp"] == entry and v["op"] not in
          ("parameter", "constant", "bitcast", "tuple", "get-tuple-element")]


def _conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO",
                                                         "NHWC"))


def test_a_3x3_convolution_and_both_of_its_gradients_are_told_apart():
  # One convolution forward; jax.grad w.r.t. input and kernel adds exactly
  # one input-gradient and one weight-gradient convolution.
  x = jnp.ones((2, 8, 8, 3))
  w = jnp.ones((3, 3, 3, 5))
  loss = lambda x, w: jnp.sum(jnp.tanh(_conv(x, w)))
  cats = _categories(jax.grad(loss, argnums=(0, 1)), x, w)
  assert cats.count("conv forward") == 1, cats
  assert cats.count("conv input-grad") == 1, cats
  assert cats.count("conv weight-grad") == 1, cats
  # Forward only: no gradient convolution at all.
  cats = _categories(loss, x, w)
  assert cats.count("conv forward") == 1, cats
  assert not {"conv input-grad", "conv weight-grad"} & set(cats), cats


def test_a_weight_gradient_is_recognised_on_a_tiny_activation():
  # 3×3 kernel on a 2×2 image (ResNet's last stage at small sizes): the
  # weight gradient's window (the 2×2 activation) is smaller than its output
  # (the 3×3 kernel), so only the shape rule can tell it.
  x = jnp.ones((2, 2, 2, 4))
  w = jnp.ones((3, 3, 4, 6))
  cats = _categories(jax.grad(lambda w: jnp.sum(_conv(x, w) ** 2)), w)
  assert cats.count("conv weight-grad") == 1, cats
  assert "conv input-grad" not in cats, cats


def test_matmuls_and_transposes_are_their_own_categories():
  a = jnp.ones((64, 32))
  b = jnp.ones((32, 16))
  assert "dot/GEMM" in _categories(lambda a, b: a @ b, a, b)
  cats = _categories(lambda a: jnp.transpose(a.reshape(8, 8, 32), (2, 0, 1))
                     + 0.0, a)
  assert cats == ["transpose/copy"], cats


def test_torch_op_names_map_to_the_same_categories():
  cases = {
      "aten::mkldnn_convolution": "conv forward",
      "aten::convolution_backward": "conv grads (both)",
      "aten::addmm": "dot/GEMM", "aten::mm": "dot/GEMM",
      "aten::copy_": "transpose/copy",
      "aten::max_pool2d_with_indices_backward": "pooling",
      "aten::max_unpool2d": "pooling",
      "aten::native_batch_norm_backward": "BatchNorm",
      "aten::add_": "other fusions",
      "Optimizer.step#SGD.step": "everything else"}
  assert {k: ps.torch_category(k) for k in cases} == cases

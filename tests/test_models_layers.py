"""Shared layers and structural behaviour of the zoo, against references.

- UpConv2x (1×1 conv + depth-to-space) equals flax `nn.ConvTranspose` 2×2/2
  with mapped weights, and both equal a NumPy transposed convolution.
- the zoo's 1×1 convolution (GEMMs, own VJP) equals `lax` and NumPy, values
  and gradients; other convolutions still go to `lax`.
- adaptive_avg_pool equals PyTorch's AdaptiveAvgPool2d window rule (NumPy).
- ceil-mode pooling, U-Net overlap-tile geometry (572 -> 388), encoder
  strides, SegNet's use of the pooling indices, FCN skip init, and the
  `axis_name` contract under pmap.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import visionjax.models as vm
from visionjax.models import layers
from visionjax.models.unet import valid_tiling


def np_transposed_conv_2x2(x, w, b):
  """y[2i+a, 2j+b, o] = sum_c x[i, j, c] w[a, b, c, o] + b (PyTorch layout)."""
  n, h, wd, _ = x.shape
  y = np.zeros((n, 2 * h, 2 * wd, w.shape[-1]), np.float64)
  for a in range(2):
    for c in range(2):
      y[:, a::2, c::2] = np.einsum("nhwc,co->nhwo", x, w[a, c])
  return y + b


def test_upconv_equals_conv_transpose_and_numpy():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
  ct = nn.ConvTranspose(4, (2, 2), (2, 2), padding="VALID")
  ct_vars = ct.init(jax.random.key(0), x)
  kernel = np.asarray(ct_vars["params"]["kernel"])
  bias = rng.standard_normal(4).astype(np.float32)
  y_ct = ct.apply({"params": {"kernel": kernel, "bias": bias}}, x)

  up = layers.UpConv2x(4)
  up_params = {"conv": {"kernel": layers.conv_transpose_kernel_to_1x1(
      jnp.asarray(kernel))}, "bias": bias}
  y_up = up.apply({"params": up_params}, x)
  assert y_up.shape == (2, 10, 14, 4)
  np.testing.assert_allclose(np.asarray(y_up), np.asarray(y_ct), atol=1e-5)
  # flax's ConvTranspose (transpose_kernel=False) flips the taps.
  ref = np_transposed_conv_2x2(x, kernel[::-1, ::-1], bias)
  np.testing.assert_allclose(np.asarray(y_up), ref, atol=1e-5)
  # Same parameter count as the transposed convolution (C·4·F + F).
  assert layers.count_params(up.init(jax.random.key(1), x)) == 3 * 4 * 4 + 4


def np_bilinear_deconv(x, f):
  """FCN's fixed upsampling: a transposed conv with the bilinear kernel of
  size 2f - f%2 and stride f (Caffe `BilinearFiller`), aligned by cropping
  (k - f) // 2. x: [H, W] -> [f·H, f·W]."""
  k = 2 * f - f % 2
  centre = f - 1 if k % 2 == 1 else f - 0.5
  w1 = 1 - np.abs(np.arange(k) - centre) / f
  kernel = np.outer(w1, w1)
  h, w = x.shape
  y = np.zeros(((h - 1) * f + k, (w - 1) * f + k))
  for i in range(h):
    for j in range(w):
      y[i * f:i * f + k, j * f:j * f + k] += x[i, j] * kernel
  off = (k - f) // 2
  return y[off:off + f * h, off:off + f * w]


@pytest.mark.parametrize("f", [2, 8, 32])
def test_fcn_resize_equals_bilinear_deconvolution_away_from_border(f):
  """FCN substitutes a bilinear resize for its fixed bilinear deconvolution:
  identical except in the f-pixel border, where the deconvolution fades to
  the zero padding and the resize repeats the edge."""
  x = np.random.default_rng(f).standard_normal((5, 6))
  ref = np_bilinear_deconv(x, f)
  got = np.asarray(layers.resize_bilinear(
      jnp.asarray(x, jnp.float32)[None, :, :, None], (5 * f, 6 * f)))[0, ..., 0]
  np.testing.assert_allclose(got[f:-f, f:-f], ref[f:-f, f:-f], atol=1e-5)


@pytest.mark.parametrize("k,stride,padding", [(3, 1, "SAME"),
                                              (5, 2, ((2, 2), (2, 2)))])
def test_shifted_depthwise_conv_equals_lax_values_and_gradients(k, stride,
                                                                padding):
  """EfficientNet's CPU depthwise formulation is the grouped convolution."""
  rng = np.random.default_rng(k * 10 + stride)
  x = jnp.asarray(rng.standard_normal((2, 9, 7, 5)), jnp.float32)
  kern = jnp.asarray(rng.standard_normal((k, k, 1, 5)), jnp.float32)
  args = dict(window_strides=(stride, stride), padding=padding,
              dimension_numbers=("NHWC", "HWIO", "NHWC"),
              feature_group_count=5)
  ho, wo = -(-9 // stride), -(-7 // stride)
  probe = jnp.asarray(rng.standard_normal((2, ho, wo, 5)), jnp.float32)
  outs = {}
  for name, conv in (("lax", jax.lax.conv_general_dilated),
                     ("shift", layers.shifted_conv_general_dilated)):
    f = functools.partial(conv, **args)
    loss = lambda a, w, f=f: jnp.sum(probe * f(a, w))
    outs[name] = jax.jit(lambda a, w, f=f, loss=loss: (
        f(a, w), *jax.grad(loss, argnums=(0, 1))(a, w)))(x, kern)
  # The slicing path is taken (no convolution left), also for the
  # ConvDimensionNumbers that flax's nn.Conv passes.
  dn = jax.lax.conv_dimension_numbers(x.shape, kern.shape,
                                      ("NHWC", "HWIO", "NHWC"))
  jaxpr = str(jax.make_jaxpr(functools.partial(
      layers.shifted_conv_general_dilated, **{**args,
                                              "dimension_numbers": dn}))(
                                                  x, kern))
  assert "conv_general_dilated" not in jaxpr
  # Reference for the values: an explicit NumPy loop over windows.
  p = (k - 1) // 2
  xp = np.pad(np.asarray(x), ((0, 0), (p, p), (p, p), (0, 0)))
  assert outs["lax"][0].shape == (2, ho, wo, 5)
  ref = np.zeros((2, ho, wo, 5))
  for i in range(ho):
    for j in range(wo):
      win = xp[:, i * stride:i * stride + k, j * stride:j * stride + k]
      ref[:, i, j] = np.einsum("bhwc,hwc->bc", win, np.asarray(kern)[:, :, 0])
  np.testing.assert_allclose(np.asarray(outs["shift"][0]), ref, atol=1e-4)
  for a, b in zip(outs["lax"], outs["shift"]):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)


@pytest.mark.parametrize("stride,padding,hw", [(1, "SAME", (9, 7)),
                                                (2, "VALID", (9, 7)),
                                                (2, ((0, 0), (0, 0)), (8, 5))])
def test_gemm_pointwise_conv_equals_lax_and_numpy_values_and_gradients(
    stride, padding, hw):
  """The zoo's 1×1 convolution (a GEMM with its own VJP) is the convolution:
  values and both gradients against `jax.vjp` of `lax.conv_general_dilated`
  and an independent NumPy transcription."""
  rng = np.random.default_rng(stride + hw[0])
  x = rng.standard_normal((2, *hw, 6)).astype(np.float32)
  kern = rng.standard_normal((1, 1, 6, 4)).astype(np.float32)
  ho, wo = -(-hw[0] // stride), -(-hw[1] // stride)
  probe = rng.standard_normal((2, ho, wo, 4)).astype(np.float32)
  dn = jax.lax.conv_dimension_numbers(x.shape, kern.shape,
                                      ("NHWC", "HWIO", "NHWC"))
  args = dict(window_strides=(stride, stride), padding=padding,
              dimension_numbers=dn)
  outs = {}
  for name, conv in (("lax", jax.lax.conv_general_dilated),
                     ("gemm", layers.gemm_conv_general_dilated)):
    f = functools.partial(conv, **args)
    y, vjp = jax.vjp(f, jnp.asarray(x), jnp.asarray(kern))
    outs[name] = (y, *vjp(jnp.asarray(probe)))
  # The GEMM path is taken: no convolution in the forward or backward pass.
  jaxpr = str(jax.make_jaxpr(lambda a, w: jax.vjp(functools.partial(
      layers.gemm_conv_general_dilated, **args), a, w)[1](probe))(x, kern))
  assert "conv_general_dilated" not in jaxpr and "dot_general" in jaxpr
  # NumPy: y = x[::s, ::s] · W; dL/dx scatters probe · Wᵀ back to the
  # strided positions (zero elsewhere); dL/dW = Σ x[::s, ::s]ᵀ · probe.
  w2 = kern[0, 0].astype(np.float64)
  xs = x[:, ::stride, ::stride].astype(np.float64)
  dx = np.zeros(x.shape)
  dx[:, ::stride, ::stride] = probe @ w2.T
  ref = (xs @ w2, dx, np.einsum("bhwc,bhwf->cf", xs, probe)[None, None])
  for got_lax, got_gemm, want in zip(outs["lax"], outs["gemm"], ref):
    assert got_gemm.shape == want.shape
    np.testing.assert_allclose(np.asarray(got_gemm), want, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(got_gemm), np.asarray(got_lax),
                               rtol=1e-5, atol=1e-5)


def test_zoo_conv_keeps_nn_conv_params_and_leaves_other_convs_to_lax():
  """`layers.conv` / `ConvNormAct` have nn.Conv's parameters and outputs;
  3×3, padded 1×1 and grouped convolutions still reach `lax`."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 7, 5, 8)), jnp.float32)
  cases = (dict(kernel_size=(1, 1), strides=(2, 2)),  # the GEMM path
           dict(kernel_size=(3, 3)),
           dict(kernel_size=(1, 1), padding=((1, 1), (0, 0))),
           dict(kernel_size=(1, 1), feature_group_count=2))
  for i, kw in enumerate(cases):
    ours, ref = layers.conv(4, **kw), nn.Conv(4, **kw)
    shapes = jax.eval_shape(ref.init, jax.random.PRNGKey(1), x)
    assert jax.eval_shape(ours.init, jax.random.PRNGKey(1), x) == shapes
    jaxpr = str(jax.make_jaxpr(ours.apply)(shapes, x))
    assert ("conv_general_dilated" in jaxpr) == (i > 0), kw
    if i > 1:
      continue  # same lax call as the 3×3 case; the jaxpr check suffices
    variables = jax.jit(ref.init)(jax.random.PRNGKey(1), x)
    run = jax.jit(lambda v, a, m: (m.apply(v, a), jax.grad(
        lambda v, a: jnp.sum(jnp.sin(m.apply(v, a))), argnums=(0, 1))(v, a)),
        static_argnums=2)
    got, want = run(variables, x, ours), run(variables, x, ref)
    for a, b in zip(jax.tree_util.tree_leaves(got),
                    jax.tree_util.tree_leaves(want)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  block = layers.ConvNormAct(4, 1, 2, padding="VALID")
  shapes = jax.eval_shape(block.init, jax.random.PRNGKey(0), x)
  assert "conv_general_dilated" not in str(jax.make_jaxpr(block.apply)(shapes, x))


def test_depth_to_space_layout_and_inverse():
  x = np.arange(1 * 2 * 3 * 8, dtype=np.float32).reshape(1, 2, 3, 8)
  y = np.asarray(layers.depth_to_space(jnp.asarray(x), 2))
  for i in range(2):
    for j in range(3):
      for r1 in range(2):
        for r2 in range(2):
          np.testing.assert_array_equal(y[0, 2 * i + r1, 2 * j + r2],
                                        x[0, i, j, (r1 * 2 + r2) * 2:
                                          (r1 * 2 + r2) * 2 + 2])
  np.testing.assert_array_equal(
      np.asarray(layers.space_to_depth(jnp.asarray(y), 2)), x)


@pytest.mark.parametrize("h,w,out", [(13, 9, 7), (14, 14, 7), (5, 8, 6)])
def test_adaptive_avg_pool_matches_pytorch_windows(h, w, out):
  x = np.random.default_rng(1).standard_normal((2, h, w, 3))
  ref = np.zeros((2, out, out, 3))
  for i in range(out):
    for j in range(out):
      r0, r1 = (i * h) // out, -(-((i + 1) * h) // out)
      c0, c1 = (j * w) // out, -(-((j + 1) * w) // out)
      ref[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
  got = layers.adaptive_avg_pool(jnp.asarray(x, jnp.float32), out)
  np.testing.assert_allclose(np.asarray(got), ref, atol=1e-5)


@pytest.mark.parametrize("window,stride,padding,hw", [
    (2, 2, "VALID", (9, 8)), (3, 2, ((1, 1), (1, 1)), (11, 10)),
    (3, 1, ((1, 1), (1, 1)), (6, 7)), (3, 2, "SAME", (9, 12)),
    (2, 2, ((0, 1), (0, 1)), (5, 5))])
def test_max_pool_equals_reduce_window_values_and_gradients(window, stride, padding, hw):
  # Reference: flax's reduce_window max pool. Distinct values, so the
  # subgradient is unique and both must route it to the same input.
  x = jnp.asarray(np.random.default_rng(3).permutation(2 * hw[0] * hw[1] * 3)
                  .reshape(2, *hw, 3), jnp.float32)
  ref = lambda a: nn.max_pool(a, (window, window), (stride, stride), padding=padding)
  got = lambda a: layers.max_pool(a, window, stride, padding=padding)
  np.testing.assert_array_equal(np.asarray(got(x)), np.asarray(ref(x)))
  w = jnp.asarray(np.random.default_rng(4).standard_normal(ref(x).shape), jnp.float32)
  g_ref = jax.grad(lambda a: jnp.sum(ref(a) * w))(x)
  g_got = jax.grad(lambda a: jnp.sum(got(a) * w))(x)
  np.testing.assert_allclose(np.asarray(g_got), np.asarray(g_ref), atol=1e-6)


def test_ceil_pool_pad_and_crop():
  x = jnp.asarray(np.random.default_rng(2).standard_normal((1, 5, 4, 1)),
                  jnp.float32)
  y = np.asarray(layers.max_pool_ceil(x, 2))
  assert y.shape == (1, 3, 2, 1)
  np.testing.assert_array_equal(y[0, 2, :, 0],
                                np.asarray(x)[0, 4].reshape(2, 2).max(-1))
  p, size = layers.pad_to_multiple(x, 4)
  assert p.shape == (1, 8, 4, 1) and size == (5, 4)
  np.testing.assert_array_equal(np.asarray(layers.crop_to(p, size)), x)


def test_unet_valid_tiling_matches_paper_geometry():
  assert valid_tiling(388, 4) == (92, 92)  # 572×572 input -> 388×388 map.
  before, after = valid_tiling(33, 4)
  assert before == 92 and (33 + before + after - 184) >= 33


def test_unet_deep_supervision_heads_leave_the_logits_unchanged():
  """deep_supervision adds 1x1 heads on the bottleneck and the coarse decoder
  levels (train mode only); the main logits, in train and eval mode, equal
  those of the plain U-Net with the same weights (the heads read features,
  they feed nothing back)."""
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 30, 20, 3))  # padded to 32 x 24
  ds = vm.create("unet_small", num_classes=5, features=(4, 8, 16, 32), deep_supervision=True)
  plain = vm.create("unet_small", num_classes=5, features=(4, 8, 16, 32))
  # Jitted: eager op-by-op dispatch of these applies took 127-241 s in CI.
  v = jax.jit(lambda x: ds.init(jax.random.PRNGKey(0), x, train=False))(x)
  heads = {k for k in v["params"] if k.startswith("aux_classifier")}
  assert heads == {"aux_classifier1", "aux_classifier2", "aux_classifier3"}
  pv = {"params": {k: p for k, p in v["params"].items() if k not in heads},
        "batch_stats": v["batch_stats"]}

  def run(model, variables):
    train, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    return train, model.apply(variables, x)

  (out, out_eval), (want, want_eval) = jax.jit(run, static_argnums=0)(ds, v), jax.jit(
      run, static_argnums=0)(plain, pv)
  # Two separately compiled programs may fuse differently: equal to rounding
  # (a head feeding back would change the logits by orders more).
  np.testing.assert_allclose(np.asarray(out["logits"]), np.asarray(want), rtol=1e-6, atol=1e-6)
  assert [a.shape for a in out["aux_logits"]] == [(2, 4, 3, 5), (2, 8, 6, 5), (2, 16, 12, 5)]
  np.testing.assert_allclose(np.asarray(out_eval), np.asarray(want_eval), rtol=1e-6, atol=1e-6)


def test_encoder_strides_and_output_stride():
  from visionjax.models.backbones import build_encoder
  r = build_encoder("resnet50", output_stride=8)
  assert r.feature_strides == {"stem": 2, "layer1": 4, "layer2": 8,
                               "layer3": 8, "layer4": 8}
  assert build_encoder("vgg16").feature_strides["pool5"] == 32
  ssd = build_encoder("vgg16", ssd=True).feature_strides
  assert ssd["conv4"] == 8 and ssd["fc7"] == 16
  # SSD300: ceil-mode pools give the 38×38 conv4_3 and 19×19 fc7 maps.
  shapes = jax.eval_shape(
      lambda x: build_encoder("vgg16", ssd=True).init_with_output(
          jax.random.key(0), x)[0], jax.ShapeDtypeStruct((1, 300, 300, 3),
                                                         jnp.float32))
  assert shapes["conv4"].shape == (1, 38, 38, 512)
  assert shapes["fc7"].shape == (1, 19, 19, 1024)
  with pytest.raises(ValueError, match="valid encoders"):
    build_encoder("resnet9000")


def test_segnet_decoder_unpools_at_the_encoder_argmax_positions():
  """The decoder's unpooled map is NumPy pool-with-indices + unpool of the
  encoder output: values at the argmax positions, zeros elsewhere."""
  from test_ops_pooling import np_pool, np_unpool
  model = vm.create("segnet", stage_sizes=(1,), widths=(3,), num_classes=2)
  x = jax.random.normal(jax.random.key(0), (1, 6, 8, 3))
  variables = jax.jit(model.init)(jax.random.key(1, impl="rbg"), x)
  _, inter = jax.jit(functools.partial(
      model.apply, capture_intermediates=lambda m, _: m.name == "conv1_1",
      mutable=["intermediates"]))(variables, x)
  enc = np.asarray(inter["intermediates"]["conv1_1"]["__call__"][0])
  unpooled = np.asarray(inter["intermediates"]["unpool1"][0])
  vals, idx = np_pool(enc, 2, 2)
  np.testing.assert_array_equal(unpooled, np_unpool(vals, idx, 6, 8))
  assert (unpooled != 0).sum() > 0.5 * vals.size  # not trivially all-zero.


def test_fcn_skips_start_at_zero_so_8s_is_upsampled_32s_scores():
  """New score layers start at zero (Long et al.): at init FCN-8s output is
  just its stride-32 scores upsampled 2×, 2×, 8× — nothing from the skips."""
  small = dict(encoder_kwargs={"stage_sizes": (1,) * 5,
                               "widths": (4, 4, 8, 8, 8)}, fc_width=8,
               fc_kernel=3)
  model = vm.create("fcn8s", **small)
  x = jax.random.normal(jax.random.key(0), (1, 40, 36, 3))
  variables = jax.jit(model.init)(jax.random.key(1, impl="rbg"), x)
  y8, inter = jax.jit(functools.partial(
      model.apply, capture_intermediates=lambda m, _: m.name == "score_fr",
      mutable=["intermediates"]))(variables, x)
  score = inter["intermediates"]["score_fr"]["__call__"][0]
  assert score.shape == (1, 2, 2, 21)  # 40×36 padded to 64×64, stride 32.
  ref = score
  for size in ((4, 4), (8, 8), (64, 64)):
    ref = layers.resize_bilinear(ref, size)
  assert y8.shape == (1, 40, 36, 21)
  np.testing.assert_allclose(np.asarray(y8), np.asarray(ref[:, :40, :36]),
                             atol=1e-5)
  flat = jax.tree_util.tree_leaves_with_path(variables["params"])
  skip_kernels = [v for p, v in flat if "score_stride" in jax.tree_util.
                  keystr(p) and "kernel" in jax.tree_util.keystr(p)]
  assert len(skip_kernels) == 2 and all(np.all(np.asarray(k) == 0)
                                        for k in skip_kernels)


def test_axis_name_averages_batch_statistics_across_devices():
  """With axis_name='batch' under pmap, BN statistics are the global ones."""
  model = vm.create("unet_small", features=(4, 8), num_classes=2)
  x = jax.random.normal(jax.random.key(0), (8, 2, 8, 8, 3)) * 3 + 1
  variables = jax.jit(model.init)(jax.random.key(1, impl="rbg"), x[0])
  pm = model.clone(axis_name="batch")

  def stats(v, xb):
    return pm.apply(v, xb, train=True, mutable=["batch_stats"])[1]

  dist = jax.pmap(stats, axis_name="batch", in_axes=(None, 0))(variables, x)
  full = jax.jit(functools.partial(model.apply, train=True,
                                   mutable=["batch_stats"]))(
      variables, x.reshape(16, 8, 8, 3))[1]
  got = jax.tree_util.tree_map(lambda a: np.asarray(a[0]), dist)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4,
                                              atol=1e-5), got, full)

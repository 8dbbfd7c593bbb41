"""Small layers and shape helpers shared by the model zoo.

Everything here is a pure function or a stateless Flax module with static
shapes, so it jits on every backend. Formulations chosen for speed, each
tested equal to the textbook form in tests/test_models_layers.py:
  `UpConv2x`: a learned 2×2 stride-2 transposed convolution as a 1×1
    convolution to 4·F channels + depth-to-space (weights mapped by
    `conv_transpose_kernel_to_1x1`); XLA:CPU runs the transposed form ~30×
    slower forward+backward.
  `shifted_conv_general_dilated`: depthwise convolutions as k·k strided
    slices, 2-10× faster than grouped-convolution gradients on XLA:CPU.
  `adaptive_avg_pool`: two matmuls with static averaging matrices.
"""
from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ModuleDef = Any
Dtype = Any
IntPair = Union[int, Tuple[int, int]]


def _pair(v: IntPair) -> Tuple[int, int]:
  return (v, v) if isinstance(v, int) else tuple(v)


def check_images(images: jax.Array, model: str,
                 channels: Optional[int] = None) -> None:
  """Raises ValueError unless `images` is float [B, H, W, C] (C == channels).

  Trace-time checks only (shape and dtype), so free under jit. Integer and
  bool images (e.g. raw uint8 pixels) are rejected: the zoo expects images
  already normalized with the dataset mean/std, and silently casting 0..255
  would train on a different input distribution. Any float width is
  accepted and cast by the model to its compute `dtype` (float64 arrays,
  which exist only with jax_enable_x64, included; NumPy float64 passed
  without x64 already becomes float32 in jnp). Whether C matches the
  channels the params were built with is checked by `ZooModule.apply`.
  """
  dtype = np.dtype(images.dtype)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
        f"{model}: expected float images normalized as in "
        f"config.dataset.mean/std; got {dtype.name}")
  if images.ndim != 4:
    raise ValueError(
        f"{model}: images must have rank 4 [B, H, W, C], got shape "
        f"{tuple(images.shape)} (rank {images.ndim})")
  if channels is not None and images.shape[-1] != channels:
    raise ValueError(
        f"{model}: expected {channels} input channels, got images of shape "
        f"{tuple(images.shape)} with {images.shape[-1]} channels")


class ZooModule(nn.Module):
  """Base of every zoo module: the fields the trainers rely on.

  `axis_name` goes to every BatchNorm (a pmap trainer sets it with
  `model.clone(axis_name='batch')` to average batch statistics across
  devices; harmless on models without BatchNorm), `dtype` is the compute
  dtype and `param_dtype` the parameters'. Keyword-only, so subclasses keep
  their own positional fields.

  Input checks shared by the zoo (besides `check_images` in each model):
  a `num_classes` field must be a positive int (checked at construction),
  and `apply` compares the channels reaching the first convolution with the
  input channels its kernel was built for, so a mismatch is a ValueError
  naming both rather than Flax's ScopeParamShapeError.
  """
  _: dataclasses.KW_ONLY
  axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def __post_init__(self) -> None:
    n = getattr(self, "num_classes", None)
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer))
                          or n < 1):
      raise ValueError(f"{type(self).__name__}: num_classes={n!r}; expected a "
                       "positive int (a class axis of size 0 has no logits)")
    super().__post_init__()

  @nn.nowrap
  def apply(self, variables: Any, *args: Any, **kwargs: Any) -> Any:
    """`nn.Module.apply`, first checking the input channels (see class doc).

    The first `nn.Conv` called is the one that sees the images (every zoo
    model starts with one), so it is intercepted once: when its kernel
    already exists (i.e. not while initializing) and was built for K input
    channels, inputs with C != K channels raise ValueError. Trace-time only.
    """
    seen = []

    def first_conv(next_fun, call_args, call_kwargs, context):
      conv = context.module
      if (not seen and isinstance(conv, nn.Conv) and context.method_name == "__call__"
          and call_args and conv.has_variable("params", "kernel")):
        seen.append(True)
        kernel_shape = np.shape(nn.meta.unbox(conv.get_variable("params", "kernel")))
        built = kernel_shape[-2] * conv.feature_group_count
        got = np.shape(call_args[0])
        if got and got[-1] != built:
          # Name the caller's image shape (the conv may see a padded copy).
          shown = np.shape(args[0]) if args and np.shape(args[0])[-1:] == got[-1:] else got
          raise ValueError(
              f"{type(self).__name__}: expected images with {built} channels, as the "
              f"params were built (first convolution {'/'.join(conv.path)!r} has kernel "
              f"shape {tuple(kernel_shape)}); got images of shape {tuple(shown)} with "
              f"{got[-1]} channels")
      return next_fun(*call_args, **call_kwargs)

    with nn.intercept_methods(first_conv):
      return super().apply(variables, *args, **kwargs)


def batch_norm(train: bool, axis_name: Optional[str], dtype: Dtype,
               param_dtype: Dtype) -> ModuleDef:
  """The project's BatchNorm: momentum 0.9, epsilon 1e-5, optional pmap axis."""
  return functools.partial(
      nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
      axis_name=axis_name, dtype=dtype, param_dtype=param_dtype)


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
  """[B, H, W, r·r·C] -> [B, r·H, r·W, C]; channel index is (row, col, c)."""
  return einops.rearrange(x, "b h w (r1 r2 c) -> b (h r1) (w r2) c",
                          r1=block, r2=block)


def space_to_depth(x: jax.Array, block: int) -> jax.Array:
  """Inverse of `depth_to_space`: [B, r·H, r·W, C] -> [B, H, W, r·r·C]."""
  return einops.rearrange(x, "b (h r1) (w r2) c -> b h w (r1 r2 c)",
                          r1=block, r2=block)


def conv_transpose_kernel_to_1x1(kernel: jax.Array) -> jax.Array:
  """Maps a flax `nn.ConvTranspose` 2×2/stride-2 kernel to `UpConv2x` form.

  Args:
    kernel: [2, 2, C, F] kernel of `nn.ConvTranspose(F, (2, 2), (2, 2))`
      (flax default `transpose_kernel=False`, which flips the spatial taps
      relative to PyTorch's `ConvTranspose2d` layout).
  Returns:
    [1, 1, C, 4·F] kernel for the 1×1 convolution in `UpConv2x`.
  """
  flipped = kernel[::-1, ::-1]  # lax.conv_transpose correlates, i.e. flips.
  return einops.rearrange(flipped, "a b c f -> 1 1 c (a b f)")


def pad_to_multiple(x: jax.Array, multiple: int, mode: str = "constant"
                    ) -> Tuple[jax.Array, Tuple[int, int]]:
  """Pads H and W at the bottom/right up to a multiple of `multiple`.

  Returns the padded [B, H', W', C] array and the original (H, W) so the
  caller can `crop_to` the output back to the input resolution.
  """
  h, w = x.shape[1:3]
  ph, pw = -h % multiple, -w % multiple
  if ph or pw:
    x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)
  return x, (h, w)


def crop_to(x: jax.Array, size: Tuple[int, int]) -> jax.Array:
  """Keeps the top-left `size` = (H, W) of a [B, H', W', C] array."""
  return x[:, :size[0], :size[1]]


def center_crop(x: jax.Array, size: Tuple[int, int]) -> jax.Array:
  """Crops the centre (H, W) of [B, H', W', C] (U-Net's crop-and-copy)."""
  top = (x.shape[1] - size[0]) // 2
  left = (x.shape[2] - size[1]) // 2
  return x[:, top:top + size[0], left:left + size[1]]


def resize_bilinear(x: jax.Array, size: Tuple[int, int]) -> jax.Array:
  """Bilinear resize of [B, H, W, C] to [B, size[0], size[1], C].

  Half-pixel centres (PyTorch `align_corners=False`); computed in float32 so
  bfloat16 models do not lose the interpolation weights.
  """
  out = jax.image.resize(x.astype(jnp.float32),
                         (x.shape[0], size[0], size[1], x.shape[3]),
                         method="bilinear")
  return out.astype(x.dtype)


def _adaptive_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] averaging matrix with PyTorch's adaptive pool windows."""
  m = np.zeros((n_out, n_in), np.float32)
  for i in range(n_out):
    start = (i * n_in) // n_out
    end = -(-((i + 1) * n_in) // n_out)
    m[i, start:end] = 1.0 / (end - start)
  return m


def adaptive_avg_pool(x: jax.Array, size: IntPair) -> jax.Array:
  """PyTorch `AdaptiveAvgPool2d`: [B, H, W, C] -> [B, size[0], size[1], C].

  Written as two small matmuls with static matrices (no gather/scatter), so
  it is fast and differentiable everywhere and accepts any H, W.
  """
  oh, ow = _pair(size)
  mh = jnp.asarray(_adaptive_matrix(x.shape[1], oh), x.dtype)
  mw = jnp.asarray(_adaptive_matrix(x.shape[2], ow), x.dtype)
  return jnp.einsum("oh,bhwc,pw->bopc", mh, x, mw)


_NHWC = ("NHWC", "HWIO", "NHWC")


def _explicit_pads(padding: Any, in_hw: Sequence[int], k_hw: Sequence[int],
                   strides: Sequence[int]) -> Optional[Tuple[Tuple[int, int], ...]]:
  """lax padding (string or pairs) as ((top, bottom), (left, right)), or
  None for a form this module does not handle (e.g. 'SAME_LOWER')."""
  if isinstance(padding, str):
    if padding not in ("SAME", "VALID"):
      return None
    padding = jax.lax.padtype_to_pads(in_hw, k_hw, strides, padding)
  return tuple((int(lo), int(hi)) for lo, hi in padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _pointwise_conv(x: jax.Array, w: jax.Array, strides: Tuple[int, int],
                    precision: Any) -> jax.Array:
  """1×1 NHWC convolution without padding: [B,H,W,C] × [1,1,C,F] ->
  [B,⌈H/s⌉,⌈W/s⌉,F], as a strided slice and a matmul over C."""
  xs = x[:, ::strides[0], ::strides[1]]
  return jnp.einsum("bhwc,cf->bhwf", xs, w[0, 0], precision=precision)


def _pointwise_conv_fwd(x, w, strides, precision):
  return _pointwise_conv(x, w, strides, precision), (x, w)


def _pointwise_conv_bwd(strides, precision, res, g):
  # Written by hand (not jax.vjp of the einsum) so that both gradients are
  # plain GEMMs in NHWC order, with the stride's zeros put back by an
  # interior pad rather than a scatter.
  x, w = res
  (sh, sw), (h, wd), (ho, wo) = strides, x.shape[1:3], g.shape[1:3]
  xs = x[:, ::sh, ::sw]
  dw = jnp.einsum("bhwc,bhwf->cf", xs, g, precision=precision)
  dxs = jnp.einsum("bhwf,cf->bhwc", g, w[0, 0], precision=precision)
  dx = jax.lax.pad(dxs.astype(x.dtype), jnp.zeros((), x.dtype),
                   ((0, 0, 0), (0, h - (ho - 1) * sh - 1, sh - 1),
                    (0, wd - (wo - 1) * sw - 1, sw - 1), (0, 0, 0)))
  return dx, dw[None, None].astype(w.dtype)


_pointwise_conv.defvjp(_pointwise_conv_fwd, _pointwise_conv_bwd)


def gemm_conv_general_dilated(lhs: jax.Array, rhs: jax.Array,
                              window_strides: Sequence[int], padding: Any,
                              lhs_dilation: Any = None,
                              rhs_dilation: Any = None,
                              dimension_numbers: Any = None,
                              feature_group_count: int = 1,
                              batch_group_count: int = 1,
                              precision: Any = None,
                              preferred_element_type: Any = None) -> jax.Array:
  """Drop-in `lax.conv_general_dilated` computing dense 1×1 convolutions as
  GEMMs: pass it as `nn.Conv(conv_general_dilated=...)`.

  For an NHWC/HWIO convolution with a [1, 1, C, F] kernel, no padding, no
  groups and no dilation (any stride), the forward pass is a strided slice
  and a matmul over C, and its VJP (`_pointwise_conv_bwd`) computes
  dW = xᵀ·g and dx = g·Wᵀ as matmuls — the same function and gradients
  (tests/test_models_layers.py checks both against `lax` and NumPy). Every
  other convolution goes to `lax.conv_general_dilated` unchanged.
  """
  nhwc = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  dn = (None if dimension_numbers is None else  # None means NCHW in lax.
        jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                       dimension_numbers))
  plain = all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
  if (lhs.ndim == 4 and dn == nhwc and rhs.shape[:2] == (1, 1) and plain
      and feature_group_count == 1 and batch_group_count == 1
      and preferred_element_type is None):
    pads = _explicit_pads(padding, lhs.shape[1:3], (1, 1), window_strides)
    if pads == ((0, 0), (0, 0)):
      strides = tuple(int(s) for s in window_strides)
      out_dtype = jnp.result_type(lhs, rhs)
      return _pointwise_conv(lhs.astype(out_dtype), rhs.astype(out_dtype),
                             strides, precision)
  return jax.lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
      dimension_numbers, feature_group_count, batch_group_count,
      precision=precision, preferred_element_type=preferred_element_type)


def conv_general_dilated(*args: Any, **kwargs: Any) -> jax.Array:
  """The zoo's convolution: `gemm_conv_general_dilated` on CPU, `lax`
  elsewhere (GPU/TPU convolution libraries handle 1×1 convolutions well).

  The one switch for the zoo's convolution formulation: `conv` and
  `ConvNormAct` call it by name at trace time.
  """
  if jax.default_backend() == "cpu":
    return gemm_conv_general_dilated(*args, **kwargs)
  return jax.lax.conv_general_dilated(*args, **kwargs)


def conv(features: int, kernel_size: Sequence[int], *args: Any,
         **kwargs: Any) -> nn.Conv:
  """`nn.Conv` with the zoo's convolution (`conv_general_dilated`); same
  parameters, names and values."""
  kwargs.setdefault("conv_general_dilated", _zoo_conv)
  return nn.Conv(features, kernel_size, *args, **kwargs)


def _zoo_conv(*args: Any, **kwargs: Any) -> jax.Array:
  # Looks `conv_general_dilated` up at call time, so benchmarks/conv_impl.py
  # can compare it with `lax` by patching the one module attribute.
  return conv_general_dilated(*args, **kwargs)


class ConvNormAct(ZooModule):
  """Conv -> optional norm -> optional activation. [B,H,W,C] -> [B,H',W',F].

  `norm` is an already-configured constructor (e.g. `batch_norm(...)`); when
  given, the convolution has no bias because the norm's shift replaces it.
  """
  features: int
  kernel_size: IntPair = 3
  strides: IntPair = 1
  padding: Any = "SAME"
  dilation: IntPair = 1
  groups: int = 1
  norm: Optional[ModuleDef] = None
  act: Optional[Callable] = nn.relu
  use_bias: Optional[bool] = None
  norm_scale_init: Callable = nn.initializers.ones
  kernel_init: Callable = nn.initializers.variance_scaling(
      2.0, "fan_out", "normal")
  # None: the zoo's `conv_general_dilated`; e.g. depthwise_conv_impl('auto').
  conv_impl: Optional[Callable] = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    use_bias = self.norm is None if self.use_bias is None else self.use_bias
    x = nn.Conv(self.features, _pair(self.kernel_size), _pair(self.strides),
                padding=self.padding, kernel_dilation=_pair(self.dilation),
                feature_group_count=self.groups, use_bias=use_bias,
                kernel_init=self.kernel_init,
                conv_general_dilated=self.conv_impl or _zoo_conv,
                dtype=self.dtype,
                param_dtype=self.param_dtype, name="conv")(x)
    if self.norm is not None:
      x = self.norm(scale_init=self.norm_scale_init, name="norm")(x)
    if self.act is not None:
      x = self.act(x)
    return x


def shifted_conv_general_dilated(lhs: jax.Array, rhs: jax.Array,
                                 window_strides: Sequence[int], padding: Any,
                                 lhs_dilation: Any = None,
                                 rhs_dilation: Any = None,
                                 dimension_numbers: Any = None,
                                 feature_group_count: int = 1,
                                 **kwargs: Any) -> jax.Array:
  """Drop-in `lax.conv_general_dilated` that computes depthwise convs by
  slicing: pass it as `nn.Conv(conv_general_dilated=...)`.

  For an NHWC depthwise convolution (feature_group_count == C_in == C_out,
  kernel [k, k, 1, C], no dilation) it sums k·k strided slices of the padded
  input times per-channel weights — the same function, which XLA:CPU runs
  forward+backward 2× (stride 1) to 10× (stride 2) faster than its grouped
  convolution gradients (tests/test_models_layers.py checks values and
  gradients against `lax`). Every other convolution goes to `lax`.
  """
  c = lhs.shape[-1]
  nhwc = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                        ("NHWC", "HWIO", "NHWC"))
  dn = (None if dimension_numbers is None else  # None means NCHW in lax.
        jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                       dimension_numbers))
  undilated = all(d == 1 for d in (*(lhs_dilation or ()),
                                   *(rhs_dilation or ())))
  if not (lhs.ndim == 4 and feature_group_count == c > 1 and undilated
          and rhs.shape[2:] == (1, c) and dn == nhwc):
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
        dimension_numbers, feature_group_count, **kwargs)
  kh, kw = rhs.shape[:2]
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], (kh, kw),
                                      window_strides, padding)
  (sh, sw), ((pt, pb), (pl, pr)) = window_strides, padding
  x = jnp.pad(lhs, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  out = jnp.zeros((lhs.shape[0], ho, wo, c), jnp.result_type(lhs, rhs))
  for i in range(kh):
    for j in range(kw):
      out = out + x[:, i:i + sh * (ho - 1) + 1:sh,
                    j:j + sw * (wo - 1) + 1:sw] * rhs[i, j, 0]
  return out


def depthwise_conv_impl(impl: str) -> Optional[Callable]:
  """`nn.Conv(conv_general_dilated=...)` for impl 'conv' | 'shift' | 'auto'.

  'auto' slices on CPU and keeps XLA's grouped convolution on GPU/TPU,
  whose convolution libraries handle depthwise convolutions well.
  """
  if impl == "auto":
    impl = "shift" if jax.default_backend() == "cpu" else "conv"
  if impl not in ("conv", "shift"):
    raise ValueError(f"depthwise impl must be 'auto', 'conv' or 'shift', "
                     f"got {impl!r}")
  return shifted_conv_general_dilated if impl == "shift" else None


class UpConv2x(ZooModule):
  """2× upsampling to `features` channels: [B, H, W, C] -> [B, 2H, 2W, F].

  method='learned': the 2×2 stride-2 transposed convolution of U-Net/SegNet
    decoders, computed as a 1×1 conv to 4·F channels + depth_to_space (the
    same function and the same C·4·F + F parameters as `nn.ConvTranspose`,
    but fast on XLA:CPU). The bias is one F-vector shared by all four output
    positions, exactly as in a transposed convolution.
  method='bilinear': bilinear 2× resize followed by a 1×1 conv to F channels.
  """
  features: int
  method: str = "learned"
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, _ = x.shape
    if self.method == "learned":
      # nn.Conv, not the zoo's GEMM form: the quickstart U-Net's numbers are
      # measured with lax here, and the GEMM form's gain on unet_small was
      # within the noise (benchmarks/conv_impl.py: 1.10, range 0.83-1.58).
      y = nn.Conv(4 * self.features, (1, 1), use_bias=False, dtype=self.dtype,
                  param_dtype=self.param_dtype, name="conv")(x)
      y = depth_to_space(y, 2)
      if self.use_bias:
        bias = self.param("bias", nn.initializers.zeros, (self.features,),
                          self.param_dtype)
        y = y + bias.astype(y.dtype)
      return y
    if self.method == "bilinear":
      y = resize_bilinear(x, (2 * h, 2 * w))
      return nn.Conv(self.features, (1, 1), use_bias=self.use_bias,
                     dtype=self.dtype, param_dtype=self.param_dtype,
                     name="conv")(y)
    raise ValueError(
        "UpConv2x: method must be 'learned' or 'bilinear', got "
        f"{self.method!r}")


def max_pool(x: jax.Array, window: int = 2, stride: Optional[int] = None,
             padding: Any = "VALID") -> jax.Array:
  """Max pool [B,H,W,C] with a square window (floor mode for 'VALID').

  Same values as `flax.linen.max_pool`, written as an elementwise maximum of
  the window's k·k strided slices because XLA:CPU differentiates
  `reduce_window` max with select-and-scatter, several times slower
  (benchmarks/pooling.py). (A reshape + multi-axis `max` reduction was as
  fast but gave NaN gradients in U-Nets compiled at XLA optimization level
  0.) On ties the gradient is split among the tied inputs instead of going
  to the first one: both are valid subgradients.
  """
  s = window if stride is None else stride
  k = window
  if isinstance(padding, str):
    if padding == "VALID":
      pads = [(0, 0), (0, 0)]
    elif padding == "SAME":
      pads = []
      for n in x.shape[1:3]:
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    else:
      raise ValueError(f"max_pool: padding must be 'VALID', 'SAME' or pairs, "
                       f"got {padding!r}")
  else:
    pads = [tuple(p) for p in padding]
  if any(p != (0, 0) for p in pads):
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
  b, h, w, c = x.shape
  oh, ow = (h - k) // s + 1, (w - k) // s + 1
  if oh < 1 or ow < 1:
    raise ValueError(f"max_pool: window {k} does not fit a padded "
                     f"{h}x{w} input")
  if k == s:  # non-overlapping: the taps are views of one reshape
    x = x[:, :oh * k, :ow * k].reshape(b, oh, k, ow, k, c)
    taps = [x[:, :, i, :, j] for i in range(k) for j in range(k)]
  else:
    taps = [x[:, i:i + (oh - 1) * s + 1:s, j:j + (ow - 1) * s + 1:s]
            for i in range(k) for j in range(k)]
  return functools.reduce(jnp.maximum, taps)


def max_pool_ceil(x: jax.Array, window: int = 2,
                  stride: Optional[int] = None) -> jax.Array:
  """PyTorch `ceil_mode=True` max pool: output side ceil((H - k) / s) + 1.

  Pads the bottom/right with -inf only where the last window would be cut
  off, so even sizes give exactly the floor-mode result and a stride-s
  feature of an H-pixel image always has ceil(H / s) rows.
  """
  s = window if stride is None else stride
  pads = [(0, (-(n - window) % s) if n > window else window - n)
          for n in x.shape[1:3]]
  return max_pool(x, window, s, padding=pads)


def count_params(variables_or_shapes: Any) -> int:
  """Number of trainable parameters (the 'params' collection only).

  Accepts real variables or the ShapeDtypeStruct tree of `jax.eval_shape`,
  so big models are counted without allocating them. BatchNorm running
  statistics are excluded, matching PyTorch's `parameters()`.
  """
  params = variables_or_shapes.get("params", variables_or_shapes)
  return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


class ModelSpec(NamedTuple):
  """One registry entry; each model file exports a `REGISTRY` of these.

  factory:    `functools.partial` of the module class; `create` calls it with
              the user's keyword overrides.
  task:       'classification' | 'segmentation' | 'localization' |
              'detection' | 'backbone'.
  input_size: (H, W) the architecture was published at (benchmark default).
  smoke:      field overrides for a tiny variant with the same code paths,
              used by the shared smoke test and laptop demos.
  smoke_size: (H, W) for that test; odd sizes for the dense models.
  in_channels: input channels the published model takes.
  """
  factory: Callable[..., nn.Module]
  task: str
  input_size: Tuple[int, int] = (224, 224)
  smoke: Mapping[str, Any] = types.MappingProxyType({})
  smoke_size: Tuple[int, int] = (33, 47)
  in_channels: int = 3


def frozen(**kwargs: Any) -> Mapping[str, Any]:
  """Read-only kwargs mapping for `ModelSpec.smoke` (keeps the registry
  immutable)."""
  return types.MappingProxyType(kwargs)

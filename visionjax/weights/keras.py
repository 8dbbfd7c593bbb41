"""Keras applications (ResNet50, VGG16) -> visionjax variables.

    conv = weights.from_keras("resnet50", keras.applications.ResNet50())
    conv = weights.from_keras("vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels.h5")

`source` is a built `keras.Model` from `keras.applications` (with its
classifier: `include_top=True`) or a weights file that such a model loads.

  resnet50 -> visionjax resnet50 with `stride_in_1x1=True`: Keras' ResNet50
              is the original ResNet v1, striding in each stage's first 1×1
              convolution (torchvision's, v1.5, strides in the 3×3).
              Keras' convolutions have biases in front of BatchNorm and its
              BatchNorm epsilon is 1.001e-5; both are folded into the
              running statistics (mean' = mean - bias, var' = var +
              1.001e-5 - 1e-5), exact up to float rounding, so the
              visionjax model keeps its bias-free convs and epsilon 1e-5.
  vgg16    -> visionjax vgg16 with `ceil_mode=False` (Keras pools in floor
              mode). Keras flattens pool5 as (H, W, C), as visionjax does,
              so fc6 needs no reordering; its fixed 224×224 classifier input
              is the 7×7 map visionjax's adaptive pool passes through as is.

Both Keras models take BGR images minus the Caffe ImageNet means
(`preprocess_input(mode='caffe')`). The converted first convolution has its
input channels reversed, so the visionjax models take RGB: the returned
`Preprocessing` is 0-255 RGB minus (123.68, 116.779, 103.939), std 1.
Keras' own classifier ends in a softmax by default; visionjax returns the
logits before it.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

import numpy as np

from visionjax.weights.core import (
  Converted,
  Preprocessing,
  Provenance,
  VariableFiller,
  abstract_variables,
  sha256_of,
)

_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
KERAS_MODELS = {
    # name: (keras.applications attribute, published weights file)
    "resnet50": ("ResNet50",
                 _BASE + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5"),
    "vgg16": ("VGG16",
              _BASE + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5"),
}
# Caffe-mode means, BGR as Keras subtracts them.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_LICENSE = {
    "resnet50": "Keras' code is Apache-2.0. Keras states that its ResNet50 "
                "weights are ported from those released by Kaiming He under "
                "the MIT license. Training data: ImageNet-1K (ILSVRC 2012), "
                "whose own terms may restrict use.",
    "vgg16": "Keras' code is Apache-2.0. Keras states that its VGG16 weights "
             "are ported from those released by the Visual Geometry Group "
             "(Oxford) under the Creative Commons Attribution License. "
             "Training data: ImageNet-1K (ILSVRC 2012), whose own terms may "
             "restrict use.",
}
_FLAX_EPS = 1e-5  # visionjax's BatchNorm epsilon (layers.batch_norm).


def _weights(model: Any) -> Dict[str, Dict[str, np.ndarray]]:
  """{layer name: {variable name: array}} of a Keras model."""
  out = {}
  for layer in model.layers:
    if layer.weights:
      out[layer.name] = {w.path.split("/")[-1]: np.asarray(w.numpy(),
                                                           np.float32)
                         for w in layer.weights}
  return out


def _keras_model(name: str, source: Any) -> Any:
  import keras  # pylint: disable=import-outside-toplevel
  if isinstance(source, keras.Model):
    return source
  if isinstance(source, (str, os.PathLike)):
    return getattr(keras.applications, KERAS_MODELS[name][0])(
        weights=os.fspath(source), classifier_activation=None)
  raise TypeError(f"expected a keras.Model or a weights file path, got "
                  f"{type(source).__name__}")


def _resnet50(layers: Dict[str, Dict[str, np.ndarray]], f: VariableFiller,
              epsilon: Dict[str, float]) -> None:
  def conv_bn(dst: str, key: str, bgr: bool = False) -> None:
    conv, bn = layers.pop(f"{key}_conv"), layers.pop(f"{key}_bn")
    kernel = conv["kernel"][:, :, ::-1] if bgr else conv["kernel"]
    f.set(f"params/{dst}/conv/kernel", kernel)
    # BN(conv + b) = BN'(conv): the bias moves into the running mean, the
    # epsilon difference into the running variance.
    f.set(f"params/{dst}/norm/scale", bn["gamma"])
    f.set(f"params/{dst}/norm/bias", bn["beta"])
    f.set(f"batch_stats/{dst}/norm/mean", bn["moving_mean"] - conv["bias"])
    f.set(f"batch_stats/{dst}/norm/var",
          bn["moving_variance"] + (epsilon[f"{key}_bn"] - _FLAX_EPS))

  conv_bn("encoder/stem", "conv1", bgr=True)
  for stage in range(2, 6):
    block = 1
    while f"conv{stage}_block{block}_1_conv" in layers:
      dst = f"encoder/layer{stage - 1}_{block - 1}"
      for k in (1, 2, 3):
        conv_bn(f"{dst}/conv{k}", f"conv{stage}_block{block}_{k}")
      if f"conv{stage}_block{block}_0_conv" in layers:
        conv_bn(f"{dst}/downsample", f"conv{stage}_block{block}_0")
      block += 1
  fc = layers.pop("predictions")
  f.set("params/fc/kernel", fc["kernel"])
  f.set("params/fc/bias", fc["bias"])


def _vgg16(layers: Dict[str, Dict[str, np.ndarray]], f: VariableFiller
           ) -> None:
  for stage, n in enumerate((2, 2, 3, 3, 3), 1):
    for j in range(1, n + 1):
      conv = layers.pop(f"block{stage}_conv{j}")
      kernel = conv["kernel"][:, :, ::-1] if stage == j == 1 else conv[
          "kernel"]
      f.set(f"params/features/conv{stage}_{j}/conv/kernel", kernel)
      f.set(f"params/features/conv{stage}_{j}/conv/bias", conv["bias"])
  for src, dst in (("fc1", "fc6"), ("fc2", "fc7"), ("predictions", "fc8")):
    dense = layers.pop(src)
    f.set(f"params/{dst}/kernel", dense["kernel"])
    f.set(f"params/{dst}/bias", dense["bias"])


def from_keras(name: str, source: Any, *, weights: Optional[str] = None
               ) -> Converted:
  """Converts Keras application `name` ('resnet50' | 'vgg16').

  Args:
    name: a key of `KERAS_MODELS`.
    source: a `keras.applications` model with its classifier, or a weights
      file (.h5) such a model loads.
    weights: what the weights are, for provenance ('imagenet' for Keras'
      published ones); default 'imagenet' when `source` is the published
      file name, else unknown.
  """
  if name not in KERAS_MODELS:
    raise ValueError(f"no Keras converter for {name!r}; supported: "
                     f"{', '.join(sorted(KERAS_MODELS))}")
  import keras  # pylint: disable=import-outside-toplevel
  file = (os.fspath(source) if isinstance(source, (str, os.PathLike))
          else None)
  model = _keras_model(name, source)
  layers = _weights(model)
  out_key = "predictions"
  if out_key not in layers:
    raise ValueError(f"{name}: the Keras model has no 'predictions' layer; "
                     "build it with include_top=True")
  num_classes = int(layers[out_key]["bias"].shape[0])
  kwargs: Dict[str, Any] = {"num_classes": num_classes}
  if name == "resnet50":
    kwargs["stride_in_1x1"] = True
  else:
    kwargs["ceil_mode"] = False
  f = VariableFiller(abstract_variables(name, kwargs))
  if name == "resnet50":
    eps = {l.name: float(l.epsilon) for l in model.layers
           if hasattr(l, "epsilon")}
    _resnet50(layers, f, eps)
  else:
    _vgg16(layers, f)
  if layers:
    raise ValueError(f"{len(layers)} Keras layers have no place in the "
                     f"visionjax model: {sorted(layers)[:5]}")
  variables = f.done()

  url = KERAS_MODELS[name][1]
  if weights is None and file and os.path.basename(file) == os.path.basename(
      url):
    weights = "imagenet"
  known = weights == "imagenet"
  notes = ["first conv's input channels reversed: takes RGB (Keras: BGR)",
           "returns logits (Keras' classifier applies a softmax)",
           "Keras' examples resize images straight to 224×224 "
           "(keras.utils.load_img, nearest neighbour by default)"]
  if name == "resnet50":
    notes.append("conv biases and BatchNorm epsilon 1.001e-5 folded into "
                 "the running statistics")
  if not known:
    notes.append("origin of the weights unknown: preprocessing is that of "
                 "Keras' ImageNet weights")
  provenance = Provenance(
      source="keras", source_model=KERAS_MODELS[name][0],
      weights=weights, url=url if known else None, file=file,
      sha256=sha256_of(file) if file else None,
      dataset="ImageNet-1K (ILSVRC 2012)" if known else None,
      license=_LICENSE[name],
      library_versions={"keras": keras.__version__},
      notes=tuple(notes))
  preprocessing = Preprocessing(
      mean=tuple(reversed(CAFFE_MEAN_BGR)), std=(1.0, 1.0, 1.0),
      value_range=(0.0, 255.0), input_size=(224, 224), resize_size=None,
      interpolation="nearest")
  return Converted(name, kwargs, variables, preprocessing, provenance)


def download(name: str) -> Any:
  """Keras' ImageNet model (downloads its weights; needs internet)."""
  import keras  # pylint: disable=import-outside-toplevel
  return getattr(keras.applications, KERAS_MODELS[name][0])(
      weights="imagenet", classifier_activation=None)

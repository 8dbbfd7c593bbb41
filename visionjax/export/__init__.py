"""Export a trained model for serving: StableHLO, TF SavedModel and ONNX.

Every exporter takes a Flax module and its variables (``{'params': ...,
'batch_stats': ...}``), independent of the training loop, and exports the
inference function

    images [B, H, W, C] (float32, normalized as in training, NHWC)
        -> model.apply(variables, images, train=False)

optionally followed by SSD post-processing
(:func:`visionjax.detection.postprocessing.batch_postprocess`), which turns
``{'logits', 'offsets', 'anchors'}`` into padded detections ``{'boxes' [B, D, 4],
'scores' [B, D], 'classes' int32 [B, D], 'valid' bool [B, D]}``.

The batch dimension stays symbolic (``input_shape=(None, H, W, C)``): one
artifact serves any batch size. H, W and C are fixed, because the models
derive static things from them (flattened dense heads, SSD default boxes,
U-Net padding).

Formats:
  :func:`export_stablehlo`   serialized ``jax.export.Exported`` (bytes); the
      variables are baked into the module as constants. Reload with
      :func:`load_stablehlo` (JAX only, same or newer JAX within the
      ``jax.export`` compatibility window).
  :func:`export_saved_model` TF SavedModel through ``jax2tf`` (native
      serialization: the StableHLO runs inside TF's ``XlaCallModule`` op);
      the variables are ``tf.Variable``s in the checkpoint, so a large model
      does not hit the 2 GiB GraphDef limit. Serving signature
      ``serving_default(images) -> {name: tensor}``.
  :func:`export_onnx`        ONNX through ``jax2onnx`` (``pip install
      visionjax[export]``); variables are initializers. Reload with
      :func:`load_onnx` (onnxruntime).

StableHLO and the SavedModel are compiled for ``platforms`` (default: the
exporting machine's backend, so a CPU export runs only on CPU); pass e.g.
``platforms=('cpu', 'cuda')`` to serve the same artifact on GPU.

Output names (SavedModel signature, ONNX outputs): the dict keys of the
model's output, or ``'output'`` for a single array. The loaders give back
that structure: a dict, or one array.
"""
from __future__ import annotations

from visionjax.export._common import (
  DETECTION_KEYS,
  INPUT_NAME,
  SINGLE_OUTPUT,
  inference_fn,
  output_names,
)
from visionjax.export.onnx import export_onnx, load_onnx
from visionjax.export.saved_model import export_saved_model, load_saved_model
from visionjax.export.stablehlo import export_stablehlo, load_stablehlo

__all__ = ["inference_fn", "output_names", "export_stablehlo", "load_stablehlo",
           "export_saved_model", "load_saved_model", "export_onnx", "load_onnx",
           "INPUT_NAME", "SINGLE_OUTPUT", "DETECTION_KEYS"]

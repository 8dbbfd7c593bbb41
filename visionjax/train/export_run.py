"""Export a trained run: `visionjax.export` applied to one of a workdir's checkpoints.

The exported function takes *normalized* float images ``[B, H, W, C]`` at
the run's input size (the export formats fix H and W; B stays symbolic
unless ``batch`` is given); ``export.json`` beside the artifact records what
a server needs to prepare its inputs: size, mean/std, class names, outputs.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax

from visionjax import export, paths
from visionjax.train import inference, parallel

FORMATS = ("stablehlo", "saved_model", "onnx")
# Artifact name inside the output folder, per format.
ARTIFACTS = {"stablehlo": "model.stablehlo", "saved_model": "saved_model",
             "onnx": "model.onnx"}


def export_workdir(workdir: str | os.PathLike, out: str | os.PathLike, *,
                   format: str = "saved_model",  # noqa: A002  (the CLI flag's name)
                   checkpoint: str | int = "latest", batch: int | None = None,
                   postprocess: bool | None = None) -> dict[str, Any]:
  """Writes ``<out>/<artifact>`` and ``<out>/export.json``; returns the latter's dict.

  Args:
    workdir: the run's folder (local or gs://).
    out: the output folder (created).
    format: one of `FORMATS`.
    checkpoint: 'latest', 'best' or a step (as `Predictor.from_workdir`).
    batch: a fixed batch size, or None for a symbolic batch dimension.
    postprocess: append SSD post-processing (padded boxes/scores/classes).
      None: when the model's output is a detector's ``{'logits', 'offsets',
      'anchors'}``.
  """
  if format not in FORMATS:
    raise ValueError(f"format={format!r}; expected one of {list(FORMATS)}")
  if batch is not None and int(batch) < 1:
    raise ValueError(f"batch={batch!r} must be >= 1 (or None for any batch size)")
  predictor = inference.Predictor.from_workdir(workdir, checkpoint=checkpoint)
  model = parallel.clone_for_axis(predictor.exp.model, None)
  variables = predictor.variables
  h, w = predictor.input_size
  shape = (None if batch is None else int(batch), h, w, predictor.exp.channels)
  if postprocess is None:
    probe = jax.eval_shape(lambda x: model.apply(variables, x, train=False),
                           jax.ShapeDtypeStruct((1, h, w, shape[3]), "float32"))
    postprocess = isinstance(probe, dict) and all(k in probe for k in export.DETECTION_KEYS)
  out = paths.resolve(out)
  out.mkdir(parents=True, exist_ok=True)
  target = out / ARTIFACTS[format]
  kwargs = {"input_shape": shape, "postprocess": bool(postprocess) or None}
  if format == "stablehlo":
    target.write_bytes(export.export_stablehlo(model, variables, **kwargs))
  elif format == "saved_model":
    export.export_saved_model(model, variables, target, **kwargs)
  else:
    export.export_onnx(model, variables, target, **kwargs)
  dc = predictor.exp.config.dataset
  meta = {
      "format": format, "artifact": ARTIFACTS[format], "workdir": os.fspath(workdir),
      "step": predictor.step, "model": predictor.exp.config.model.name,
      "task": predictor.task_name, "input_shape": list(shape),
      "input": "float32 images, (pixel / 255 - mean) / std, resized as the run's "
               "pipeline does (visionjax.train.inference.Predictor.preprocess)",
      "mean": list(dc.get("mean", (0.5, 0.5, 0.5))), "std": list(dc.get("std", (0.25,) * 3)),
      "class_names": list(predictor.class_names), "postprocess": bool(postprocess),
  }
  (out / "export.json").write_text(json.dumps(meta, indent=2))
  return meta

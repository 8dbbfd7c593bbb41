"""``visionjax export``: a trained run's model as StableHLO, TF SavedModel or ONNX.

    visionjax export --workdir=runs/unet_scenes --format=saved_model --out=exported/ \\
        [--checkpoint=latest|best|STEP] [--batch=0] [--postprocess=auto|yes|no]

Writes the artifact and ``export.json`` (input size, normalization, class
names) into ``--out``. ONNX needs ``pip install 'visionjax[export]'``.
"""
from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

from visionjax.cli import _app

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's folder (local or gs://).")
_FORMAT = flags.DEFINE_enum("format", "saved_model", ["stablehlo", "saved_model", "onnx"],
                            "Artifact format.")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
_BATCH = flags.DEFINE_integer("batch", 0, "Fixed batch size; 0 = any batch size (symbolic).")
_POSTPROCESS = flags.DEFINE_enum("postprocess", "auto", ["auto", "yes", "no"],
                                 "Append SSD post-processing (auto: for detectors).")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv: list[str]) -> None:
  del argv
  from visionjax.train import export_run
  postprocess = {"auto": None, "yes": True, "no": False}[_POSTPROCESS.value]
  try:
    meta = export_run.export_workdir(_WORKDIR.value, _OUT.value, format=_FORMAT.value,
                                     checkpoint=_CHECKPOINT.value,
                                     batch=_BATCH.value or None, postprocess=postprocess)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
  print(f"{meta['format']} of {meta['model']} (step {meta['step']}, input "
        f"{meta['input_shape']}) -> {_OUT.value}/{meta['artifact']}")


def run(argv: Sequence[str] | None = None) -> None:
  _app.run(main, argv)

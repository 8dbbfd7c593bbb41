"""The installed command: ``visionjax train | evaluate | predict | export | baselines``.

    visionjax train --config=unet_scenes --workdir=runs/unet
    visionjax evaluate --workdir=runs/unet --checkpoint=best
    visionjax predict --workdir=runs/unet --images='photos/*.jpg' --out=preds/
    visionjax export --workdir=runs/unet --format=saved_model --out=exported/
    visionjax baselines --unet_workdir=runs/unet

(also ``python -m visionjax ...``; ``experiments/*.py`` are the same commands
run from a source checkout). ``visionjax <command> --help`` lists a command's
flags. Each command is an absl app in its own module, imported only when
chosen: absl flags are process-global, and two commands define ``--workdir``.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

COMMANDS = {
    "train": "train and evaluate a model from a config (resumes an existing workdir)",
    "evaluate": "evaluate a run's checkpoint without training",
    "predict": "run a trained model on your own images (JSON + overlays)",
    "export": "export a run's model (StableHLO, TF SavedModel or ONNX)",
    "baselines": "score the classical segmentation baselines (and a U-Net run) on the scenes",
}


def usage() -> str:
  lines = ["usage: visionjax <command> [flags]   (visionjax <command> --help for its flags)",
           "", "commands:"]
  lines += [f"  {name:<9} {what}" for name, what in COMMANDS.items()]
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
  """Dispatches ``argv[1]`` to its command module's ``run``."""
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(usage())
    sys.exit(0 if len(argv) >= 2 else 2)
  name = argv[1]
  if name not in COMMANDS:
    sys.exit(f"error: unknown command {name!r}; expected one of {list(COMMANDS)}\n{usage()}")
  module = importlib.import_module(f"visionjax.cli.{name}")
  module.run([f"visionjax {name}", *argv[2:]])

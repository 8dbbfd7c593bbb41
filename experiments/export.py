"""Export a trained run's model (StableHLO, TF SavedModel or ONNX).

  python experiments/export.py --workdir=runs/unet_scenes --format=saved_model \
      --out=exported/unet [--checkpoint=latest|best|STEP] [--batch=0]

Writes the artifact and export.json (input size, normalization, class names).
"""
import sys

from visionjax.cli import main

if __name__ == "__main__":
  main([sys.argv[0], "export", *sys.argv[1:]])

"""Command line: fetch and convert pretrained weights.

    python -m visionjax.weights fetch resnet50 --from=torchvision \\
        --out=weights/resnet50                  # downloads (needs internet)
    python -m visionjax.weights fetch resnet50 --from=torchvision \\
        --file=resnet50-0676ba61.pth --out=weights/resnet50
    python -m visionjax.weights fetch vgg16 --from=keras --out=weights/vgg16
    python -m visionjax.weights list

Writes OUT/variables (an Orbax checkpoint of {'params', 'batch_stats'}) and
OUT/visionjax_weights.json (visionjax model name, `create` overrides,
preprocessing, provenance); `visionjax.weights.load(OUT)` reads both back.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from visionjax.weights import core


def _convert(args: argparse.Namespace) -> core.Converted:
  if args.source == "torchvision":
    from visionjax.weights import torchvision as tv  # pylint: disable=import-outside-toplevel
    if args.file:
      return tv.from_torchvision(args.name, args.file, weights=args.weights)
    state, entry = tv.download(args.name, args.weights)
    return tv.from_torchvision(args.name, state, weights=entry)
  from visionjax.weights import keras as kr  # pylint: disable=import-outside-toplevel
  if args.file:
    return kr.from_keras(args.name, args.file, weights=args.weights)
  return kr.from_keras(args.name, kr.download(args.name), weights="imagenet")


def _list() -> None:
  from visionjax.weights import keras as kr  # pylint: disable=import-outside-toplevel
  from visionjax.weights import torchvision as tv  # pylint: disable=import-outside-toplevel
  print("torchvision (name -> visionjax model):")
  for name, vj in sorted(tv.TORCHVISION_MODELS.items()):
    print(f"  {name:24s} {vj}")
  print("keras:")
  for name in sorted(kr.KERAS_MODELS):
    print(f"  {name:24s} {name}")


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m visionjax.weights",
      description="Convert torchvision/Keras pretrained weights to visionjax.")
  sub = parser.add_subparsers(dest="command", required=True)
  fetch = sub.add_parser("fetch", help="download (or read --file) and "
                         "convert one model's weights")
  fetch.add_argument("name", help="model name in the source library "
                     "(see `list`)")
  fetch.add_argument("--from", dest="source", required=True,
                     choices=("torchvision", "keras"))
  fetch.add_argument("--out", required=True,
                     help="output folder (Orbax checkpoint + JSON)")
  fetch.add_argument("--file", help="convert this local file instead of "
                     "downloading (.pth for torchvision, .h5 for Keras)")
  fetch.add_argument("--weights", help="which published weights: a "
                     "torchvision entry such as IMAGENET1K_V1 (default: "
                     "DEFAULT, or the one --file is named after)")
  sub.add_parser("list", help="models that have a converter")
  args = parser.parse_args(argv)
  if args.command == "list":
    _list()
    return 0
  converted = _convert(args)
  out = core.save(converted, args.out)
  summary = {"out": out, "model": converted.name,
             "model_kwargs": converted.model_kwargs,
             "weights": converted.provenance.weights,
             "preprocessing": converted.preprocessing.to_json()}
  print(json.dumps(summary, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())

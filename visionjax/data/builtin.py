"""TFDS builder for the built-in offline dataset (`digit_scenes`).

Exposed as a regular TFDS dataset so it flows through the same
``tfds.load`` -> ``tf.data`` path as CIFAR-10, VOC and Cityscapes. Nothing is
downloaded: `_generate_examples` renders scenes from scikit-learn's digits
(see `visionjax.data.scenes`). Features follow the layout of the stock TFDS
detection/segmentation datasets (VOC-style normalized boxes,
``segmentation_mask`` as a single-channel PNG) so the same adapters serve both.
``instance_mask`` (single-channel PNG, like ``segmentation_mask``) holds the
instance id of every pixel: 0 background, k+1 the digit of ``objects[k]``.

Configs:
  scenes64  64x64 scenes with 1-3 digits: 6,000 train / 1,000 test.
  digits32  32x32 images, one digit near the centre: 8,000 train / 1,500 test.
  tiny      32x32 scenes with 1-2 digits, 64 train / 32 test (for tests).
  dense64   64x64 scenes with 3-5 smaller digits (16-24 px), milder warp and
            clutter (~2x the digits per image): the segmentation quickstart's.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from visionjax.data import scenes


@dataclasses.dataclass
class DigitScenesConfig(tfds.core.BuilderConfig):
  spec: scenes.SceneSpec = dataclasses.field(default_factory=scenes.SceneSpec)
  seed: int = 0


class DigitScenes(tfds.core.GeneratorBasedBuilder):
  """Handwritten digits pasted on cluttered colour backgrounds."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": "Adds instance_mask: per-pixel instance ids (0 background, k+1 = "
               "objects[k]); every other feature is unchanged.",
  }
  BUILDER_CONFIGS = [
      DigitScenesConfig(name="scenes64", description="64x64, 1-3 digits",
                        spec=scenes.SceneSpec()),
      DigitScenesConfig(
          name="digits32", description="32x32, one digit per image",
          spec=scenes.SceneSpec(height=32, width=32, min_objects=1,
                                max_objects=1, min_size=22, max_size=26,
                                clutter=2, warp=0.6, centre_jitter=2,
                                num_train=8000, num_test=1500)),
      DigitScenesConfig(
          name="tiny", description="32x32, 1-2 digits, a few examples (tests)",
          spec=scenes.SceneSpec(height=32, width=32, min_objects=1,
                                max_objects=2, min_size=12, max_size=16,
                                num_train=64, num_test=32)),
      DigitScenesConfig(
          name="dense64", description="64x64, 3-5 digits of 16-24 px",
          spec=scenes.SceneSpec(min_objects=3, max_objects=5, min_size=16,
                                max_size=24, clutter=3, warp=0.6)),
  ]
  DEFAULT_CONFIG_NAME = "scenes64"

  def _info(self) -> tfds.core.DatasetInfo:
    spec = self.builder_config.spec
    digit = tfds.features.ClassLabel(names=[str(d) for d in range(10)])
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(spec.height, spec.width, 3)),
            "label": digit,
            "segmentation_mask": tfds.features.Image(
                shape=(spec.height, spec.width, 1)),
            "instance_mask": tfds.features.Image(
                shape=(spec.height, spec.width, 1)),
            "objects": tfds.features.Sequence({
                "bbox": tfds.features.BBoxFeature(),
                "label": tfds.features.ClassLabel(
                    names=[str(d) for d in range(10)]),
            }),
        }),
        supervised_keys=("image", "label"),
        homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
        citation="Alpaydin & Kaynak, Optical Recognition of Handwritten Digits, UCI 1998.",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download
    return {"train": self._generate_examples("train"),
            "test": self._generate_examples("test")}

  def _generate_examples(self, split: str):
    cfg = self.builder_config
    for i, s in scenes.generate(split, cfg.spec, seed=cfg.seed):
      yield i, {
          "image": s["image"],
          "label": int(s["label"]),
          "segmentation_mask": s["mask"][..., None],
          "instance_mask": s["instances"][..., None],
          "objects": {
              "bbox": [tfds.features.BBox(*map(float, b)) for b in s["bbox"]],
              "label": s["bbox_label"].astype(np.int64),
          },
      }

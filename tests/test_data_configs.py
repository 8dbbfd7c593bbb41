"""Each dataset's experiment config trains a few real steps on fixture data.

The configs are loaded from ``experiments/configs/``, pointed at the prepared
real-format fixtures, and shrunk (tiny model widths via ``config.model``,
small images and crops); data, augmentation, task and optimizer stay theirs.
`train_and_evaluate` then runs real steps and an exact evaluation.
"""
import json
import math
import os

import fixtures_data as F
import pytest

from visionjax.train import loop

TINY_RESNET = {"stage_sizes": (1, 1, 1, 1), "widths": (4, 8, 8, 16), "stem_width": 4}
TINY_DEEPLAB = {"encoder_kwargs": TINY_RESNET, "aspp_features": 8, "atrous_rates": (1, 2, 3)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  return F.real_datasets(tmp_path_factory)


def shrink(c, built, model_kwargs, image_size=None, crop=None):
  c.dataset.data_dir = built["data_dir"]
  c.dataset.manual_dir = built["manual"][c.dataset.name]
  for k, v in model_kwargs.items():
    c.model[k] = v
  if image_size:
    c.dataset.image_size = image_size
  if crop:  # keep the config's augmentation, at a small crop size
    c.dataset.augment = tuple(
        (e[0], {**e[1], "size": crop}) if isinstance(e, tuple) else e
        for e in c.dataset.augment)
  c.batch_size = 8
  c.eval_batch_size = 8
  c.num_train_steps = 2
  c.log_every_steps = 1
  c.eval_every_steps = 0
  c.optimizer.warmup_steps = 0
  c.checkpoint.every_steps = 0
  c.num_visualizations = 0  # pictures are the loop's business, tested there
  c.progress_bar = False
  return c


def _check_run(workdir, metrics):
  assert math.isfinite(metrics["loss"])
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  train = [l for l in lines if l["split"] == "train"]
  assert [l["step"] for l in train] == [1, 2]
  assert all(math.isfinite(l["loss"]) for l in train)
  assert os.path.exists(os.path.join(workdir, "final_metrics.json"))


def test_resnet_cifar10_trains_on_cifar10(built, tmp_path):
  c = shrink(F.load_config("resnet_cifar10"), built, TINY_RESNET)
  assert c.dataset.name == "cifar10" and c.dataset.augment == ("pad_crop", "horizontal_flip")
  metrics = loop.train_and_evaluate(c, str(tmp_path))
  _check_run(str(tmp_path), metrics)
  assert metrics["num_examples"] == 4  # the 4 fixture test images, each once
  assert 0.0 <= metrics["accuracy"] <= 1.0


@pytest.mark.parametrize("name,dataset,image_size,classes", [
    ("deeplabv3_voc_seg", "voc_segmentation/2012_sbd", (64, 64), 21),
    ("deeplabv3_cityscapes", "cityscapes/semantic_segmentation", (64, 128), 19)])
def test_deeplabv3_config_trains_on_its_dataset(built, tmp_path, name, dataset,
                                                image_size, classes):
  c = shrink(F.load_config(name), built, TINY_DEEPLAB, image_size=image_size, crop=(48, 48))
  assert c.dataset.name == dataset
  metrics = loop.train_and_evaluate(c, str(tmp_path))
  _check_run(str(tmp_path), metrics)
  assert 0.0 <= metrics["miou"] <= 1.0 and len(metrics["iou_per_class"]) == classes
  if name == "deeplabv3_cityscapes":
    # The val image's label bands hold every train id 0..18, so each class
    # gets an IoU; ids outside the 19 classes were mapped to 255 (ignored).
    present = [i for i, v in enumerate(metrics["iou_per_class"]) if v is not None]
    assert present == list(range(19))

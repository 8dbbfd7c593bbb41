"""The Mask R-CNN experiment configs: they validate, `maskrcnn_scenes` builds
on the built-in scenes and its batches follow the instance-annotation
contract; the slow test trains and evaluates it (shrunk) through the loop,
each step compiled once."""
import numpy as np
import pytest

from visionjax import models, tasks
from visionjax.configs import maskrcnn_r50fpn_coco, maskrcnn_scenes
from visionjax.train import config as config_lib
from visionjax.train import loop


@pytest.mark.parametrize("module", [maskrcnn_scenes, maskrcnn_r50fpn_coco])
def test_configs_validate(module):
  c = module.get_config()
  config_lib.validate(c)
  assert models.task_of(c.model.name) == c.task == "instance_segmentation"
  assert c.checkpoint.best_metric in tasks.REGISTRY[c.task].metrics


def _scenes_config(data_dir, **shrink):
  c = maskrcnn_scenes.get_config()
  c.dataset.name = "digit_scenes/tiny"
  c.dataset.data_dir = data_dir
  c.progress_bar = False
  c.checkpoint.every_steps = 0
  for k, v in shrink.items():
    c.model[k] = v
  return c


def test_scenes_config_builds_and_its_batches_follow_the_contract(tiny_data_dir):
  exp = loop.build(_scenes_config(tiny_data_dir))
  assert isinstance(exp.task, tasks.InstanceSegmentationTask)
  assert exp.task.num_classes == exp.model.num_classes == 10
  batch = next(iter(exp.train_dataset().as_numpy_iterator()))
  b, h, w = batch["image"].shape[:3]
  g = exp.config.task_kwargs.max_boxes
  assert batch["instances"].shape == (b, h, w) and batch["box_instance"].shape == (b, g)
  exp.task.check_values(batch)
  # Every real box has its mask, and the mask is where its box is.
  ids, valid = batch["box_instance"], batch["box_valid"]
  assert np.all(ids[valid] > 0) and np.all(ids[~valid] == 0)
  for i, k in zip(*np.nonzero(valid)):
    ys, xs = np.nonzero(batch["instances"][i] == ids[i, k])
    x0, y0, x1, y1 = batch["boxes"][i, k] * [w, h, w, h]
    assert xs.min() >= np.floor(x0) - 1 and xs.max() <= np.ceil(x1) + 1
    assert ys.min() >= np.floor(y0) - 1 and ys.max() <= np.ceil(y1) + 1


@pytest.mark.slow
def test_scenes_config_trains_and_evaluates_each_step_compiled_once(tiny_data_dir):
  c = _scenes_config(tiny_data_dir, widths=(8, 16, 16, 32), stem_width=8, fpn_features=16,
                     representation=32, mask_layers=(16,))
  c.eval_batch_size = 24  # 32 test images: a full batch and a padded one
  exp = loop.build(c)
  state = exp.create_state()
  it = exp.train_dataset().as_numpy_iterator()
  for _ in range(3):
    state, m = exp.train_step(state, exp.engine.put_batch(next(it)))
    assert np.isfinite(float(m["loss"]))
  metrics = loop.evaluate(exp, state)
  assert exp.train_step._cache_size() == 1 and exp.eval_step._cache_size() == 1
  assert metrics["num_images"] == 32
  for k in exp.task.metrics:
    assert np.isfinite(metrics[k]), k

"""SSD on the built-in 64×64 digit scenes: the offline detection target.

`ssd_lite` (a 3-stage ResNet, widths 32/64/128, 0.85M parameters) predicts
480 default boxes on its 8×8 and 4×4 maps. Evaluation on the 1,000 held-out
scenes reports VOC07 11-point / all-point mAP@0.5 and COCO AP (seen on 2
shared CPU cores: 0.911 / 0.947 / 0.714 after 1,500 steps, 5m53s wall at
~5.2 steps/s; 10m08s when the machine was loaded 4x over).

  visionjax train --config=ssd_scenes --workdir=/tmp/ssd
"""
from visionjax.train.config import base_config


def get_config():
  c = base_config()
  c.task = "detection"
  c.model.name = "ssd_lite"
  c.dataset.name = "digit_scenes/scenes64"
  c.task_kwargs.max_boxes = 4          # scenes hold 1-3 digits
  c.dataset.augment = ("color_jitter",)
  # Scenes hold <= 3 objects: 100 candidates per class and 100 detections per
  # image (COCO's maxDets) are plenty and keep evaluation cheap.
  c.task_kwargs.pre_nms_top_k = 100
  c.task_kwargs.max_detections = 100
  c.batch_size = 32
  c.eval_batch_size = 200
  c.num_train_steps = 1500
  c.log_every_steps = 100
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.schedule = "warmup_cosine"
  c.optimizer.warmup_steps = 100
  c.optimizer.weight_decay = 1e-4
  c.checkpoint.every_steps = 500
  c.checkpoint.best_metric = "map50"
  c.num_visualizations = 8
  return c

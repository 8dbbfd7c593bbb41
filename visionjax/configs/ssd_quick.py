"""A quick CPU run of the whole detection path (a few minutes on 2 cores).

The offline target's model and data (`ssd_lite` on the 64×64 digit scenes)
for 300 steps with a short warm-up: enough to watch the loss fall and get a
first mAP, the evaluation on the 1,000 held-out scenes and the box
pictures (seen: VOC07 mAP@0.5 0.53 in 2m46s). For the real result use
ssd_scenes.py.

  visionjax train --config=ssd_quick --workdir=/tmp/ssd_quick
"""
from visionjax.train.config import base_config


def get_config():
  c = base_config()
  c.task = "detection"
  c.model.name = "ssd_lite"
  c.dataset.name = "digit_scenes/scenes64"
  c.task_kwargs.max_boxes = 4
  c.batch_size = 32
  c.eval_batch_size = 250
  c.num_train_steps = 300
  c.log_every_steps = 50
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.warmup_steps = 30
  c.checkpoint.every_steps = 0
  c.num_visualizations = 8
  return c

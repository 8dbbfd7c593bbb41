"""A small U-Net removes Gaussian and salt-and-pepper noise from the built-in
32x32 digit images (the denoising task; CPU minutes)."""
from visionjax.train.config import base_config


def get_config():
  c = base_config()
  c.task = "denoising"
  c.model.name = "unet_denoise"  # U-Net (16, 32, 64) with 3 output values per pixel
  c.dataset.name = "digit_scenes/digits32"
  # Noise on the [0, 1] scale, made by the task in training and evaluation.
  c.task_kwargs.gaussian_sigma = 0.1
  c.task_kwargs.salt_pepper = 0.05
  c.task_kwargs.l1_weight = 1.0  # L1 resists the salt-and-pepper outliers better than L2
  c.task_kwargs.ssim_weight = 0.2
  c.batch_size = 32
  c.eval_batch_size = 250
  c.num_train_steps = 600
  c.log_every_steps = 50
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.warmup_steps = 50
  c.optimizer.weight_decay = 1e-4
  c.checkpoint.every_steps = 600
  c.eval_every_steps = 0  # one evaluation, at the end
  c.checkpoint.best_metric = "psnr"
  c.num_visualizations = 6
  return c

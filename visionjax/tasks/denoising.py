"""Image denoising: noisy image in, clean image out (image-to-image).

Where the noise is made: in the task's ``corrupt(seed, example)``, which the
tf.data pipeline calls on every example after augmentation and fitting, in
training *and* evaluation. Not an augmentation op: those run in training
only, so the held-out inputs would be clean; and not ``targets``, which
cannot change the model's input. The noise is a deterministic function of
the pipeline's per-example seed (training: the run's seed and the example's
position in the stream, so every epoch draws fresh noise), this task's
``seed`` and a hash of the image's pixels (evaluation passes a zero seed, so
the hash alone makes each held-out image's noise its own, and the same in
every evaluation).

Noise (pixel values on the [0, 1] scale): additive Gaussian of standard
deviation ``gaussian_sigma``, then salt and pepper: a fraction
``salt_pepper`` of the pixels (all channels of each) set to 0 or 1, half
each; then clipped to [0, 1].

Batch fields: ``image`` (the noisy image, normalized like any input),
``clean`` and ``noisy`` (float32 [B, H, W, C] in [0, 1]). The model (e.g.
``unet_denoise``) outputs the clean image [B, H, W, C] on the [0, 1] scale.

Loss (a ``(sum, count)`` pair over pixel values): ``l1_weight`` x L1 +
``l2_weight`` x L2 + ``ssim_weight`` x (1 - SSIM); the SSIM term of each
image enters the sum times its H W C values, so the mean is exactly
``l1_weight * MAE + l2_weight * MSE + ssim_weight * mean(1 - SSIM)``.

Metrics: PSNR (dB) and SSIM of the output (clipped to [0, 1]) against the
clean image, the same for the noisy input, and their gains (output minus
input), averaged over the held-out images. SSIM is scikit-image's with Wang
et al.'s settings (11-tap Gaussian window, sigma ``ssim_sigma`` = 1.5, population covariance,
K1 0.01, K2 0.03, data_range 1: `visionjax.metrics.image_quality`).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from visionjax import losses
from visionjax.metrics import image_quality
from visionjax.tasks import base


@dataclasses.dataclass(frozen=True)
class DenoisingTask(base.Task):
  """Noisy -> clean images (see the module docstring).

  ``num_classes`` is the dataset's label count, which the spine passes to
  every task; denoising does not use it.
  """
  name: ClassVar[str] = "denoising"
  annotation: ClassVar[str] = "label"  # any dataset with images will do; labels are unused
  metrics: ClassVar[tuple[str, ...]] = ("loss", "psnr", "ssim", "psnr_noisy", "ssim_noisy",
                                        "psnr_gain", "ssim_gain")
  num_classes: int
  gaussian_sigma: float = 0.1
  salt_pepper: float = 0.05
  seed: int = 0
  l1_weight: float = 1.0
  l2_weight: float = 0.0
  ssim_weight: float = 0.0
  ssim_sigma: float = 1.5  # the SSIM window's Gaussian (11 taps at 1.5; images >= 11 px)

  def __post_init__(self):
    if not 0.0 <= self.gaussian_sigma:
      raise ValueError(f"gaussian_sigma={self.gaussian_sigma}; expected a value >= 0")
    if not 0.0 <= self.salt_pepper <= 1.0:
      raise ValueError(f"salt_pepper={self.salt_pepper}; expected a fraction in [0, 1]")
    if min(self.l1_weight, self.l2_weight, self.ssim_weight) < 0 or not (
        self.l1_weight or self.l2_weight or self.ssim_weight):
      raise ValueError(f"loss weights l1={self.l1_weight}, l2={self.l2_weight}, "
                       f"ssim={self.ssim_weight}; expected >= 0 and at least one > 0")

  @property
  def _ssim(self):
    return {"gaussian_weights": True, "sigma": self.ssim_sigma, "use_sample_covariance": False}

  # ------------------------------------------------------------ input side
  def noise(self, seed: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
    """uint8/float [H, W, C] image (0..255) -> the noisy image, float32 in
    [0, 1] (see module)."""
    clean = tf.cast(image, tf.float32) / 255.0
    digest = tf.strings.to_hash_bucket_fast(tf.io.serialize_tensor(tf.cast(image, tf.uint8)),
                                            2 ** 62)
    seed = tf.cast(seed, tf.int64)
    key = tf.stack([seed[0] * 1_000_003 + self.seed, seed[1] + digest])
    keys = tf.random.experimental.stateless_split(key, 2)
    noisy = clean + self.gaussian_sigma * tf.random.stateless_normal(tf.shape(clean), keys[0])
    u = tf.random.stateless_uniform(tf.shape(clean)[:2], keys[1])[..., None]
    half = self.salt_pepper / 2
    noisy = tf.where(u < half, 0.0, tf.where(u >= 1.0 - half, 1.0, noisy))
    return tf.clip_by_value(noisy, 0.0, 1.0)

  def corrupt(self, seed, example):
    noisy = self.noise(seed, example["image"])
    return {**example, "image": noisy * 255.0, "clean": example["image"]}

  def targets(self, example):
    clean = example.get("clean", example["image"])
    return {"clean": tf.cast(clean, tf.float32) / 255.0,
            "noisy": tf.cast(example["image"], tf.float32) / 255.0}

  def check_values(self, batch):
    base.check_finite(batch, "clean")

  def validate(self, batch, channels):
    base.validate_image(batch, channels)
    for key in ("clean", "noisy"):
      base.check(key in batch, f"batch has no {key!r}; keys are {sorted(batch)}")
      base.check(tuple(batch[key].shape) == tuple(batch["image"].shape),
                 f"batch[{key!r}] has shape {tuple(batch[key].shape)}; expected the image's "
                 f"{tuple(batch['image'].shape)}")

  # -------------------------------------------------------------- training
  def loss(self, outputs, batch):
    pred, clean = jnp.asarray(outputs, jnp.float32), batch["clean"]
    valid = base.valid_mask(batch)
    total, count = 0.0, None
    for weight, fn in ((self.l1_weight, losses.l1_loss), (self.l2_weight, losses.l2_loss)):
      if weight:
        s, count = fn(pred, clean, where=valid, reduction="sum_and_count")
        total = total + weight * s
    if self.ssim_weight:
      s, images = losses.ssim_loss(pred, clean, where=valid, reduction="sum_and_count",
                                   **self._ssim)
      total = total + self.ssim_weight * s * float(np.prod(pred.shape[1:]))
      if count is None:
        count = images * float(np.prod(pred.shape[1:]))
    return total, count

  def train_sums(self, outputs, batch):
    pred = jnp.clip(jnp.asarray(outputs, jnp.float32), 0.0, 1.0)
    return self._quality(pred, batch, "", with_ssim=False)

  def summarize_train(self, sums):
    return {"psnr": float(sums["psnr_sum"]) / max(float(sums["images"]), 1.0)}

  def _quality(self, pred, batch, suffix, with_ssim=True):
    """Sums of PSNR (and SSIM) of ``pred`` vs the clean images, valid ones only."""
    valid = base.valid_mask(batch)
    w = jnp.ones(pred.shape[:1]) if valid is None else valid.astype(jnp.float32)
    clean = batch["clean"]
    # A padded example may be all zeros (PSNR inf): masked by where, not by *.
    out = {f"psnr{suffix}_sum": jnp.sum(jnp.where(w > 0, image_quality.psnr(pred, clean), 0.0)),
           "images": jnp.sum(w)}
    if with_ssim:
      out[f"ssim{suffix}_sum"] = jnp.sum(w * image_quality.ssim(pred, clean, 1.0, **self._ssim))
    return out

  # ------------------------------------------------------------ evaluation
  def eval_sums(self, outputs, batch):
    loss_sum, count = self.loss(outputs, batch)
    pred = jnp.clip(jnp.asarray(outputs, jnp.float32), 0.0, 1.0)
    sums = self._quality(pred, batch, "")
    sums.update(self._quality(batch["noisy"], batch, "_noisy"))
    return {**sums, "loss_sum": loss_sum, "count": count}

  def summarize(self, sums, state=None):
    del state
    n = max(float(sums["images"]), 1.0)
    out = {k: float(sums[f"{k}_sum"]) / n for k in ("psnr", "ssim", "psnr_noisy", "ssim_noisy")}
    out["psnr_gain"] = out["psnr"] - out["psnr_noisy"]
    out["ssim_gain"] = out["ssim"] - out["ssim_noisy"]
    out["loss"] = float(sums["loss_sum"]) / max(float(sums["count"]), 1.0)
    return out

  # ----------------------------------------------------------- predictions
  def postprocess(self, outputs):
    return jnp.clip(jnp.asarray(outputs, jnp.float32), 0.0, 1.0)

  def inference_outputs(self, outputs):
    return self.postprocess(outputs)

  def to_result(self, out, *, class_names, content, size):
    """The denoised image at the original size: uint8 [H, W, C]."""
    del class_names
    crop = np.asarray(out)[:content[0], :content[1]]
    if tuple(content) != tuple(size):
      crop = tf.image.resize(crop, size, method="bilinear").numpy()
    return {"image": np.clip(np.round(crop * 255.0), 0, 255).astype(np.uint8)}

  def draw_result(self, image, result, class_names):
    """The denoised image itself (it replaces the input)."""
    del image, class_names
    out = result["image"]
    return np.repeat(out, 3, axis=-1) if out.shape[-1] == 1 else out[..., :3]

  def visualize(self, images, batch, predictions, class_names, path):
    from visionjax.viz import predictions as pred_viz
    del class_names
    n = len(images)
    noisy = batch["noisy"][:n] if "noisy" in batch else images
    pred_viz.save_denoising(noisy, np.asarray(predictions)[:n], batch["clean"][:n], path)

"""Image-to-image metrics: PSNR and SSIM of each image (denoising, restoration).

``psnr(pred, target, data_range)`` and ``ssim(pred, target, data_range, ...)``
take [B, H, W, C] images and return one float32 value per image, so a task
sums them over the valid images and divides once on host. Their definitions
are scikit-image's ``peak_signal_noise_ratio`` and ``structural_similarity``
(window, Gaussian weights, sample covariance, K1/K2, border crop: see
`visionjax.classical.similarity`, where they are implemented so the SSIM loss
in `visionjax.losses` shares them); tests/test_metrics_image.py compares them
with scikit-image to 1e-6.
"""
from visionjax.classical.similarity import psnr, ssim

__all__ = ["psnr", "ssim"]

"""visionjax.losses: pure, jit-safe loss functions (logits in).

Common keyword options: ``reduction`` in {'mean', 'sum', 'none',
'sum_and_count'}, ``weights`` (per class), ``ignore_index`` (dense integer
labels), ``where`` (validity mask). 'mean' divides by the number of
non-ignored elements; 'sum_and_count' returns ``(sum, count)`` so a
data-parallel step can ``psum`` both.

Checked mode: ``checked(fn, **options)`` is ``checkify.checkify`` of ``fn``;
it raises on label/box values the function cannot check under ``jit``
(see :mod:`visionjax.losses.reduction`)::

  ce = visionjax.losses.checked(softmax_cross_entropy, ignore_index=255)
  err, loss = jax.jit(ce)(logits, labels)
  err.throw()
"""
from visionjax.losses.boxes import (
                                    classification_localization_loss,
                                    giou_loss,
                                    huber_loss,
                                    smooth_l1_loss,
)
from visionjax.losses.classification import (
                                    sigmoid_binary_cross_entropy,
                                    sigmoid_focal_loss,
                                    softmax_cross_entropy,
                                    softmax_focal_loss,
)
from visionjax.losses.dense import soft_dice_loss, soft_jaccard_loss, tversky_loss
from visionjax.losses.image import l1_loss, l2_loss, ssim_loss
from visionjax.losses.reduction import REDUCTIONS, checked, unchecked

__all__ = ["REDUCTIONS", "checked", "classification_localization_loss", "giou_loss", "huber_loss",
           "smooth_l1_loss", "sigmoid_binary_cross_entropy", "sigmoid_focal_loss",
           "softmax_cross_entropy", "softmax_focal_loss", "soft_dice_loss", "soft_jaccard_loss",
           "unchecked",
           "tversky_loss", "l1_loss", "l2_loss", "ssim_loss"]

"""visionjax.losses: pure, jit-safe loss functions (logits in).

Common keyword options: ``reduction`` in {'mean', 'sum', 'none',
'sum_and_count'}, ``weights`` (per class), ``ignore_index`` (dense integer
labels), ``where`` (validity mask). 'mean' divides by the number of
non-ignored elements; 'sum_and_count' returns ``(sum, count)``.
"""
from visionjax.losses._reduction import REDUCTIONS
from visionjax.losses.classification import softmax_cross_entropy

__all__ = ["REDUCTIONS", "softmax_cross_entropy"]

"""visionjax: classic computer vision in JAX/Flax.

Subpackages:
  models   - Flax Linen model zoo and the `create(name)` registry.
  losses   - pure loss functions (jit-safe).
  metrics  - classification, segmentation and detection metrics.
  ops      - box ops, NMS, pooling with indices.
  data     - TFDS builders, tf.data pipelines, augmentations.
  train    - train state, data-parallel steps, checkpointing, the training loop.
  viz      - overlays, learning curves, box drawings.
"""

__version__ = "0.1.0"

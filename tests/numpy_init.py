"""Model variables filled from NumPy, for tests that need a model's weights
but not its initialisers."""
import jax
import jax.numpy as jnp
import numpy as np


def numpy_init(shapes, seed=0):
  """He-normal kernels, unit scales/variances, zero biases/means, filled into
  a `jax.eval_shape(model.init)` tree.

  Skips compiling each model's initialisers (seconds per model on a 2-core
  CPU; Mask R-CNN's `init` runs its inference path op by op, NMS included:
  40 s of CPU).
  """
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    if name in ("scale", "var"):
      return jnp.ones(leaf.shape, leaf.dtype)
    if name in ("bias", "mean") or leaf.ndim < 2:
      return jnp.zeros(leaf.shape, leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1]))
    return jnp.asarray(rng.standard_normal(leaf.shape) * np.sqrt(2 / fan_in), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)

"""Registry contract and the shared smoke test run for every registered model.

Each registered name is built in its registry 'smoke' configuration (same
code paths, tiny widths/depths) and, under one `jit`, runs forward and
backward in train mode, takes one Adam step, and re-evaluates the loss on
the same batch: the loss must go down and the gradients must be finite.
Dense models run at an odd size (33×47 by default) and must return logits
at exactly that size; eval-mode outputs are checked for shape and finiteness.
"""
import jax
import jax.numpy as jnp
import numpy as np
from numpy_init import numpy_init
import optax
import pytest

import visionjax.models as vm


def test_registry_lists_tasks_and_rejects_unknown_names():
  names = vm.list_models()
  assert names == sorted(names) and len(names) == len(set(names))
  for required in ("small_cnn", "lenet5", "unet", "unet_small"):
    assert required in names
  assert vm.task_of("unet_small") == "segmentation"
  assert vm.task_of("small_cnn") == "classification"
  assert set(vm.MODEL_TASKS) == set(names)
  assert all(vm.MODEL_TASKS[n] == "segmentation"
             for n in vm.list_models("segmentation"))
  with pytest.raises(ValueError, match="valid names:.*small_cnn"):
    vm.create("resnet_9000")
  with pytest.raises(TypeError):  # the registry is read-only.
    vm.REGISTRY["x"] = vm.REGISTRY["unet"]  # type: ignore[index]


def test_create_forwards_field_overrides():
  model = vm.create("unet_small", num_classes=5, axis_name="batch")
  assert model.num_classes == 5 and model.axis_name == "batch"
  assert tuple(model.features) == (16, 32, 64, 128)


def test_wrong_rank_and_channels_raise_clear_errors():
  model = vm.create("small_cnn")
  with pytest.raises(ValueError, match=r"rank 4 \[B, H, W, C\].*rank 3"):
    model.init(jax.random.key(0), jnp.zeros((32, 32, 3)))


def _loss(task, out, labels):
  """A task-appropriate scalar loss, so every model has something to lower."""
  if task in ("classification", "segmentation"):
    return optax.softmax_cross_entropy_with_integer_labels(
        out, labels).mean()
  if task == "localization":
    ce = optax.softmax_cross_entropy_with_integer_labels(
        out["logits"], labels[0]).mean()
    return ce + jnp.abs(out["boxes"] - labels[1]).mean()
  if task == "instance_segmentation":  # the differentiable outputs (not RoIs, anchors)
    return sum(jnp.mean(jnp.square(out[k])) for k in (
        "objectness", "rpn_deltas", "class_logits", "box_deltas", "mask_logits"))
  # backbone (and any other dict output): pull every float output towards
  # zero — any differentiable target will do for "one step lowers it".
  return sum(jnp.mean(jnp.square(f)) for f in jax.tree_util.tree_leaves(out)
             if jnp.issubdtype(f.dtype, jnp.floating))


def _labels(task, num_classes, batch, size, key):
  if task == "classification":
    return jnp.arange(batch) % num_classes
  if task == "segmentation":
    return jax.random.randint(key, (batch, *size), 0, num_classes)
  if task == "localization":
    return (jnp.arange(batch) % num_classes,
            jax.random.uniform(key, (batch, 4), minval=0.2, maxval=0.8))
  if task == "instance_segmentation":  # ground truth for the training-mode RoI sampling
    h, w = size
    return {"boxes": jnp.array([[[4, 6, 30, 40], [20, 10, 44, 30], [0, 0, 0, 0]]] * batch,
                               jnp.float32) * jnp.array([w, h, w, h]) / 48,
            "labels": jnp.array([[1, num_classes, 0]] * batch, jnp.int32),
            "valid": jnp.array([[True, True, False]] * batch)}
  return None


def _unique_smoke_models():
  """One parametrization per distinct tiny module; names sharing one module
  (e.g. vgg11 and vgg16 at one block per stage) run once, under all names."""
  groups = {}
  for name in vm.list_models():
    spec = vm.spec_of(name)
    key = (repr(vm.create(name, **spec.smoke)), spec.task, spec.smoke_size,
           spec.in_channels)
    groups.setdefault(key, []).append(name)
  return [pytest.param(names[0], id="+".join(names))
          for names in groups.values()]


@pytest.mark.parametrize("name", _unique_smoke_models())
def test_every_model_trains_one_step_under_jit(name):
  spec = vm.spec_of(name)
  model = vm.create(name, **spec.smoke)
  task = spec.task
  key = jax.random.key(0)
  k_drop, k_x, k_y = jax.random.split(key, 3)
  batch, size = 2, spec.smoke_size
  images = jax.random.normal(k_x, (batch, *size, spec.in_channels))
  num_classes = getattr(model, "num_classes", 1)
  labels = _labels(task, num_classes, batch, size, k_y)
  variables = numpy_init(jax.eval_shape(
      model.init, {"params": key, "dropout": k_drop}, images))
  params = variables["params"]
  state = {k: v for k, v in variables.items() if k != "params"}
  tx = optax.adam(1e-3)

  def train_loss(p):
    extra = {"targets": labels} if task == "instance_segmentation" else {}
    out, new_state = model.apply({"params": p, **state}, images, train=True,
                                 rngs={"dropout": k_drop},
                                 mutable=list(state), **extra)
    return _loss(task, out, labels), new_state

  def step_and_eval(p):
    (loss0, _), grads = jax.value_and_grad(train_loss, has_aux=True)(p)
    updates, _ = tx.update(grads, tx.init(p), p)
    loss1, _ = train_loss(optax.apply_updates(p, updates))
    eval_out = model.apply({"params": p, **state}, images, train=False)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g))
                                for g in jax.tree_util.tree_leaves(grads)]))
    return loss0, loss1, optax.global_norm(grads), finite, eval_out

  # Unoptimised XLA code compiles ~35% faster; these tiny models run in ms.
  compiled = jax.jit(step_and_eval).lower(params).compile(
      compiler_options={"xla_backend_optimization_level": 0})
  loss0, loss1, gnorm, finite, out = compiled(params)
  assert bool(finite) and float(gnorm) > 0
  assert float(loss1) < float(loss0), (name, float(loss0), float(loss1))
  for leaf in jax.tree_util.tree_leaves(out):
    assert np.all(np.isfinite(np.asarray(leaf)))
  if task == "classification":
    assert out.shape == (batch, num_classes) and out.dtype == jnp.float32
  elif task == "segmentation":
    assert out.shape == (batch, *size, num_classes)
    assert out.dtype == jnp.float32
  elif task == "denoising":  # an image out: out_channels (3) per pixel
    assert out.shape == (batch, *size, 3) and out.dtype == jnp.float32
  elif task == "localization":
    assert out["logits"].shape == (batch, num_classes)
    assert out["boxes"].shape == (batch, 4)
    assert np.all((np.asarray(out["boxes"]) > 0)
                  & (np.asarray(out["boxes"]) < 1))
  elif task == "backbone":
    strides = model.feature_strides
    assert set(out) == set(strides)
    for key, feat in out.items():
      s = strides[key]
      assert feat.shape[1:3] == (-(-size[0] // s), -(-size[1] // s)), key

"""Data-parallel engines: where the state lives and how steps are compiled.

* `JitEngine` (default): ``jax.jit`` over a 1-D device mesh ``('data',)``.
  The state is replicated (``NamedSharding(mesh, P())``), batches are split
  over ``data`` and assembled with ``jax.make_array_from_process_local_data``,
  so the same code runs on one host or many. XLA inserts the gradient
  all-reduce; the step is written as if for one device.
* `PmapEngine`: ``jax.pmap`` over the local devices with ``axis_name='batch'``;
  the step sums gradients/metrics itself and BatchNorm layers average their
  statistics across devices (the model is cloned with ``axis_name='batch'``).

Both expose the same small interface so the training loop is engine-agnostic.
Train steps are compiled `losses.unchecked` (their value checks discharged),
so ``jit``'s C++ fast path dispatches them. Evaluation steps are not:
checkify cannot discharge the checks inside NMS's vmapped while loop
("checkify-of-vmap-of-while"), and a few hundred evaluation calls do not
need the fast path.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable, Iterable, Iterator

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from visionjax.losses import unchecked

ENGINES = ("jit", "pmap")


def clone_for_axis(model: nn.Module, axis_name: str | None) -> nn.Module:
  """The model with its BatchNorm ``axis_name`` set, if it has that field."""
  fields = {f.name for f in dataclasses.fields(model)}
  return model.clone(axis_name=axis_name) if "axis_name" in fields else model


class JitEngine:
  """``jax.jit`` over a device mesh with ``NamedSharding``."""
  axis_name = None
  name = "jit"

  def __init__(self, devices: list | None = None):
    self.devices = list(devices or jax.devices())
    self.mesh = Mesh(np.asarray(self.devices), ("data",))
    self.replicated = NamedSharding(self.mesh, P())
    self.data = NamedSharding(self.mesh, P("data"))

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  def model_for(self, model: nn.Module) -> nn.Module:
    return clone_for_axis(model, None)

  def create_state(self, init_fn: Callable[[jax.Array], Any], rng: jax.Array) -> Any:
    """Runs ``init_fn`` so its outputs are born replicated on the mesh."""
    return jax.jit(init_fn, out_shardings=self.replicated)(rng)

  def abstract_state(self, init_fn: Callable, rng: jax.Array) -> Any:
    """Shapes, dtypes and shardings of the state, without computing it."""
    shapes = jax.eval_shape(init_fn, rng)
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated), shapes)

  def compile_train(self, step: Callable) -> Callable:
    return jax.jit(unchecked(step), donate_argnums=0, in_shardings=(self.replicated, self.data),
                   out_shardings=(self.replicated, self.replicated))

  def compile_eval(self, step: Callable) -> Callable:
    return jax.jit(step, in_shardings=(self.replicated, self.data),
                   out_shardings=self.replicated)

  def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.data, x), batch)

  def to_checkpoint(self, state: Any) -> Any:
    return state

  def from_checkpoint(self, state: Any) -> Any:
    return state

  def fetch(self, tree: Any) -> Any:
    return host_copy(tree)

  def fetch_examples(self, tree: Any) -> Any:
    """Per-example outputs of a step (global batch, replicated) as NumPy."""
    return host_copy(tree)


class PmapEngine:
  """``jax.pmap`` over this host's devices, ``axis_name='batch'``."""
  axis_name = "batch"
  name = "pmap"

  def __init__(self, devices: list | None = None):
    self.devices = list(devices or jax.local_devices())
    # pmap's per-device arrays are arrays with a leading device axis sharded
    # over the devices (jax.device_put_replicated/_sharded were removed).
    self._stacked = NamedSharding(Mesh(np.asarray(self.devices), ("devices",)),
                                  P("devices"))

  @property
  def num_devices(self) -> int:
    return len(self.devices) * jax.process_count()

  def model_for(self, model: nn.Module) -> nn.Module:
    return clone_for_axis(model, self.axis_name)

  def create_state(self, init_fn: Callable, rng: jax.Array) -> Any:
    return self.from_checkpoint(jax.jit(init_fn)(rng))

  def abstract_state(self, init_fn: Callable, rng: jax.Array) -> Any:
    shapes = jax.eval_shape(init_fn, rng)
    sharding = jax.sharding.SingleDeviceSharding(self.devices[0])
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        shapes)

  def compile_train(self, step: Callable) -> Callable:
    return jax.pmap(unchecked(step), axis_name=self.axis_name, donate_argnums=0,
                    devices=self.devices)

  def compile_eval(self, step: Callable) -> Callable:
    return jax.pmap(step, axis_name=self.axis_name, devices=self.devices)

  def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    n = len(self.devices)

    def shard(x):
      if x.shape[0] % n:
        raise ValueError(f"host batch of {x.shape[0]} does not split over {n} devices")
      return jax.device_put(x.reshape((n, -1) + x.shape[1:]), self._stacked)

    return jax.tree.map(shard, batch)

  def to_checkpoint(self, state: Any) -> Any:
    """One copy of the replicated state (all copies are equal)."""
    return jax.tree.map(lambda x: x[0], state)

  def from_checkpoint(self, state: Any) -> Any:
    n = len(self.devices)
    return jax.tree.map(
        lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n,) + np.shape(x)),
                                 self._stacked), state)

  def fetch(self, tree: Any) -> Any:
    return jax.tree.map(lambda x: np.asarray(x[0]), jax.device_get(tree))

  def fetch_examples(self, tree: Any) -> Any:
    """Per-example outputs [devices, per-device batch, ...] -> [batch, ...]."""
    return jax.tree.map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]),
                        jax.device_get(tree))


def host_copy(tree: Any) -> Any:
  """NumPy copy of replicated (or single-device) arrays.

  Reads this host's first shard, so it also works on multi-host meshes where
  a replicated array is not fully addressable (``jax.device_get`` refuses it).
  """
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def initialize_multihost(coordinator_address: str | None = None,
                         num_processes: int | None = None,
                         process_id: int | None = None) -> tuple[int, int]:
  """Joins this process to a multi-host run (`jax.distributed.initialize`).

  Call once, before any JAX computation. With no arguments JAX detects the
  cluster (Cloud TPU VMs, SLURM, Open MPI, GKE); elsewhere give all three.
  Returns ``(process_index, process_count)``.
  """
  given = (coordinator_address, num_processes, process_id)
  if any(v is not None for v in given) and any(v is None for v in given):
    raise ValueError(
        "multi-host: give coordinator_address, num_processes and process_id "
        f"together (got {coordinator_address!r}, {num_processes!r}, {process_id!r}), "
        "or none of them to let JAX detect the cluster")
  jax.distributed.initialize(coordinator_address, num_processes, process_id)
  return jax.process_index(), jax.process_count()


def make_engine(name: str, devices: list | None = None) -> JitEngine | PmapEngine:
  if name == "jit":
    return JitEngine(devices)
  if name == "pmap":
    if jax.process_count() > 1:  # untested across processes: refuse, never hang
      raise ValueError(f"engine 'pmap' runs on one host; this run has "
                       f"{jax.process_count()} processes: use engine='jit'")
    return PmapEngine(devices)
  raise ValueError(f"unknown engine {name!r}; expected one of {ENGINES}")


def prefetch_to_device(batches: Iterable[dict], put: Callable[[dict], Any],
                       size: int = 2) -> Iterator[Any]:
  """Keeps ``size`` batches in flight on the devices so input overlaps compute.

  ``put`` starts an asynchronous host-to-device copy; holding the next batches
  in a queue lets those copies run while the current step executes.
  """
  queue: collections.deque = collections.deque()
  it = iter(batches)
  for b in it:
    queue.append(put(b))
    if len(queue) >= size:
      break
  while queue:
    yield queue.popleft()
    nxt = next(it, None)
    if nxt is not None:
      queue.append(put(nxt))

"""visionjax's train step against a PyTorch CPU twin of each model, side by side.

    pip install -e '.[bench]'                  # torch (CPU use; any build)
    python benchmarks/vs_pytorch.py            # the seven default models
    python benchmarks/vs_pytorch.py --models=resnet50,segnet --rounds=7
    python benchmarks/vs_pytorch.py --quick    # tiny widths and sizes (smoke)

What runs. visionjax: exactly the training spine's program, i.e.
`visionjax.train.steps.train_step` compiled by the `JitEngine`
(`visionjax.train.parallel`), with the registry model, the task's own loss
(`visionjax.train.tasks`: softmax cross-entropy; per pixel for segmentation;
SSD matching + multibox loss with 3:1 hard negatives for detection) and
`optim.make_optimizer` SGD (momentum 0.9, constant learning rate, no weight
decay). Weights are random (`benchmarks/models.py`'s `_random_variables`).
PyTorch: a plain `torch.nn` twin of the same architecture written below
(torchvision's layouts: ResNet v1.5, DeepLabV3 head, SSD300-VGG16, SegNet
with `MaxUnpool2d`, U-Net with `ConvTranspose2d`), asserted to have exactly
the same number of trainable parameters, in its default NCHW layout and
eager mode, with the same loss (the multibox loss is re-implemented in torch
with the same matching rules) and `torch.optim.SGD(momentum=0.9)`. Both
train in float32, with BatchNorm in training mode, on the same batch.

How it is timed. Each framework lives in its own child process (spawned, so
neither imports the other), built, compiled (JAX) and warmed up (2 steps)
before timing. The parent then alternates rounds: a JAX round, a PyTorch
round, a JAX round, ... (the idle process blocks on a pipe). A round repeats
the step for at least `--min-seconds` and 2 steps; a row reports the median
images/s over the rounds (with the range). `cores` is the process's CPU time
divided by wall time over the timed rounds (all threads). `MiB` is the peak
resident memory of the process during the timed rounds minus its resident
memory after importing the framework (before building anything): Linux's
VmHWM is reset (/proc/self/clear_refs) after setup, so JAX's compile-time
peak is reported separately (`compile MiB`); both include the parameters,
optimizer state and batch. `GFLOP/img` is XLA's cost analysis of the
compiled train step (the same work for both, up to the loss).

Phase split (`--phase-model`, default resnet50): forward alone (train-mode
forward + loss; `torch.no_grad()` in PyTorch, a jitted loss in JAX) and
forward+backward (gradients, no optimizer update), in alternating rounds.

The machine is shared: load averages are printed before and after; numbers
move with them.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import math
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # workers import TF (data)

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)

# name: (batch, side), the sizes of the earlier measurements.
FULL_SIZES = {
    "small_cnn": (64, 32), "unet_small": (8, 64), "resnet18_cifar": (128, 32),
    "resnet50": (8, 224), "deeplabv3_resnet50": (2, 256),
    "ssd300_vgg16": (2, 300), "segnet": (4, 128)}
# --quick: the registry's smoke widths at these sizes (batch >= 2 so that
# PyTorch's BatchNorm accepts DeepLab's 1×1 image-pool branch).
QUICK_SIZES = {
    "small_cnn": (4, 32), "unet_small": (2, 32), "resnet18_cifar": (4, 32),
    "resnet50": (2, 64), "deeplabv3_resnet50": (2, 64),
    "ssd300_vgg16": (2, 96), "segnet": (2, 64)}
DEFAULT_MODELS = tuple(FULL_SIZES)
LEARNING_RATE = 1e-3
MOMENTUM = 0.9
MAX_BOXES = 8          # padded ground-truth boxes per image (detection)
WARMUP_STEPS = 2
MIN_STEPS = 2          # per round


@dataclasses.dataclass(frozen=True)
class Case:
  """One model to compare (plain data: it is pickled to the workers)."""
  name: str
  family: str          # the visionjax model class: 'ResNet', 'SSD', ...
  task: str
  num_classes: int
  batch: int
  size: int
  quick: bool
  twin: Tuple[Tuple[str, Any], ...]  # torch twin kwargs, as items
  torch_threads: int = 0  # 0: PyTorch's default (one per core)


# ----------------------------------------------------------------- memory
def _rss_mib() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _hwm_mib() -> float:
  """Peak resident memory (VmHWM) since start or the last `_reset_hwm`."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_hwm() -> bool:
  """Resets VmHWM to the current RSS (Linux >= 4.0); False if not possible."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


# ------------------------------------------------------------------- data
def numpy_batch(case: Case, seed: int = 0) -> Dict[str, np.ndarray]:
  """The batch both frameworks train on (NHWC images)."""
  rng = np.random.default_rng(seed)
  b, s, k = case.batch, case.size, case.num_classes
  out = {"image": rng.standard_normal((b, s, s, 3)).astype(np.float32)}
  if case.task == "classification":
    out["label"] = rng.integers(0, k, (b,)).astype(np.int32)
  elif case.task == "segmentation":
    out["mask"] = rng.integers(0, k, (b, s, s)).astype(np.int32)
  elif case.task == "detection":
    xy = rng.uniform(0, 0.6, (b, MAX_BOXES, 2))
    wh = rng.uniform(0.1, 0.4, (b, MAX_BOXES, 2))
    out["boxes"] = np.concatenate([xy, xy + wh], -1).astype(np.float32)  # xyxy
    out["box_labels"] = rng.integers(0, k, (b, MAX_BOXES)).astype(np.int32)
    out["box_valid"] = np.arange(MAX_BOXES)[None] < rng.integers(1, 4, (b, 1))
  else:
    raise ValueError(f"task {case.task!r} has no twin")
  return out


def _timed_round(fn: Callable[[], Any], min_seconds: float,
                 min_steps: int = MIN_STEPS) -> Dict[str, float]:
  n, cpu0, t0 = 0, time.process_time(), time.perf_counter()
  while n < min_steps or time.perf_counter() - t0 < min_seconds:
    fn()
    n += 1
  return {"steps": n, "wall": time.perf_counter() - t0,
          "cpu": time.process_time() - cpu0}


# ------------------------------------------------------------- JAX worker
class JaxRunner:
  """visionjax's engine train step on `case` (imports JAX on construction)."""

  def __init__(self, case: Case):
    import jax
    import jax.numpy as jnp
    import ml_collections

    sys.path.insert(0, BENCH_DIR)
    import models as bench_models  # benchmarks/models.py

    from visionjax import tasks
    import visionjax.models as vm
    from visionjax.train import optim, parallel, steps
    from visionjax.train.state import TrainState

    self.jax = jax
    spec = vm.spec_of(case.name)
    self.engine = parallel.make_engine("jit")
    self.model = self.engine.model_for(
        vm.create(case.name, **(dict(spec.smoke) if case.quick else {})))
    self.task = tasks.create(case.task, case.num_classes)
    oc = ml_collections.ConfigDict(dict(
        name="sgd", learning_rate=LEARNING_RATE, schedule="constant",
        momentum=MOMENTUM, nesterov=False, weight_decay=0.0,
        grad_clip_norm=0.0))
    tx, schedule = optim.make_optimizer(oc, total_steps=1_000_000)
    key = jax.random.key(0)
    shapes = jax.eval_shape(
        functools.partial(self.model.init, train=False),
        {"params": key, "dropout": key},
        jax.ShapeDtypeStruct((1, case.size, case.size, 3), jnp.float32))
    variables = bench_models._random_variables(shapes)
    self.params_count = vm.count_params(variables)
    self.param_sizes = sorted(int(np.prod(p.shape)) for p in
                              jax.tree_util.tree_leaves(variables["params"]))
    params = variables["params"]
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                       batch_stats=variables.get("batch_stats", {}),
                       opt_state=tx.init(params), rng=jax.random.PRNGKey(0))
    self.state = jax.device_put(state, self.engine.replicated)
    self.batch = self.engine.put_batch(numpy_batch(case))
    step = self.engine.compile_train(functools.partial(
        steps.train_step, model=self.model, tx=tx, task=self.task,
        schedule=schedule, channels=3, axis_name=self.engine.axis_name))
    t0 = time.perf_counter()
    self.compiled = step.lower(self.state, self.batch).compile()
    self.compile_s = time.perf_counter() - t0
    self.gflop_per_image = bench_models._flops(self.compiled) / case.batch / 1e9
    self.loss = float("nan")
    self._phase: Optional[Dict[str, Callable[[], Any]]] = None

  def info(self) -> Dict[str, Any]:
    return {"params": self.params_count, "param_sizes": self.param_sizes,
            "compile_s": self.compile_s,
            "gflop_per_image": self.gflop_per_image,
            "threads": f"XLA:CPU pool ({os.cpu_count()} cpus), "
                       f"{self.jax.device_count()} device(s)",
            "version": f"jax {self.jax.__version__}"}

  def step(self) -> None:
    self.state, metrics = self.compiled(self.state, self.batch)
    self.loss = metrics["loss"]
    self.jax.block_until_ready((self.state, metrics))

  def final_loss(self) -> float:
    return float(self.loss)

  def prepare_phase(self) -> Dict[str, float]:
    """Compiles forward-only and forward+backward (gradients) programs."""
    jax, jnp = self.jax, self.jax.numpy
    from visionjax.train.steps import model_variables
    model, task, batch = self.model, self.task, self.batch
    has_bn = bool(self.state.batch_stats)
    rng = self.state.rng

    def loss_fn(params, batch_stats, batch):
      out = model.apply(model_variables(params, batch_stats), batch["image"],
                        train=True, rngs={"dropout": rng},
                        mutable=["batch_stats"] if has_bn else False)
      outputs = out[0] if has_bn else out
      loss_sum, count = task.loss(outputs, batch)
      return loss_sum / jnp.maximum(count, 1)

    args = (self.state.params, self.state.batch_stats, batch)
    times = {}
    fns = {}
    for name, fn in (("forward", loss_fn),
                     ("forward_backward", jax.value_and_grad(loss_fn))):
      t0 = time.perf_counter()
      fns[name] = jax.jit(fn).lower(*args).compile()
      times[name] = time.perf_counter() - t0
    self._phase = {k: functools.partial(
        lambda f: jax.block_until_ready(f(*args)), f) for k, f in fns.items()}
    for fn in self._phase.values():
      fn()  # warm-up
    return times

  def phase(self, which: str) -> Callable[[], Any]:
    return self._phase[which]


# --------------------------------------------------------- PyTorch twins
def _load_anchors_module():
  """visionjax/detection/anchors.py (NumPy only) without importing JAX."""
  path = os.path.join(REPO, "visionjax", "detection", "anchors.py")
  spec = importlib.util.spec_from_file_location("_vj_anchors", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses resolves its module.
  spec.loader.exec_module(module)
  return module


def torch_zoo() -> Dict[str, Callable[..., Any]]:
  """Builders of the PyTorch twins by visionjax model class name.

  Defined inside a function so that the JAX worker never imports torch.
  """
  import torch
  from torch import nn
  import torch.nn.functional as F

  def cbr(cin: int, cout: int, k: int = 3, stride: int = 1,
          pad: Optional[int] = None, dilation: int = 1, norm: bool = True,
          act: bool = True) -> nn.Sequential:
    """Conv (no bias before BatchNorm) -> BatchNorm -> ReLU."""
    pad = dilation * (k - 1) // 2 if pad is None else pad
    layers = [nn.Conv2d(cin, cout, k, stride, pad, dilation, bias=not norm)]
    if norm:
      layers.append(nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1))
    if act:
      layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)

  class SmallCNN(nn.Module):
    """visionjax.models.cnn.SmallCNN: VALID 3×3 convs, 2×2 pools, 2 dense."""

    def __init__(self, features, hidden, num_classes, size):
      super().__init__()
      self.convs = nn.ModuleList()
      c = 3
      for i, f in enumerate(features):
        self.convs.append(nn.Conv2d(c, f, 3))
        c, size = f, size - 2
        if i < len(features) - 1:
          size //= 2
      self.fc1 = nn.Linear(c * size * size, hidden)
      self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
      for i, conv in enumerate(self.convs):
        x = F.relu(conv(x))
        if i < len(self.convs) - 1:
          x = F.max_pool2d(x, 2)
      return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))

  class UNet(nn.Module):
    """visionjax.models.unet.UNet (BatchNorm, 'same' padding, learned up)."""

    def __init__(self, features, num_classes):
      super().__init__()
      double = lambda cin, f: nn.Sequential(cbr(cin, f), cbr(f, f))
      self.down = nn.ModuleList()
      c = 3
      for f in features[:-1]:
        self.down.append(double(c, f))
        c = f
      self.bottleneck = double(c, features[-1])
      c = features[-1]
      self.up, self.up_conv = nn.ModuleList(), nn.ModuleList()
      for f in reversed(features[:-1]):
        self.up.append(nn.ConvTranspose2d(c, f, 2, 2))
        self.up_conv.append(double(2 * f, f))
        c = f
      self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, x):
      skips = []
      for block in self.down:
        x = block(x)
        skips.append(x)
        x = F.max_pool2d(x, 2)
      x = self.bottleneck(x)
      for up, conv, skip in zip(self.up, self.up_conv, reversed(skips)):
        x = conv(torch.cat([skip, up(x)], 1))
      return self.classifier(x)

  class Block(nn.Module):
    """ResNet basic/bottleneck block (torchvision v1.5 layout)."""

    def __init__(self, cin, width, block, stride, dilation):
      super().__init__()
      if block == "basic":
        out = width
        self.body = nn.Sequential(
            cbr(cin, width, 3, stride, dilation=dilation),
            cbr(width, width, 3, 1, dilation=dilation, act=False))
      else:
        out = 4 * width
        self.body = nn.Sequential(
            cbr(cin, width, 1), cbr(width, width, 3, stride, dilation=dilation),
            cbr(width, out, 1, act=False))
      self.downsample = (cbr(cin, out, 1, stride, pad=0, act=False)
                         if cin != out or stride != 1 else None)
      self.out_channels = out

    def forward(self, x):
      identity = x if self.downsample is None else self.downsample(x)
      return F.relu(self.body(x) + identity, inplace=True)

  class ResNetEncoder(nn.Module):
    """visionjax.models.resnet.ResNetEncoder -> its last feature map."""

    def __init__(self, stage_sizes, block, widths, stem, stem_width,
                 output_stride=32):
      super().__init__()
      if stem == "imagenet":
        self.stem = nn.Sequential(cbr(3, stem_width, 7, 2),
                                  nn.MaxPool2d(3, 2, 1))
        current = 4
      else:
        self.stem = cbr(3, stem_width, 3, 1)
        current = 1
      layers, c, dilation = [], stem_width, 1
      for i, n in enumerate(stage_sizes):
        s, prev = (1 if i == 0 else 2), dilation
        if current * s > output_stride:
          dilation, s = dilation * s, 1
        current *= s
        for j in range(n):
          b = Block(c, widths[i], block, s if j == 0 else 1,
                    prev if j == 0 else dilation)
          layers.append(b)
          c = b.out_channels
      self.layers = nn.Sequential(*layers)
      self.out_channels = c

    def forward(self, x):
      return self.layers(self.stem(x))

  class ResNet(nn.Module):

    def __init__(self, num_classes, **encoder):
      super().__init__()
      self.encoder = ResNetEncoder(**encoder)
      self.fc = nn.Linear(self.encoder.out_channels, num_classes)

    def forward(self, x):
      x = F.adaptive_avg_pool2d(self.encoder(x), 1)
      return self.fc(torch.flatten(x, 1))

  class DeepLabV3(nn.Module):
    """visionjax.models.deeplab.DeepLabV3 = torchvision's head + ASPP."""

    def __init__(self, num_classes, encoder, features, rates, dropout_rate):
      super().__init__()
      self.encoder = ResNetEncoder(**encoder)
      c = self.encoder.out_channels
      self.aspp = nn.ModuleList(
          [cbr(c, features, 1)] +
          [cbr(c, features, 3, pad=r, dilation=r) for r in rates])
      self.image_pool = cbr(c, features, 1)
      self.project = cbr((len(rates) + 2) * features, features, 1)
      self.dropout = nn.Dropout(dropout_rate)
      self.head = cbr(features, features, 3)
      self.classifier = nn.Conv2d(features, num_classes, 1)

    def forward(self, images):
      x = self.encoder(images)
      branches = [branch(x) for branch in self.aspp]
      pooled = self.image_pool(x.mean((2, 3), keepdim=True))
      branches.append(pooled.expand_as(branches[0]))
      y = self.dropout(self.project(torch.cat(branches, 1)))
      y = self.classifier(self.head(y))
      return F.interpolate(y, size=images.shape[-2:], mode="bilinear",
                           align_corners=False)

  class SegNet(nn.Module):
    """visionjax.models.segnet.SegNet with MaxPool2d/MaxUnpool2d indices."""

    def __init__(self, stage_sizes, widths, num_classes):
      super().__init__()
      self.encoder, c = nn.ModuleList(), 3
      for n, w in zip(stage_sizes, widths):
        self.encoder.append(nn.Sequential(
            *[cbr(c if j == 0 else w, w) for j in range(n)]))
        c = w
      self.decoder = nn.ModuleList()
      for i, (n, w) in enumerate(zip(stage_sizes, widths)):
        layers = []
        for j in reversed(range(n)):
          if j > 0:
            layers.append(cbr(w, w))
          elif i > 0:
            layers.append(cbr(w, widths[i - 1]))
          else:
            layers.append(nn.Conv2d(w, num_classes, 3, padding=1))
        self.decoder.append(nn.Sequential(*layers))

    def forward(self, x):
      pools = []
      for stage in self.encoder:
        x = stage(x)
        size = x.shape[-2:]
        x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
        pools.append((size, idx))
      for i in reversed(range(len(self.decoder))):
        size, idx = pools[i]
        x = self.decoder[i](F.max_unpool2d(x, idx, 2, 2, output_size=size))
      return x

  class L2Norm(nn.Module):

    def __init__(self, channels, scale=20.0, eps=1e-10):
      super().__init__()
      self.scale = nn.Parameter(torch.full((channels,), scale))
      self.eps = eps

    def forward(self, x):
      norm = x.pow(2).sum(1, keepdim=True).sqrt() + self.eps
      return x / norm * self.scale.view(1, -1, 1, 1)

  class SSD(nn.Module):
    """visionjax.models.ssd.SSD on the VGG-16 SSD encoder (= torchvision's
    SSD300-VGG16 layout); returns (logits, offsets, anchors)."""

    def __init__(self, num_classes, stage_sizes, widths, ssd_width, extras,
                 specs, clip_anchors):
      super().__init__()
      self.anchors_lib = _load_anchors_module()
      self.specs = [self.anchors_lib.AnchorSpec(*s) for s in specs]
      self.clip = clip_anchors
      self.num_classes = num_classes
      self.stages, c = nn.ModuleList(), 3
      for i, (n, w) in enumerate(zip(stage_sizes, widths)):
        layers = [nn.MaxPool2d(2, 2, ceil_mode=True)] if i else []
        for _ in range(n):
          layers.append(cbr(c, w, norm=False))
          c = w
        self.stages.append(nn.Sequential(*layers))
      self.fc = nn.Sequential(
          nn.MaxPool2d(3, 1, 1),
          cbr(c, ssd_width, 3, pad=6, dilation=6, norm=False),
          cbr(ssd_width, ssd_width, 1, norm=False))
      self.l2norm = L2Norm(widths[3])
      channels, c = [widths[3], ssd_width], ssd_width
      self.extras = nn.ModuleList()
      for mid, out, k, s, p in extras:
        self.extras.append(nn.Sequential(
            cbr(c, mid, 1, norm=False), cbr(mid, out, k, s, pad=p, norm=False)))
        channels.append(out)
        c = out
      n = [sp.boxes_per_location for sp in self.specs]
      self.loc = nn.ModuleList(
          nn.Conv2d(ch, 4 * m, 3, padding=1) for ch, m in zip(channels, n))
      self.conf = nn.ModuleList(
          nn.Conv2d(ch, (num_classes + 1) * m, 3, padding=1)
          for ch, m in zip(channels, n))
      self._anchors = None

    def forward(self, x):
      b = x.shape[0]
      for i, stage in enumerate(self.stages):
        x = stage(x)
        if i == 3:
          conv4 = x
      x = self.fc(x)
      maps = [self.l2norm(conv4), x]
      for extra in self.extras:
        x = extra(x)
        maps.append(x)
      offsets = torch.cat([l(m).permute(0, 2, 3, 1).reshape(b, -1, 4)
                           for l, m in zip(self.loc, maps)], 1)
      logits = torch.cat(
          [c(m).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes + 1)
           for c, m in zip(self.conf, maps)], 1)
      if self._anchors is None:  # a constant of the input size, as in JAX
        self._anchors = torch.from_numpy(self.anchors_lib.default_boxes(
            [tuple(m.shape[-2:]) for m in maps], self.specs, clip=self.clip))
      return logits, offsets, self._anchors

  return {"SmallCNN": SmallCNN, "UNet": UNet, "ResNet": ResNet,
          "DeepLabV3": DeepLabV3, "SegNet": SegNet, "SSD": SSD}


def torch_multibox_loss(outputs, target, *, iou_threshold=0.5,
                        neg_pos_ratio=3.0, variances=(0.1, 0.1, 0.2, 0.2)):
  """visionjax's DetectionTask loss in torch, batched: the same matching
  (best ground truth per box at IoU >= 0.5, then the best box per ground
  truth, last claimant wins), encoding, 3:1 hard negatives by background
  cross-entropy (stable ranking) and (L_conf + L_loc) / N over the batch."""
  import torch
  import torch.nn.functional as F
  logits, offsets, anchors = outputs
  gt, gt_labels, gt_valid = target  # gt: xyxy [B, G, 4]
  b, a, k1 = logits.shape
  g = gt.shape[1]
  with torch.no_grad():
    axy = torch.cat([anchors[:, :2] - anchors[:, 2:] / 2,
                     anchors[:, :2] + anchors[:, 2:] / 2], -1)
    lt = torch.maximum(gt[:, :, None, :2], axy[None, None, :, :2])
    rb = torch.minimum(gt[:, :, None, 2:], axy[None, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_g = (gt[..., 2:] - gt[..., :2]).clamp(min=0).prod(-1)
    area_a = (axy[:, 2:] - axy[:, :2]).clamp(min=0).prod(-1)
    union = area_g[:, :, None] + area_a[None, None] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1e-12), 0.0)
    iou = torch.where(gt_valid[:, :, None], iou, -1.0)              # [B,G,A]
    best_iou, best_gt = iou.max(1)                                   # [B,A]
    index = torch.where(best_iou >= iou_threshold, best_gt, -1)
    claims = gt_valid[:, :, None] & (
        iou.argmax(2)[:, :, None] == torch.arange(a)[None, None])    # [B,G,A]
    claimant = torch.where(claims, torch.arange(g)[None, :, None], -1).amax(1)
    index = torch.where(claimant >= 0, claimant, index)
    positive = index >= 0
    safe = index.clamp(min=0)
    labels = torch.where(positive, gt_labels.gather(1, safe) + 1, 0)
    m = gt.gather(1, safe[..., None].expand(b, a, 4))
    v = torch.tensor(variances)
    dwh = anchors[:, 2:].clamp(min=1e-8)
    t = torch.cat([((m[..., :2] + m[..., 2:]) / 2 - anchors[:, :2]) / (v[:2] * dwh),
                   torch.log((m[..., 2:] - m[..., :2]).clamp(min=1e-8) / dwh)
                   / v[2:]], -1)
    t = torch.where(positive[..., None], t, 0.0)
  ce = F.cross_entropy(logits.reshape(-1, k1), labels.reshape(-1),
                       reduction="none").view(b, a)
  with torch.no_grad():
    num_pos = positive.sum(1)
    num_neg = torch.minimum((neg_pos_ratio * num_pos).floor().long(),
                            a - num_pos)
    key = torch.where(positive, math.inf, -ce)
    order = torch.argsort(key, dim=1, stable=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(a).expand(b, a).contiguous())
    chosen = positive | ((rank < num_neg[:, None]) & ~positive)
  conf = torch.where(chosen, ce, 0.0).sum()
  loc = (F.smooth_l1_loss(offsets, t, beta=1.0, reduction="none").sum(-1)
         * positive).sum()
  return (conf + loc) / num_pos.sum().clamp(min=1)


class TorchRunner:
  """The PyTorch twin's train step on `case` (imports torch on construction)."""

  def __init__(self, case: Case):
    import torch
    import torch.nn.functional as F
    self.torch = torch
    if case.torch_threads:
      torch.set_num_threads(case.torch_threads)
    torch.manual_seed(0)
    twin = dict(case.twin)
    self.model = torch_zoo()[case.family](**twin).train()
    self.param_sizes = sorted(p.numel() for p in self.model.parameters()
                              if p.requires_grad)
    self.params_count = sum(self.param_sizes)
    batch = numpy_batch(case)
    self.x = torch.from_numpy(batch["image"].transpose(0, 3, 1, 2).copy())
    if case.task == "classification":
      self.target = torch.from_numpy(batch["label"]).long()
      self.loss_fn = F.cross_entropy
    elif case.task == "segmentation":
      self.target = torch.from_numpy(batch["mask"]).long()
      self.loss_fn = functools.partial(F.cross_entropy, ignore_index=255)
    else:
      self.target = (torch.from_numpy(batch["boxes"]),
                     torch.from_numpy(batch["box_labels"]).long(),
                     torch.from_numpy(batch["box_valid"]))
      self.loss_fn = torch_multibox_loss
    self.opt = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE,
                               momentum=MOMENTUM)
    self.loss = torch.tensor(float("nan"))

  def info(self) -> Dict[str, Any]:
    return {"params": self.params_count, "param_sizes": self.param_sizes,
            "compile_s": float("nan"),
            "gflop_per_image": float("nan"),
            "threads": f"intra-op {self.torch.get_num_threads()}, "
                       f"inter-op {self.torch.get_num_interop_threads()}",
            "version": f"torch {self.torch.__version__}"}

  def step(self) -> None:
    self.opt.zero_grad(set_to_none=True)
    loss = self.loss_fn(self.model(self.x), self.target)
    loss.backward()
    self.opt.step()
    self.loss = loss.detach()

  def final_loss(self) -> float:
    return float(self.loss)

  def prepare_phase(self) -> Dict[str, float]:
    for fn in (self._forward, self._forward_backward):
      fn()  # warm-up
    return {}

  def _forward(self) -> None:
    with self.torch.no_grad():
      self.loss_fn(self.model(self.x), self.target)

  def _forward_backward(self) -> None:
    self.model.zero_grad(set_to_none=True)
    self.loss_fn(self.model(self.x), self.target).backward()

  def phase(self, which: str) -> Callable[[], Any]:
    return {"forward": self._forward,
            "forward_backward": self._forward_backward}[which]


def _worker(framework: str, case: Case, conn) -> None:
  """Child process: build, warm up, then serve timing commands."""
  try:
    base = _rss_mib()
    if framework == "jax":
      # Imported (and the CPU client started) before the baseline.
      import jax

      import visionjax.models  # noqa: F401
      import visionjax.train  # noqa: F401 (imports TensorFlow, via data)
      jax.devices()
      base = _rss_mib()
      runner = JaxRunner(case)
    else:
      import torch  # noqa: F401
      base = _rss_mib()
      runner = TorchRunner(case)
    for _ in range(WARMUP_STEPS):
      runner.step()
    info = runner.info()
    info["setup_peak_mib"] = _hwm_mib() - base
    info["hwm_reset"] = _reset_hwm()
    conn.send(("ok", info))
    while True:
      cmd, arg = conn.recv()
      if cmd == "round":
        conn.send(("ok", _timed_round(runner.step, arg)))
      elif cmd == "memory":
        conn.send(("ok", {"peak_mib": _hwm_mib() - base,
                          "loss": runner.final_loss()}))
      elif cmd == "prepare_phase":
        conn.send(("ok", runner.prepare_phase()))
      elif cmd == "phase":
        which, min_seconds = arg
        conn.send(("ok", _timed_round(runner.phase(which), min_seconds)))
      elif cmd == "stop":
        conn.send(("ok", None))
        return
      else:
        raise ValueError(f"unknown command {cmd!r}")
  except BaseException:  # report to the parent instead of dying silently
    try:
      conn.send(("error", traceback.format_exc()))
    except (BrokenPipeError, OSError):
      pass


class _Worker:
  """Parent-side handle of one child process."""

  def __init__(self, framework: str, case: Case):
    ctx = multiprocessing.get_context("spawn")
    self.framework = framework
    self.conn, child = ctx.Pipe()
    self.proc = ctx.Process(target=_worker, args=(framework, case, child),
                            daemon=True)
    self.proc.start()
    child.close()
    self.info = self._reply()

  def _reply(self) -> Any:
    try:
      status, payload = self.conn.recv()
    except EOFError:
      self.proc.join(5)
      raise RuntimeError(f"{self.framework} worker died (exit code "
                         f"{self.proc.exitcode}; killed for memory?)") from None
    if status != "ok":
      raise RuntimeError(f"{self.framework} worker failed:\n{payload}")
    return payload

  def ask(self, cmd: str, arg: Any = None) -> Any:
    self.conn.send((cmd, arg))
    return self._reply()

  def close(self) -> None:
    if self.proc.is_alive():
      try:
        self.ask("stop")
      except (RuntimeError, OSError):
        pass
    self.proc.join(30)
    if self.proc.is_alive():
      self.proc.terminate()
      self.proc.join(5)


# ----------------------------------------------------------- twin configs
def _plain(x: Any) -> Any:
  """Flax field values (frozen mappings, tuples) as plain picklable data."""
  if isinstance(x, (list, tuple)):
    return tuple(_plain(v) for v in x)
  if hasattr(x, "items"):
    return {k: _plain(v) for k, v in x.items()}
  return x


def _resnet_kwargs(enc: Any) -> Dict[str, Any]:
  if getattr(enc, "stride_in_1x1", False):
    raise ValueError("no PyTorch twin for ResNet v1 (stride_in_1x1=True)")
  return dict(stage_sizes=_plain(enc.stage_sizes), block=enc.block,
              widths=_plain(enc.widths), stem=enc.stem,
              stem_width=enc.stem_width,
              output_stride=getattr(enc, "output_stride", 32))


def make_case(name: str, quick: bool, batch: int, size: int,
              torch_threads: int = 0) -> Case:
  """The case of registered model `name` with its twin's constructor kwargs."""
  import visionjax.models as vm
  from visionjax.models import backbones

  spec = vm.spec_of(name)
  m = vm.create(name, **(dict(spec.smoke) if quick else {}))
  family = type(m).__name__
  unsupported = ValueError(f"{name}: no PyTorch twin for this {family} "
                           "configuration")
  if family == "SmallCNN":
    if m.dropout_rate:
      raise unsupported
    twin = dict(features=_plain(m.features), hidden=m.hidden,
                num_classes=m.num_classes, size=size)
  elif family == "UNet":
    if (not m.use_batchnorm or m.upsample != "learned" or m.padding != "same"
        or m.encoder is not None or m.dropout_rate):
      raise unsupported
    twin = dict(features=_plain(m.features), num_classes=m.num_classes)
  elif family == "ResNet":
    twin = dict(num_classes=m.num_classes, **_resnet_kwargs(m))
  elif family == "DeepLabV3":
    enc = backbones.build_encoder(m.encoder, m.encoder_kwargs,
                                  output_stride=m.output_stride)
    rates = m.atrous_rates or tuple(r * 16 // m.output_stride
                                    for r in (6, 12, 18))
    twin = dict(num_classes=m.num_classes, encoder=_resnet_kwargs(enc),
                features=m.aspp_features, rates=_plain(rates),
                dropout_rate=m.dropout_rate)
  elif family == "SegNet":
    if m.dropout_rate:
      raise unsupported
    twin = dict(stage_sizes=_plain(m.stage_sizes), widths=_plain(m.widths),
                num_classes=m.num_classes)
  elif family == "SSD":
    enc = backbones.build_encoder(m.encoder, m.encoder_kwargs)
    if (not m.encoder.startswith("vgg") or enc.use_batchnorm or not enc.ssd
        or tuple(m.sources) != ("conv4", "fc7")
        or tuple(m.l2norm_sources) != ("conv4",) or m.extra_norm):
      raise unsupported
    specs = tuple((s.min_size, s.max_size, tuple(s.aspect_ratios), s.step)
                  for s in m.specs())
    twin = dict(num_classes=m.num_classes, stage_sizes=_plain(enc.stage_sizes),
                widths=_plain(enc.widths), ssd_width=enc.ssd_width,
                extras=_plain(m.extras), specs=specs,
                clip_anchors=m.clip_anchors)
  else:
    raise unsupported
  return Case(name=name, family=family, task=spec.task,
              num_classes=m.num_classes, batch=batch, size=size, quick=quick,
              twin=tuple(twin.items()), torch_threads=torch_threads)


# ------------------------------------------------------------------ driver
def _ips(rounds: List[Dict[str, float]], batch: int) -> List[float]:
  return [batch * r["steps"] / r["wall"] for r in rounds]


def _cores(rounds: List[Dict[str, float]]) -> float:
  return sum(r["cpu"] for r in rounds) / sum(r["wall"] for r in rounds)


def _log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def run_case(case: Case, rounds: int, min_seconds: float, main: bool,
             phase: bool) -> Dict[str, Any]:
  """Both workers of `case`, alternating rounds; returns the row's data."""
  out: Dict[str, Any] = {"case": case}
  workers: Dict[str, _Worker] = {}
  try:
    # One after the other: JAX compiles while nothing else runs.
    for fw in ("jax", "torch"):
      t0 = time.perf_counter()
      workers[fw] = _Worker(fw, case)
      out[f"{fw}_info"] = workers[fw].info
      _log(f"  {fw:5s} ready in {time.perf_counter() - t0:5.1f} s: "
           f"{workers[fw].info['params']:,} params")
    pj, pt = (out[f"{fw}_info"]["params"] for fw in ("jax", "torch"))
    assert pj == pt, f"{case.name}: {pj:,} JAX vs {pt:,} torch parameters"
    # Same tensors too (sizes per parameter tensor, as multisets).
    assert (out["jax_info"]["param_sizes"] == out["torch_info"]["param_sizes"]
           ), f"{case.name}: same count, different parameter tensors"
    if main:
      res = {"jax": [], "torch": []}
      for r in range(rounds):
        for fw in ("jax", "torch"):
          res[fw].append(workers[fw].ask("round", min_seconds))
        _log(f"  round {r + 1}/{rounds}: " + "  ".join(
            f"{fw} {_ips(res[fw][-1:], case.batch)[0]:8.2f} img/s "
            f"({res[fw][-1]['steps']} steps)" for fw in res))
      for fw in ("jax", "torch"):
        out[f"{fw}_rounds"] = res[fw]
        out[f"{fw}_memory"] = workers[fw].ask("memory")
    if phase:
      for fw in ("jax", "torch"):
        out[f"{fw}_phase_compile"] = workers[fw].ask("prepare_phase")
      ph = {(fw, w): [] for fw in ("jax", "torch")
            for w in ("forward", "forward_backward")}
      for _ in range(rounds):
        for w in ("forward", "forward_backward"):
          for fw in ("jax", "torch"):
            ph[fw, w].append(workers[fw].ask("phase", (w, min_seconds)))
      out["phase"] = ph
  finally:
    for w in workers.values():
      w.close()
  return out


def _range(v: List[float]) -> str:
  return f"{statistics.median(v):.4g} ({min(v):.3g}–{max(v):.3g})"


def print_table(rows: List[Dict[str, Any]]) -> None:
  print("| model | batch × size | params | jax img/s | torch img/s | "
        "jax/torch | jax cores | torch cores | jax MiB | torch MiB | "
        "jax compile s | jax compile MiB | GFLOP/img (XLA) |")
  print("|" + "---|" * 13)
  for row in rows:
    c = row["case"]
    if "error" in row:
      print(f"| {c.name} | {c.batch} × {c.size}² | FAILED: "
            f"{row['error']} |" + " |" * 10)
      continue
    ij, it = _ips(row["jax_rounds"], c.batch), _ips(row["torch_rounds"],
                                                      c.batch)
    ratio = statistics.median(ij) / statistics.median(it)
    ji = row["jax_info"]
    print(f"| {c.name} | {c.batch} × {c.size}² | {ji['params']:,} | "
          f"{_range(ij)} | {_range(it)} | {ratio:.2f} | "
          f"{_cores(row['jax_rounds']):.2f} | "
          f"{_cores(row['torch_rounds']):.2f} | "
          f"{row['jax_memory']['peak_mib']:,.0f} | "
          f"{row['torch_memory']['peak_mib']:,.0f} | "
          f"{ji['compile_s']:.1f} | {ji['setup_peak_mib']:,.0f} | "
          f"{ji['gflop_per_image']:.3g} |")


def print_phase(row: Dict[str, Any]) -> None:
  c, ph = row["case"], row["phase"]
  fws = ("jax", "torch")
  ms = lambda rounds: statistics.median(1e3 * r["wall"] / r["steps"]
                                        for r in rounds)
  fwd = {fw: ms(ph[fw, "forward"]) for fw in fws}
  fb = {fw: ms(ph[fw, "forward_backward"]) for fw in fws}
  lines = [
      ("forward", fwd, {fw: _cores(ph[fw, "forward"]) for fw in fws}),
      ("forward+backward", fb,
       {fw: _cores(ph[fw, "forward_backward"]) for fw in fws}),
      ("backward (difference)", {fw: fb[fw] - fwd[fw] for fw in fws}, None)]
  if "jax_rounds" in row:
    step = {fw: ms(row[fw + "_rounds"]) for fw in fws}
    lines += [("full train step", step,
               {fw: _cores(row[fw + "_rounds"]) for fw in fws}),
              ("update + rest (difference)",
               {fw: step[fw] - fb[fw] for fw in fws}, None)]
  print(f"\nPhase split, {c.name} {c.batch} × {c.size}² (ms per call, median "
        "of rounds; jax/torch = torch ms / jax ms, > 1: JAX faster):\n")
  print("| phase | jax ms | torch ms | jax/torch | jax cores | torch cores |")
  print("|---|---|---|---|---|---|")
  for label, v, cores in lines:
    cj, ct = (f"{cores[fw]:.2f}" if cores else "" for fw in fws)
    print(f"| {label} | {v['jax']:.1f} | {v['torch']:.1f} | "
          f"{v['torch'] / v['jax']:.2f} | {cj} | {ct} |")
  comp = row.get("jax_phase_compile", {})
  if comp:
    print("\nJAX compile s: " + ", ".join(f"{k} {v:.1f}"
                                          for k, v in comp.items()))


def main(argv: Optional[List[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                      help="comma-separated registry names (classes SmallCNN, "
                      "UNet, ResNet, DeepLabV3, SegNet, SSD-VGG)")
  parser.add_argument("--rounds", type=int, default=None,
                      help="alternating rounds per framework (5; --quick 2)")
  parser.add_argument("--min-seconds", type=float, default=None,
                      help="minimum seconds per round (3; --quick 0.3)")
  parser.add_argument("--quick", action="store_true",
                      help="registry smoke widths at tiny sizes")
  parser.add_argument("--batch", type=int, default=0,
                      help="override every model's batch")
  parser.add_argument("--size", type=int, default=0,
                      help="override every model's side in pixels")
  parser.add_argument("--torch-threads", type=int, default=0,
                      help="torch.set_num_threads (0: PyTorch's default)")
  parser.add_argument("--phase-model", default="resnet50",
                      help="model for the forward / forward+backward split "
                      "('none' to skip)")
  args = parser.parse_args(argv)
  rounds = args.rounds or (2 if args.quick else 5)
  min_seconds = args.min_seconds or (0.3 if args.quick else 3.0)
  sizes = QUICK_SIZES if args.quick else FULL_SIZES
  names = [n.strip() for n in args.models.split(",") if n.strip()]
  phase_name = None if args.phase_model == "none" else args.phase_model
  todo = names + ([phase_name] if phase_name and phase_name not in names
                  else [])

  load0 = os.getloadavg()
  print(f"# visionjax vs PyTorch CPU twins: {platform.processor() or ''} "
        f"{os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"{'quick' if args.quick else 'full'}, {rounds} rounds of >= "
        f"{min_seconds:g} s, float32", flush=True)
  print(f"load average before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}",
        flush=True)
  t_all = time.perf_counter()
  rows, phase_row = [], None
  for name in todo:
    batch, size = sizes.get(name, (4, 64))
    batch, size = args.batch or batch, args.size or size
    main_run = name in names
    _log(f"{name}: batch {batch}, {size}x{size}"
         + (" (+ phase split)" if name == phase_name else "")
         + f"; load average {os.getloadavg()[0]:.2f}")
    t0 = time.perf_counter()
    try:
      case = make_case(name, args.quick, batch, size, args.torch_threads)
      row = run_case(case, rounds, min_seconds, main_run, name == phase_name)
    except Exception as e:  # report and keep going with the other models.
      _log(f"  FAILED: {e}")
      row = {"case": Case(name, "?", "?", 0, batch, size, args.quick, ()),
             "error": str(e).splitlines()[-1][:120]}
    _log(f"  {name} done in {time.perf_counter() - t0:.0f} s")
    if main_run:
      rows.append(row)
    if name == phase_name and "phase" in row:
      phase_row = row
  load1 = os.getloadavg()
  ok = next((r for r in rows if "jax_info" in r), None)
  print()
  if ok:
    print(f"{ok['jax_info']['version']} ({ok['jax_info']['threads']}); "
          f"{ok['torch_info']['version']} ({ok['torch_info']['threads']})\n")
  print_table(rows)
  losses = ", ".join(
      f"{r['case'].name} {r['jax_memory']['loss']:.3g}/"
      f"{r['torch_memory']['loss']:.3g}" for r in rows if "jax_memory" in r)
  print(f"\nlast loss jax/torch (finite = sane): {losses}")
  if phase_row is not None:
    print_phase(phase_row)
  print(f"\nload average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; "
        f"total {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
  main()

"""Where a train step's time goes: visionjax's compiled step vs the PyTorch twin.

    python benchmarks/profile_step.py                      # the seven models
    python benchmarks/profile_step.py --models=unet_small --steps=5

For each model of `benchmarks/vs_pytorch.py` (same registry model, PyTorch
twin, batch and size: its `make_case`, `JaxRunner` and `TorchRunner` are
imported, so the programs profiled are the ones that script times), each
framework runs in its own spawned child: build, compile, 2 warm-up steps,
then `--steps` steps under the framework's profiler. Per model it prints ms
per step (wall, measured around the profiled steps, profiler on) and the
time per category for both side by side, and the gap per category (jax ms -
torch ms; > 0: JAX slower there).

JAX. `jax.profiler.trace` records one event per executed thunk of the
compiled program on XLA:CPU's executor threads (args `hlo_op`); an op split
over the intra-op (Eigen) pool is one event whose duration is its wall time.
The events are summed over threads (ops that run concurrently both count)
and mapped to the optimized HLO (`compiled.as_text()`) by instruction name:
  * `convolution` (top level or inside a YNN custom fusion): forward if it
    has a `metadata op_name` without `transpose(` (JAX names the backward
    pass `transpose(jvp(...))`); otherwise a gradient (XLA drops the
    metadata of the weight gradients it rewrites into window-dilated
    convolutions). Which operand's gradient is read from shapes, because
    XLA canonicalizes convolutions to `b01f_01io->b01f` (and may even swap
    a forward convolution's operands), so dimension numbers do not tell:
    each forward convolution's activation is the operand sharing more dims
    with its output (batch and spatial sizes; the kernel shares only the
    output channels); a gradient whose output dims are a permutation of a
    forward kernel's is a weight gradient, of a forward activation's an
    input gradient; if neither or both match, a weight gradient is one
    whose output extent is smaller than its window (the activation).
  * `dot` / fusions containing a `dot` (XNNPACK/YNN custom fusions included):
    dot/GEMM (the zoo's 1×1 convolutions and dense layers, both passes).
  * `transpose`, `copy` and fusions made only of data movement (transpose,
    copy, bitcast, reshape, reverse, broadcast, slice, pad, concatenate)
    that contain a transpose, copy or reverse, and fusions whose root is a
    transpose or copy, possibly under bitcasts (a layout change with elementwise work fused into it,
    e.g. a ReLU gradient): transpose/copy (layout).
  * `reduce-window` / `select-and-scatter` (top level or fused) whose op_name
    is a JAX pooling primitive (`reduce_window*`, `select_and_scatter*`,
    `*pool*`): pooling. XLA's tree-reduction rewrite also emits
    reduce-windows for big sums (BatchNorm statistics): those are fusions.
    The zoo's own pooling forms (max of strided slices, `visionjax.ops`)
    carry no pooling primitive name and count as other fusions.
  * fusions whose op_name has a BatchNorm scope (`/norm/`, `/bn/`, ...):
    BatchNorm (statistics, normalization and their gradients; a ReLU fused
    into them counts here too).
  * other fusions (elementwise, reductions, loss, optimizer), and
    everything else (sort, scatter, gather, custom calls, ...).

PyTorch. `torch.profiler` (CPU), self CPU time per aten op summed over
events (intra-op OpenMP threads are inside their op's event), grouped the
same way: `mkldnn_convolution`/`_slow_conv2d_forward`/... forward;
`convolution_backward` (one aten op on CPU: input and weight gradients are
not separate events, so they are reported together, as "conv grads (both)");
`mm`/`addmm`/`bmm`; `copy_`/`contiguous`/`clone`/`_to_copy`; pooling ops and
their backward; `native_batch_norm*`; other.

The check: the categories' sum ("op sum") against the step's wall time;
`unattributed` = wall - op sum (host overhead and idle threads when > 0,
ops overlapping on threads when < 0). The machine is shared: load averages
are printed; under load the shares matter more than the absolute ms.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
import traceback
from typing import Dict, List, Optional, Tuple

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)

import vs_pytorch as vp  # noqa: E402  (benchmarks/vs_pytorch.py)

CATEGORIES = ("conv forward", "conv input-grad", "conv weight-grad",
              "conv grads (both)", "dot/GEMM", "transpose/copy", "pooling",
              "BatchNorm", "other fusions", "everything else")
_DATA_MOVEMENT = {"parameter", "transpose", "copy", "bitcast", "reshape",
                  "reverse", "broadcast", "slice", "pad", "concatenate",
                  "constant", "tuple", "get-tuple-element", "dynamic-slice",
                  "dynamic-update-slice"}
_POOL_NAME = re.compile(r"reduce_window|select_and_scatter|pool")
# Flax BatchNorm scopes in the zoo ('.../conv1/norm/...', '.../bn/...').
_NORM_NAME = re.compile(r"/(\w*norm\w*|bn\d*)/", re.I)

# ----------------------------------------------------------------- HLO side
_INSTR = re.compile(
    r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+?(?:\{[^}]*\})?|\([^)]*\)) "
    r"([\w\-]+)\((.*)$")
_SHAPE = re.compile(r"\[([\d,]*)\]")


def _dims(shape: str) -> Tuple[int, ...]:
  m = _SHAPE.search(shape)
  return tuple(int(d) for d in m.group(1).split(",") if d) if m else ()


def parse_hlo(text: str) -> Dict[str, Dict]:
  """Instruction name -> {op, shape, rest, comp, calls} for every instruction."""
  instrs: Dict[str, Dict] = {}
  roots: Dict[str, str] = {}
  comp = None
  for line in text.splitlines():
    if line and not line.startswith(" ") and line.rstrip().endswith("{"):
      comp = line.split()[1] if line.startswith("ENTRY") else line.split()[0]
      comp = comp.lstrip("%")
      continue
    m = _INSTR.match(line)
    if not m:
      continue
    name, shape, op, rest = m.groups()
    if line.lstrip().startswith("ROOT "):
      roots[comp] = name
    calls = re.search(r"calls=%?([\w.\-]+)", rest)
    opname = re.search(r'op_name="([^"]*)"', rest)
    instrs[name] = dict(op=op, shape=shape, rest=rest, comp=comp,
                        calls=calls.group(1) if calls else None,
                        op_name=opname.group(1) if opname else "")
  for v in instrs.values():
    root = instrs.get(roots.get(v["calls"]))
    while root and root["op"] in ("bitcast", "reshape"):  # see through
      root = instrs.get(next(iter(_operands(root["rest"])), None))
    v["root_op"] = root["op"] if root else None
  return instrs


def _operands(rest: str) -> List[str]:
  return re.findall(r"%([\w.\-]+)", rest.split(")", 1)[0])


class HloCategorizer:
  """Maps an executed HLO instruction name to a CATEGORIES entry."""

  def __init__(self, text: str):
    self.instrs = parse_hlo(text)
    self.entry = text.split("\nENTRY ", 1)[1].split()[0].lstrip("%")
    self.by_comp: Dict[str, List[Dict]] = collections.defaultdict(list)
    for v in self.instrs.values():
      self.by_comp[v["comp"]].append(v)
    # The forward convolutions' kernels and activations. XLA may swap a
    # convolution's operands, so lhs/rhs do not tell: the activation is the
    # operand sharing more dims with the output (batch and spatial sizes;
    # the kernel shares only the output channels).
    self.kernels, self.activations = set(), set()
    for v in self.instrs.values():
      if (v["op"] == "convolution" and v["op_name"]
          and "transpose(" not in v["op_name"]):
        out = collections.Counter(_dims(v["shape"]))
        a, b = (tuple(sorted(_dims(self.instrs[o]["shape"])))
                for o in _operands(v["rest"])[:2])
        if _shared(b, out) > _shared(a, out):
          a, b = b, a
        self.activations.add(a)
        self.kernels.add(b)
    self.cache: Dict[str, str] = {}

  def _conv(self, v: Dict) -> str:
    if v["op_name"] and "transpose(" not in v["op_name"]:
      return "conv forward"
    # A gradient (XLA drops the metadata of the weight gradients it rewrites
    # into window-dilated convolutions, hence `not op_name` too).
    out = tuple(sorted(_dims(v["shape"])))
    is_w, is_x = out in self.kernels, out in self.activations
    if is_w == is_x:  # ambiguous: window larger than the output's extent.
      win = re.search(r"size=([\dx]+)", v["rest"])
      wsize = [int(s) for s in win.group(1).split("x")] if win else [1]
      spatial = _dims(v["shape"])[1:-1]
      is_w = bool(spatial) and _prod(spatial) < _prod(wsize)
    return "conv weight-grad" if is_w else "conv input-grad"

  def _ops_in(self, comp: str, seen=None) -> List[Dict]:
    seen = seen if seen is not None else set()
    if comp in seen:
      return []
    seen.add(comp)
    out = []
    for v in self.by_comp.get(comp, []):
      out.append(v)
      if v["calls"]:
        out += self._ops_in(v["calls"], seen)
    return out

  def category(self, name: str) -> str:
    if name in self.cache:
      return self.cache[name]
    v = self.instrs.get(name)
    if v is None:
      cat = "everything else"
    else:
      ops = [v] + (self._ops_in(v["calls"]) if v["calls"] else [])
      kinds = {o["op"] for o in ops} - {"fusion"}
      if "convolution" in kinds:
        cat = self._conv(next(o for o in ops if o["op"] == "convolution"))
      elif "dot" in kinds:
        cat = "dot/GEMM"
      elif kinds & {"reduce-window", "select-and-scatter"} and any(
          _POOL_NAME.search(o["op_name"]) for o in ops):
        cat = "pooling"
      elif (kinds <= _DATA_MOVEMENT and kinds & {"transpose", "copy",
                                                 "reverse"}
            or v["root_op"] in ("transpose", "copy")):
        cat = "transpose/copy"
      elif _NORM_NAME.search(v["op_name"]):
        cat = "BatchNorm"
      elif v["op"] == "fusion" or kinds <= {
          "add", "multiply", "subtract", "divide", "maximum", "select",
          "reduce", "compare", "rsqrt", "exponential", "log", "negate"}:
        cat = "other fusions"
      else:
        cat = "everything else"
    self.cache[name] = cat
    return cat


def _shared(dims: Tuple[int, ...], other: collections.Counter) -> int:
  return sum((collections.Counter(dims) & other).values())


def _prod(xs) -> int:
  p = 1
  for x in xs:
    p *= x
  return p


def jax_trace_categories(trace_dir: str, categorizer: HloCategorizer
                         ) -> Tuple[Dict[str, float], Dict[str, float]]:
  """Thread-summed microseconds per category, and per HLO op (top 15)."""
  path, = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"),
                    recursive=True)
  with gzip.open(path) as f:
    events = json.load(f)["traceEvents"]
  per_cat: Dict[str, float] = collections.defaultdict(float)
  per_op: Dict[str, float] = collections.defaultdict(float)
  for e in events:
    op = (e.get("args") or {}).get("hlo_op")
    if e.get("ph") != "X" or not op:
      continue
    per_cat[categorizer.category(op)] += e["dur"]
    per_op[op] += e["dur"]
  return per_cat, per_op


# --------------------------------------------------------------- torch side
_TORCH_RULES = (
    ("conv grads (both)", re.compile(r"convolution_backward|conv\w*_backward|"
                                     r"conv_transpose\w*_backward")),
    ("conv forward", re.compile(r"mkldnn_convolution|slow_conv|conv_depthwise"
                                r"|_nnpack|^aten::_?convolution$|conv2d$|"
                                r"conv_transpose")),
    ("pooling", re.compile(r"pool|unpool")),
    ("BatchNorm", re.compile(r"batch_norm")),
    ("dot/GEMM", re.compile(r"^aten::(mm|addmm|bmm|matmul|linear|baddbmm)$")),
    ("transpose/copy", re.compile(r"^aten::(copy_|contiguous|clone|_to_copy|"
                                  r"to|permute|transpose|t)$")),
)


def torch_category(name: str) -> str:
  for cat, rx in _TORCH_RULES:
    if rx.search(name):
      return cat
  return "other fusions" if name.startswith("aten::") else "everything else"


# ------------------------------------------------------------------ workers
def _child(framework: str, case: vp.Case, steps: int, conn) -> None:
  try:
    if framework == "jax":
      conn.send(("ok", _profile_jax(case, steps)))
    else:
      conn.send(("ok", _profile_torch(case, steps)))
  except BaseException:
    conn.send(("error", traceback.format_exc()))


def _profile_jax(case: vp.Case, steps: int) -> Dict:
  import jax
  runner = vp.JaxRunner(case)
  for _ in range(vp.WARMUP_STEPS):
    runner.step()
  plain = _plain_ms(runner, steps)
  categorizer = HloCategorizer(runner.compiled.as_text())
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d):
      t0 = time.perf_counter()
      for _ in range(steps):
        runner.step()
      wall = time.perf_counter() - t0
    per_cat, per_op = jax_trace_categories(d, categorizer)
  top = sorted(per_op.items(), key=lambda kv: -kv[1])[:12]
  return {"wall_ms": 1e3 * wall / steps, "plain_ms": plain,
          "cats": {k: v / 1e3 / steps for k, v in per_cat.items()},
          "top": [(k, categorizer.category(k), v / 1e3 / steps)
                  for k, v in top],
          "compile_s": runner.compile_s}


def _profile_torch(case: vp.Case, steps: int) -> Dict:
  from torch.profiler import ProfilerActivity, profile
  runner = vp.TorchRunner(case)
  for _ in range(vp.WARMUP_STEPS):
    runner.step()
  plain = _plain_ms(runner, steps)
  with profile(activities=[ProfilerActivity.CPU]) as prof:
    t0 = time.perf_counter()
    for _ in range(steps):
      runner.step()
    wall = time.perf_counter() - t0
  cats: Dict[str, float] = collections.defaultdict(float)
  per_op = []
  for e in prof.key_averages():
    cats[torch_category(e.key)] += e.self_cpu_time_total / 1e3 / steps
    per_op.append((e.key, torch_category(e.key),
                   e.self_cpu_time_total / 1e3 / steps))
  top = sorted(per_op, key=lambda t: -t[2])[:12]
  return {"wall_ms": 1e3 * wall / steps, "plain_ms": plain,
          "cats": dict(cats), "top": top}


def _plain_ms(runner, steps: int) -> float:
  """ms per step of the same steps without the profiler (its overhead)."""
  t0 = time.perf_counter()
  for _ in range(steps):
    runner.step()
  return 1e3 * (time.perf_counter() - t0) / steps


def _run_child(framework: str, case: vp.Case, steps: int) -> Dict:
  ctx = multiprocessing.get_context("spawn")
  conn, child = ctx.Pipe()
  proc = ctx.Process(target=_child, args=(framework, case, steps, child),
                     daemon=True)
  proc.start()
  child.close()
  try:
    status, payload = conn.recv()
  except EOFError:
    raise RuntimeError(f"{framework} child died (exit code "
                       f"{proc.exitcode})") from None
  finally:
    proc.join(60)
  if status != "ok":
    raise RuntimeError(f"{framework} child failed:\n{payload}")
  return payload


# ------------------------------------------------------------------ report
def print_model(case: vp.Case, res: Dict[str, Dict], top: bool) -> None:
  j, t = res["jax"], res["torch"]
  print(f"\n## {case.name} {case.batch} × {case.size}²: jax {j['wall_ms']:.1f}"
        f" ms/step, torch {t['wall_ms']:.1f} ms/step (profiler on; "
        f"jax/torch speed {t['wall_ms'] / j['wall_ms']:.2f}; profiler off "
        f"{t['plain_ms']:.1f} / {j['plain_ms']:.1f} ms, "
        f"{t['plain_ms'] / j['plain_ms']:.2f})\n")
  print("| category | jax ms | jax % | torch ms | torch % | gap ms (jax-torch)"
        " |")
  print("|---|---:|---:|---:|---:|---:|")
  sj, st = sum(j["cats"].values()), sum(t["cats"].values())
  for cat in CATEGORIES:
    a, b = j["cats"].get(cat, 0.0), t["cats"].get(cat, 0.0)
    if a == 0 and b == 0:
      continue
    print(f"| {cat} | {a:.1f} | {100 * a / sj:.0f} | {b:.1f} | "
          f"{100 * b / st:.0f} | {a - b:+.1f} |")
  print(f"| op sum (threads summed) | {sj:.1f} | 100 | {st:.1f} | 100 | "
        f"{sj - st:+.1f} |")
  print(f"| wall per step | {j['wall_ms']:.1f} | | {t['wall_ms']:.1f} | | "
        f"{j['wall_ms'] - t['wall_ms']:+.1f} |")
  print(f"| wall per step, profiler off | {j['plain_ms']:.1f} | | "
        f"{t['plain_ms']:.1f} | | {j['plain_ms'] - t['plain_ms']:+.1f} |")
  print(f"| unattributed (wall - op sum) | {j['wall_ms'] - sj:+.1f} | | "
        f"{t['wall_ms'] - st:+.1f} | | |")
  # The gap's biggest contributors, with conv gradients compared as a whole
  # (PyTorch does not split them).
  g = dict((c, j["cats"].get(c, 0.0) - t["cats"].get(c, 0.0))
           for c in CATEGORIES)
  g["conv grads (both)"] = (j["cats"].get("conv input-grad", 0.0)
                            + j["cats"].get("conv weight-grad", 0.0)
                            + j["cats"].get("conv grads (both)", 0.0)
                            - t["cats"].get("conv grads (both)", 0.0))
  g.pop("conv input-grad"), g.pop("conv weight-grad")
  worst = sorted(g.items(), key=lambda kv: -kv[1])[:3]
  print("\ngap (op sum jax - torch) "
        f"{sj - st:+.1f} ms; largest: " + ", ".join(
            f"{c} {v:+.1f} ms" for c, v in worst if v > 0))
  if top:
    for fw in ("jax", "torch"):
      print(f"\ntop ops, {fw}: " + "; ".join(
          f"{n} [{c}] {ms:.1f}" for n, c, ms in res[fw]["top"]))


def main(argv: Optional[List[str]] = None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--models", default=",".join(vp.DEFAULT_MODELS))
  ap.add_argument("--steps", type=int, default=3,
                  help="profiled steps per framework (after 2 warm-up)")
  ap.add_argument("--quick", action="store_true",
                  help="registry smoke widths at tiny sizes")
  ap.add_argument("--top", action="store_true",
                  help="also print the 12 costliest ops of each framework")
  args = ap.parse_args(argv)
  if args.steps < 1:
    raise ValueError(f"--steps must be >= 1, got {args.steps}")
  sizes = vp.QUICK_SIZES if args.quick else vp.FULL_SIZES
  load = os.getloadavg()
  print(f"# per-category step profile, {os.cpu_count()} cpus, {args.steps} "
        f"profiled steps; load average before {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}", flush=True)
  t_all = time.perf_counter()
  for name in [n.strip() for n in args.models.split(",") if n.strip()]:
    batch, size = sizes.get(name, (4, 64))
    case = vp.make_case(name, args.quick, batch, size)
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    try:
      res = {fw: _run_child(fw, case, args.steps) for fw in ("jax", "torch")}
    except RuntimeError as e:
      print(f"\n## {name}: FAILED {str(e).splitlines()[-1]}", flush=True)
      continue
    print_model(case, res, args.top)
    print(f"({name}: {time.perf_counter() - t0:.0f} s, jax compile "
          f"{res['jax']['compile_s']:.0f} s, load {load0:.2f} -> "
          f"{os.getloadavg()[0]:.2f})", flush=True)
  load = os.getloadavg()
  print(f"\nload average after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"total {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
  main()

"""Learning curves from ``metrics.jsonl`` records."""
from __future__ import annotations

from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

# Train keys worth a panel (in this order), then any scalar eval metric.
_TRAIN_KEYS = ("loss", "accuracy", "pixel_accuracy", "learning_rate", "grad_norm")
_SKIP_EVAL = {"num_examples"}


def plot_learning_curves(records: Sequence[dict[str, Any]], path: str) -> None:
  """One panel per metric, train and eval on shared step axes; saved as PNG."""
  train = [r for r in records if r["split"] == "train"]
  evals = [r for r in records if r["split"] == "eval"]
  keys = [k for k in _TRAIN_KEYS if any(k in r for r in train)]
  eval_keys = sorted({k for r in evals for k, v in r.items()
                      if isinstance(v, (int, float)) and k not in ("step", "time")
                      and k not in _SKIP_EVAL and k not in keys})
  panels = keys + eval_keys
  if not panels:
    return
  cols = min(3, len(panels))
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
  for ax, key in zip(axes.flat, panels):
    for split, rs, style in (("train", train, "-"), ("eval", evals, "o-")):
      pts = [(r["step"], r[key]) for r in rs if isinstance(r.get(key), (int, float))]
      if pts:
        ax.plot(*zip(*pts), style, label=split, markersize=4)
    ax.set_title(key)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if key in ("loss", "learning_rate", "grad_norm"):
      vals = [r[key] for r in train if isinstance(r.get(key), (int, float))]
      if vals and min(vals) > 0:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
  for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)

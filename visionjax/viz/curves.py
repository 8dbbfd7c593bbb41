"""Learning curves from ``metrics.jsonl`` records."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from etils import epath
from matplotlib.figure import Figure

from visionjax.viz import _figure

# Train keys worth a panel (in this order), then any scalar eval metric.
_TRAIN_KEYS = ("loss", "accuracy", "pixel_accuracy", "learning_rate", "grad_norm")
_SKIP_EVAL = {"num_examples"}


def _is_number(v: Any) -> bool:
  return isinstance(v, (int, float))


def learning_curves_figure(records: Sequence[dict[str, Any]]) -> Optional[Figure]:
  """One panel per metric, train and eval on shared step axes.

  Args:
    records: dicts with ``split`` ("train" or "eval"), ``step`` and scalar
      metrics, as `visionjax.train.reporting.read_metrics` returns them.

  Returns:
    A figure with up to 3 panels (4.5 x 3.2 in each) a row, or None when no
    record has anything to plot.
  """
  train = [r for r in records if r["split"] == "train"]
  evals = [r for r in records if r["split"] == "eval"]
  keys = [k for k in _TRAIN_KEYS if any(k in r for r in train)]
  eval_keys = sorted({k for r in evals for k, v in r.items()
                      if _is_number(v) and k not in ("step", "time")
                      and k not in _SKIP_EVAL and k not in keys})
  panels = keys + eval_keys
  if not panels:
    return None
  fig, axes = _figure.grid(len(panels), 3, 4.5, 3.2)
  for ax, key in zip(axes, panels):
    for split, rs, style in (("train", train, "-"), ("eval", evals, "o-")):
      pts = [(r["step"], r[key]) for r in rs if _is_number(r.get(key))]
      if pts:
        ax.plot(*zip(*pts), style, label=split, markersize=4)
    ax.set_title(key)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if key in ("loss", "learning_rate", "grad_norm"):
      vals = [r[key] for r in train if _is_number(r.get(key))]
      if vals and min(vals) > 0:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
  fig.tight_layout()
  return fig


def plot_learning_curves(records: Sequence[dict[str, Any]], path: epath.PathLike) -> None:
  """Writes `learning_curves_figure` as PNG to ``path``; nothing if it is None."""
  fig = learning_curves_figure(records)
  if fig is not None:
    _figure.write_png(fig, path)

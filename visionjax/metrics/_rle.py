"""Binary masks as runs of foreground pixels, and their pairwise IoU (host, NumPy).

A mask of an H×W image is flattened column-major (COCO's RLE order: down
each column, then the next column) and stored as its foreground runs
``[start, end)``. Masks of one update are packed CSR-style (``ptr``) so that
the intersection of many (detection, ground truth) pairs is computed at once
without expanding a single bitmap: with ``F_g(x)`` the number of foreground
pixels of g before position x (a ``searchsorted`` over g's run ends plus a
prefix sum), ``|d ∩ g| = Σ_{runs [s, e) of d} F_g(e) - F_g(s)``. Work is
proportional to the runs of the detections, not to the pixels.

IoU as pycocotools' ``maskUtils.iou`` (``rleIou``): ``i / u`` with
``u = |d| + |g| - i`` (for a crowd g: ``u = |d|``), and 0 when ``i = 0``;
integer counts, one float64 division, so results are bit-identical.
"""
from __future__ import annotations

import dataclasses

import numpy as np

_PAIR_CHUNK = 1 << 22  # detection runs expanded at once (bounds memory to ~200 MB)


@dataclasses.dataclass(frozen=True)
class Runs:
  """N masks: foreground runs ``starts``/``ends`` int64 [total] (column-major
  flat positions, ``ptr`` int64 [N + 1] delimits each mask's runs), sizes
  ``hw`` int64 [N, 2] (height, width) and pixel areas int64 [N]."""
  starts: np.ndarray
  ends: np.ndarray
  ptr: np.ndarray
  hw: np.ndarray

  @property
  def area(self):
    n = len(self)
    owner = np.repeat(np.arange(n), np.diff(self.ptr))
    return np.bincount(owner, weights=self.ends - self.starts, minlength=n).astype(np.int64)

  def __len__(self):
    return self.hw.shape[0]


def _empty():
  z = np.zeros(0, np.int64)
  return Runs(z, z, np.zeros(1, np.int64), np.zeros((0, 2), np.int64))


def from_bitmaps(masks) -> Runs:
  """Runs of a stack of masks [N, H, W] (nonzero = foreground)."""
  masks = np.asarray(masks)
  if masks.ndim != 3:
    raise ValueError(f"masks has shape {masks.shape}; expected [N, H, W]")
  n, h, w = masks.shape
  if n == 0:
    return _empty()
  flat = (masks != 0).transpose(0, 2, 1).reshape(n, h * w).astype(np.int8)
  edges = np.diff(flat, axis=1, prepend=0, append=0)               # [N, HW + 1]
  m_s, starts = np.nonzero(edges == 1)
  _, ends = np.nonzero(edges == -1)
  ptr = np.searchsorted(m_s, np.arange(n + 1), side="left").astype(np.int64)
  return Runs(starts.astype(np.int64), ends.astype(np.int64), ptr,
              np.tile(np.array([[h, w]], np.int64), (n, 1)))


def _segmented_cumsum(x, seg_start):
  """Cumulative sums of x restarting where seg_start is True."""
  cs = np.cumsum(x)
  start_idx = np.flatnonzero(seg_start)
  base = (cs - x)[start_idx]
  return cs - np.repeat(base, np.diff(np.r_[start_idx, x.size]))


def decode_strings(strings):
  """Run lengths of many compressed COCO RLE strings at once.

  The format (pycocotools' ``rleToString``): each count is 6-bit chunks as
  chars offset by 48, low bits first: 5 value bits and a continuation bit
  (0x20); the last chunk's 0x10 bit is the sign. From the third count on, a
  count is stored as the difference to the count two before it.

  Returns ``(counts int64 [total], ptr int64 [N + 1])``.
  """
  raw = [s.encode("ascii") if isinstance(s, str) else bytes(s) for s in strings]
  lens = np.fromiter((len(r) for r in raw), np.int64, len(raw))
  c = np.frombuffer(b"".join(raw), np.uint8) - np.uint8(48)
  if c.size == 0:
    return np.zeros(0, np.int64), np.zeros(len(raw) + 1, np.int64)
  last = (c & 0x20) == 0                                    # a count's final chunk
  string_end = np.cumsum(lens)
  if np.any(~last[string_end[lens > 0] - 1]):
    raise ValueError("an RLE string ends inside a count (continuation bit set on its last char)")
  ends = np.flatnonzero(last)                               # last chunk of each count
  starts = np.r_[0, ends[:-1] + 1]
  n_chunks = ends - starts + 1
  # Most counts are one chunk: add the chunks in rounds over the shrinking set
  # of longer counts instead of materializing per-chunk arrays.
  x = (c[starts] & 0x1F).astype(np.int64)
  longer = np.flatnonzero(n_chunks > 1)
  j = 1
  while longer.size:
    x[longer] |= (c[starts[longer] + j] & 0x1F).astype(np.int64) << (5 * j)
    j += 1
    longer = longer[n_chunks[longer] > j]
  sign = (c[ends] & 0x10) != 0
  x[sign] -= np.left_shift(np.int64(1), 5 * n_chunks[sign])
  # Counts per string: chunks are never shared between strings.
  cum = np.cumsum(last, dtype=np.int64)
  ptr = np.r_[0, np.where(string_end > 0, cum[np.maximum(string_end - 1, 0)], 0)]
  per_string = np.diff(ptr)
  base = np.repeat(ptr[:-1], per_string)                    # index of the string's m = 0
  m = np.arange(x.size) - base
  # count[m] = x[m] + count[m - 2] for m > 2: chains over every other count
  # starting at m = 1 (odd) and m = 2 (even); m = 0 stands alone. With G the
  # global stride-2 cumulative sum, a chain's value is G[i] - G[chain start - 2]
  # = G[i] - G[base - (m odd)] (same parity as i: one stride-2 series).
  g = np.empty_like(x)
  g[0::2] = np.cumsum(x[0::2])
  g[1::2] = np.cumsum(x[1::2])
  prev = base - (m & 1)
  out = np.where(m == 0, x, g - np.where(prev >= 0, g[np.maximum(prev, 0)], 0))
  return out, ptr


def from_rles(rles) -> Runs:
  """Runs of COCO RLE dicts ``{'size': [h, w], 'counts': ...}`` (compressed
  string/bytes or an uncompressed list)."""
  rles = list(rles)
  for i, r in enumerate(rles):
    if not isinstance(r, dict) or "counts" not in r or "size" not in r:
      raise ValueError(f"mask {i} is {type(r).__name__}; expected an RLE dict with 'size' and "
                       "'counts' (polygons: convert with pycocotools.mask.frPyObjects)")
  if not rles:
    return _empty()
  hw = np.asarray([[int(v) for v in r["size"]] for r in rles], np.int64).reshape(-1, 2)
  packed = np.array([isinstance(r["counts"], (str, bytes)) for r in rles])
  n = len(rles)
  if packed.all():  # the common case (COCO results): one vectorised decode
    c, ptr_c = decode_strings([r["counts"] for r in rles])
    per = np.diff(ptr_c)
  else:
    lengths = [None] * n
    idx = np.flatnonzero(packed)
    if idx.size:
      cnt, ptr_c = decode_strings([rles[i]["counts"] for i in idx])
      for j, i in enumerate(idx):
        lengths[i] = cnt[ptr_c[j]:ptr_c[j + 1]]
    for i in np.flatnonzero(~packed):
      lengths[i] = np.asarray(rles[i]["counts"], np.int64).reshape(-1)
    per = np.fromiter((a.size for a in lengths), np.int64, n)
    c = np.concatenate(lengths) if per.sum() else np.zeros(0, np.int64)
  owner = np.repeat(np.arange(n), per)
  total = np.bincount(owner, weights=c, minlength=n).astype(np.int64)
  bad = np.flatnonzero((total != hw[:, 0] * hw[:, 1]) |
                       (np.bincount(owner, weights=c < 0, minlength=n) > 0))
  if bad.size:
    i = bad[0]
    raise ValueError(f"mask {i}: RLE counts sum to {total[i]}; expected non-negative counts "
                     f"summing to h·w = {hw[i, 0] * hw[i, 1]} (size {hw[i].tolist()})")
  ends = _segmented_cumsum(c, np.r_[True, owner[1:] != owner[:-1]] if c.size else
                           np.zeros(0, bool))
  m = np.arange(c.size) - np.repeat(np.concatenate([[0], np.cumsum(per)[:-1]]), per)
  fg = (m % 2 == 1) & (c > 0)                                  # odd runs are foreground
  ptr = np.concatenate([[0], np.cumsum(np.bincount(owner[fg], minlength=n))]).astype(np.int64)
  return Runs(ends[fg] - c[fg], ends[fg], ptr, hw)


def from_any(masks, name: str) -> Runs:
  """A [N, H, W] array, a sequence of 2-D arrays (sizes may differ) or of RLE
  dicts."""
  if isinstance(masks, Runs):
    return masks
  if isinstance(masks, np.ndarray) or hasattr(masks, "__array__") and not isinstance(
      masks, (list, tuple)):
    arr = np.asarray(masks)
    if arr.ndim != 3:
      raise ValueError(f"{name} has shape {arr.shape}; expected [N, H, W] or a list of masks")
    return from_bitmaps(arr)
  masks = list(masks)
  if not masks:
    return _empty()
  if all(isinstance(m, dict) for m in masks):
    return from_rles(masks)
  parts = []
  for i, m in enumerate(masks):
    a = np.asarray(m)
    if a.ndim != 2:
      raise ValueError(f"{name}[{i}] has shape {a.shape}; expected a 2-D [H, W] mask or an RLE "
                       "dict")
    parts.append(from_bitmaps(a[None]))
  return concat(parts)


def concat(parts) -> Runs:
  if not parts:
    return _empty()
  sizes = [p.starts.size for p in parts]
  offs = np.cumsum([0] + sizes[:-1])
  ptr = np.concatenate([[0]] + [p.ptr[1:] + o for p, o in zip(parts, offs)])
  return Runs(np.concatenate([p.starts for p in parts]), np.concatenate([p.ends for p in parts]),
              ptr.astype(np.int64), np.concatenate([p.hw for p in parts]))


def pair_intersections(dt: Runs, gt: Runs, pd, pg) -> np.ndarray:
  """|dt[pd[k]] ∩ gt[pg[k]]| for every pair k (int64 [K])."""
  pd = np.asarray(pd, np.int64)
  pg = np.asarray(pg, np.int64)
  out = np.zeros(pd.size, np.int64)
  if pd.size == 0:
    return out
  # Ground truth on one global axis: mask j's pixels at offset goff[j].
  npix = gt.hw[:, 0] * gt.hw[:, 1]
  goff = np.concatenate([[0], np.cumsum(npix)[:-1]])
  gcount = np.diff(gt.ptr)
  g_s = gt.starts + np.repeat(goff, gcount)
  g_e = gt.ends + np.repeat(goff, gcount)
  cum = np.concatenate([[0], np.cumsum(g_e - g_s)])
  n_g = g_s.size

  def before(x):  # foreground pixels of the global gt axis before x
    j = np.searchsorted(g_e, x, side="right")
    part = np.maximum(x - g_s[np.minimum(j, max(n_g - 1, 0))], 0) if n_g else 0
    return cum[j] + np.where(j < n_g, part, 0)

  nruns = np.diff(dt.ptr)[pd]
  bounds = np.concatenate([[0], np.cumsum(nruns)])
  # Chunks of pairs whose expanded runs fit the memory bound.
  k0 = 0
  while k0 < pd.size:
    k1 = int(np.searchsorted(bounds, bounds[k0] + _PAIR_CHUNK, side="right")) - 1
    k1 = max(k1, k0 + 1)
    n = nruns[k0:k1]
    total = int(n.sum())
    if total:
      pair = np.repeat(np.arange(k0, k1), n)
      first = np.repeat(dt.ptr[pd[k0:k1]], n)
      within = np.arange(total) - np.repeat(bounds[k0:k1] - bounds[k0], n)
      run = first + within
      off = goff[pg[pair]]
      inter = before(dt.ends[run] + off) - before(dt.starts[run] + off)
      out[k0:k1] = np.bincount(pair - k0, weights=inter, minlength=k1 - k0).astype(np.int64)
    k0 = k1
  return out


def pair_iou(dt: Runs, gt: Runs, pd, pg, crowd) -> np.ndarray:
  """pycocotools' mask IoU of pairs (float64 [K]); crowd: bool [K] of the gt."""
  pd = np.asarray(pd, np.int64)
  pg = np.asarray(pg, np.int64)
  bad = np.flatnonzero(np.any(dt.hw[pd] != gt.hw[pg], axis=1))
  if bad.size:
    k = bad[0]
    raise ValueError(f"a detection mask of size {dt.hw[pd[k]].tolist()} is compared with a "
                     f"ground-truth mask of size {gt.hw[pg[k]].tolist()} of the same image; "
                     "masks must be at the image's resolution")
  inter = pair_intersections(dt, gt, pd, pg)
  da = dt.area[pd]
  union = np.where(crowd, da, da + gt.area[pg] - inter)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(inter > 0, inter / np.where(inter > 0, union, 1), 0.0)

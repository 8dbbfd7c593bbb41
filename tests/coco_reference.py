"""pycocotools' COCOeval as the reference the COCO metric tests compare against
(shared by tests/test_metrics_coco.py, bbox, and test_metrics_coco_segm.py, segm)."""
import contextlib
import copy
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def run_pycocotools(gt, dets, iou_type="bbox", **param_overrides):
  """COCOeval(iou_type) evaluated, accumulated and summarized on copies of
  ``gt`` (a COCO dataset dict) and ``dets`` (a result list); prints nothing."""
  with contextlib.redirect_stdout(io.StringIO()):
    cg = COCO()
    cg.dataset = copy.deepcopy(gt)
    cg.createIndex()
    cd = cg.loadRes(copy.deepcopy(dets))
    ev = COCOeval(cg, cd, iou_type)
    for k, v in param_overrides.items():
      setattr(ev.params, k, v)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return ev


def assert_same(ours, ev):
  """precision, recall and the 12 stats equal to pycocotools' to 1e-6."""
  np.testing.assert_allclose(ours["precision"], ev.eval["precision"], rtol=0, atol=1e-6)
  np.testing.assert_allclose(ours["recall"], ev.eval["recall"], rtol=0, atol=1e-6)
  np.testing.assert_allclose(ours["stats"], ev.stats, rtol=0, atol=1e-6)

"""visionjax.classical: classical segmentation as pure JAX functions.

The seeds' pre-deep-learning methods, as baselines for the learned models
(``visionjax baselines`` scores them on the built-in scenes): thresholding
(Otsu, local mean/Gaussian), edges (Sobel, Canny), clustering (k-means on
colours, spectral clustering of a pixel graph) and a region method (SLIC
superpixels). All are jit-able with static shapes; the filters and
thresholds take [..., H, W] batches, the per-image methods vmap.

Each follows scikit-image / scikit-learn's definition and is compared with it
in tests/test_classical.py: identical results for the deterministic ones
(Otsu, threshold_local, Sobel, Canny, the SLIC seed grid), measured
agreement for the iterative ones (k-means labels and centres from the same
initial centres, spectral clustering's adjusted Rand index, SLIC's
pixel-label agreement).
"""
from visionjax.classical.clustering import (
                                            kmeans,
                                            kmeans_image,
                                            kmeans_plusplus,
                                            pixel_affinity,
                                            spectral_clustering,
                                            spectral_embedding,
)
from visionjax.classical.edges import canny, fill_holes, reconstruct, sobel
from visionjax.classical.filters import gaussian_filter, to_gray, uniform_filter
from visionjax.classical.slic import grid_seeds, slic
from visionjax.classical.threshold import threshold_local, threshold_otsu

__all__ = ["kmeans", "kmeans_image", "kmeans_plusplus", "pixel_affinity", "spectral_clustering",
           "spectral_embedding", "canny", "fill_holes", "reconstruct", "sobel", "gaussian_filter",
           "to_gray", "uniform_filter", "grid_seeds", "slic", "threshold_local", "threshold_otsu"]

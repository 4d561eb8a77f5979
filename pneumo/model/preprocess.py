"""Fixed (not learned, not random) image operations a served model may carry: contrast-limited adaptive
histogram equalisation (`Clahe`, a recipe lever) and the fixed views of test-time augmentation (`View`).

Like `Standardize`, they sit inside the model, so a served film goes through exactly what training saw.
Both are written with keras.ops only (one segment sum, a few gathers), so they run inside the compiled
step on TensorFlow, JAX and PyTorch.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from pneumo.model.layers import _bilinear


def _tile_geometry(size: int, tiles: int):
    """Per pixel along one side: its tile (for the histograms), and the two tile centres it lies between
    with the weight of the second (for the bilinear blend of their mappings). Static numpy arrays."""
    pos = np.arange(size)
    own = (pos * tiles) // size
    centre = (pos + 0.5) * tiles / size - 0.5  # in tile units: tile i's centre is at i
    lo = np.clip(np.floor(centre), 0, tiles - 1).astype("int32")
    hi = np.minimum(lo + 1, tiles - 1)
    weight = np.clip(centre - lo, 0.0, 1.0).astype("float32")
    return own.astype("int32"), lo, hi, weight


@keras.saving.register_keras_serializable(package="pneumo")
class Clahe(keras.layers.Layer):
    """Contrast-limited adaptive histogram equalisation of [0, 1] gray films, as OpenCV defines it.

    The film is cut into tiles x tiles regions; each region's histogram (`bins` levels) is clipped at
    clip_limit times its mean count, the excess spread evenly, and its cumulative distribution becomes
    that region's tone curve. Each pixel takes the bilinear blend of the curves of the four nearest
    region centres. Local contrast is equalised whatever the machine's exposure and post-processing.
    """

    def __init__(self, *, clip_limit=2.0, tiles=4, bins=64, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.clip_limit, self.tiles, self.bins = float(clip_limit), int(tiles), int(bins)

    def call(self, x):
        n, h, w = ops.shape(x)[0], x.shape[1], x.shape[2]
        t, k = self.tiles, self.bins
        level = ops.clip(ops.cast(ops.floor(x[..., 0] * k), "int32"), 0, k - 1)  # (n, h, w)
        own_y, lo_y, hi_y, wy = _tile_geometry(h, t)
        own_x, lo_x, hi_x, wx = _tile_geometry(w, t)
        region = (own_y[:, None] * t + own_x[None, :]).astype("int32")  # (h, w)
        counts = np.bincount(region.ravel(), minlength=t * t).astype("float32")  # pixels per region
        offset = ops.reshape(ops.arange(n, dtype="int32") * (t * t * k), (-1, 1, 1))
        segment = ops.reshape(offset + region[None] * k + level, (-1,))
        hist = ops.segment_sum(ops.ones_like(segment, dtype="float32"), segment, num_segments=n * t * t * k)
        hist = ops.reshape(hist, (-1, t * t, k))
        limit = ops.convert_to_tensor((self.clip_limit * counts / k)[None, :, None])
        excess = ops.sum(ops.maximum(hist - limit, 0.0), axis=-1, keepdims=True)
        hist = ops.minimum(hist, limit) + excess / k
        curves = ops.reshape(ops.cumsum(hist, axis=-1) / counts[None, :, None], (-1,))  # (n * t*t * k,)
        out = 0.0
        for ty, weight_y in ((lo_y, 1.0 - wy), (hi_y, wy)):
            for tx, weight_x in ((lo_x, 1.0 - wx), (hi_x, wx)):
                centre = (ty[:, None] * t + tx[None, :]).astype("int32")
                values = ops.take(curves, ops.reshape(offset + centre[None] * k + level, (-1,)))
                weight = (weight_y[:, None] * weight_x[None, :])[None]
                out = out + ops.reshape(values, (-1, h, w)) * weight
        return ops.expand_dims(out, -1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "clip_limit": self.clip_limit, "tiles": self.tiles, "bins": self.bins}


@keras.saving.register_keras_serializable(package="pneumo")
class View(keras.layers.Layer):
    """One fixed view of uint8 films for test-time augmentation: shifted by (dy, dx) as fractions of the
    side and zoomed by `zoom` (> 1: in) about the centre; uint8 out, so the model sees what it serves."""

    def __init__(self, *, dy=0.0, dx=0.0, zoom=1.0, **kwargs):
        super().__init__(**kwargs)
        self.dy, self.dx, self.zoom = float(dy), float(dx), float(zoom)

    def call(self, x):
        n, h, w, channels = ops.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        gy, gx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
        src_y = (gy / self.zoom + cy - self.dy * h).astype("float32")[None]
        src_x = (gx / self.zoom + cx - self.dx * w).astype("float32")[None]
        ones = ops.ones((n, 1, 1), dtype="float32")
        out = _bilinear(ops.cast(x, "float32"), src_y * ones, src_x * ones, n, h, w, channels)
        return ops.cast(ops.clip(ops.round(out), 0, 255), x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "dy": self.dy, "dx": self.dx, "zoom": self.zoom}


def views(shift: float, zoom: float) -> list[dict]:
    """The test-time views: the film as it is, shifted by `shift` of the side up, down, left and right,
    and zoomed in by `zoom`."""
    out = [{}]
    if shift:
        out += [{"dy": shift}, {"dy": -shift}, {"dx": shift}, {"dx": -shift}]
    if zoom:
        out.append({"zoom": 1.0 + zoom})
    return out

"""Training-time augmentation as one Keras layer: one affine warp and one intensity jitter per batch.

Keras' RandomRotation, RandomZoom and RandomTranslation each resample the whole
batch; under JAX each runs `jax.scipy.ndimage.map_coordinates` over
(height, width, channel) coordinates, and the `light` stack of them was measured
at 142 images/s on an H100 where the model alone trains at 15,500 (109x).
Here every sample's rotation, zoom, translation and flip are composed into one
inverse affine map, and the batch is resampled once by bilinear interpolation
built from four 1-D gathers on the flattened batch (`keras.ops.take`), which
every backend compiles to one plain gather. Intensity jitter (gamma, contrast,
brightness) is element-wise. Per-sample parameters come from a SeedGenerator,
so the layer runs inside the compiled train step on TensorFlow, JAX and PyTorch.

It sits inside the model (after rescaling to [0, 1]) and is the identity at
inference: the served model never augments. `Standardize`, the other pneumo layer
inside the model, lives here too: this is the module the served model imports to
load them (pneumo.release.serving), without the training stack.
"""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="pneumo")
class Augment(keras.layers.Layer):
    """Random flip, rotation, zoom, translation, gamma, contrast and brightness, in training only.

    rotation: largest angle as a fraction of a full turn (Keras' convention: 0.03 is about 11 degrees).
    zoom: largest relative change of scale, in and out. translation: largest shift as a fraction of
    the side. gamma: largest |log gamma| (0.2: gamma in [0.82, 1.22]). contrast: largest relative
    change of the spread about the image's mean. brightness: largest shift, as a fraction of full scale.
    Pixels warped in from outside the film are black (0), like the film's own background.
    """

    def __init__(self, *, flip=False, rotation=0.0, zoom=0.0, translation=0.0, gamma=0.0, contrast=0.0,
                 brightness=0.0, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # the warp's arithmetic stays float32 under mixed precision
        super().__init__(**kwargs)
        self.flip, self.rotation, self.zoom, self.translation = bool(flip), rotation, zoom, translation
        self.gamma, self.contrast, self.brightness = gamma, contrast, brightness
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    @property
    def geometric(self) -> bool:
        return bool(self.flip or self.rotation or self.zoom or self.translation)

    def _uniform(self, n, limit):
        return keras.random.uniform((n,), -limit, limit, seed=self.generator)

    def call(self, x, training=None):
        if not training:
            return x
        n = ops.shape(x)[0]
        if self.geometric:
            x = self._warp(x, n)
        if self.gamma:
            x = ops.power(ops.maximum(x, 1e-6), ops.reshape(ops.exp(self._uniform(n, self.gamma)), (-1, 1, 1, 1)))
        if self.contrast:
            mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
            x = (x - mean) * ops.reshape(1.0 + self._uniform(n, self.contrast), (-1, 1, 1, 1)) + mean
        if self.brightness:
            x = x + ops.reshape(self._uniform(n, self.brightness), (-1, 1, 1, 1))
        if self.gamma or self.contrast or self.brightness:
            x = ops.clip(x, 0.0, 1.0)
        return x

    def _warp(self, x, n):
        """Resample each image at A (p - c) + c - t: rotation, zoom, flip and shift in one map."""
        h, w, channels = x.shape[1], x.shape[2], x.shape[3]
        angle = self._uniform(n, 2 * math.pi * self.rotation) if self.rotation else ops.zeros((n,))
        # zoom in (scale > 1) samples a smaller region of the input
        inv_scale = 1.0 / (1.0 + self._uniform(n, self.zoom)) if self.zoom else ops.ones((n,))
        mirror = (ops.sign(self._uniform(n, 1.0)) if self.flip else ops.ones((n,)))
        ty = self._uniform(n, self.translation * h) if self.translation else ops.zeros((n,))
        tx = self._uniform(n, self.translation * w) if self.translation else ops.zeros((n,))
        cos, sin = ops.cos(angle) * inv_scale, ops.sin(angle) * inv_scale
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        gy, gx = ops.meshgrid(ops.arange(h, dtype="float32") - cy, ops.arange(w, dtype="float32") - cx,
                              indexing="ij")

        def per_sample(v):
            return ops.reshape(v, (-1, 1, 1))

        gy, gx = gy[None], gx[None] * per_sample(mirror)
        src_y = per_sample(cos) * gy + per_sample(sin) * gx + cy - per_sample(ty)
        src_x = per_sample(-sin) * gy + per_sample(cos) * gx + cx - per_sample(tx)
        return _bilinear(x, src_y, src_x, n, h, w, channels)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "flip": self.flip, "rotation": self.rotation, "zoom": self.zoom,
                "translation": self.translation, "gamma": self.gamma, "contrast": self.contrast,
                "brightness": self.brightness, "seed": self.seed}


def _bilinear(x, src_y, src_x, n, h, w, channels):
    """x (n, h, w, c) sampled at (src_y, src_x) (n, h, w); zero outside the image."""
    flat = ops.reshape(x, (-1, channels))  # (n*h*w, c): one gather row per pixel
    base = ops.reshape(ops.arange(n, dtype="int32") * (h * w), (-1, 1, 1))
    y0, x0 = ops.floor(src_y), ops.floor(src_x)
    wy, wx = src_y - y0, src_x - x0
    y0, x0 = ops.cast(y0, "int32"), ops.cast(x0, "int32")
    out = 0.0
    for dy, weight_y in ((0, 1.0 - wy), (1, wy)):
        for dx, weight_x in ((0, 1.0 - wx), (1, wx)):
            yi, xi = y0 + dy, x0 + dx
            inside = ops.cast((yi >= 0) & (yi < h) & (xi >= 0) & (xi < w), x.dtype)
            index = base + ops.clip(yi, 0, h - 1) * w + ops.clip(xi, 0, w - 1)
            values = ops.take(flat, ops.reshape(index, (-1,)), axis=0)
            out = out + ops.reshape(values, (-1, h, w, channels)) * ops.expand_dims(weight_y * weight_x * inside, -1)
    return out


@keras.saving.register_keras_serializable(package="pneumo")
class Standardize(keras.layers.Layer):
    """Each film to zero mean and unit variance, in training and in serving.

    Exposure and post-processing differ between machines and years (Kermany's test
    films were taken later than its training films): a model that sees every film on
    one scale cannot key on them.
    """

    def call(self, x):
        mean = keras.ops.mean(x, axis=(1, 2, 3), keepdims=True)
        return (x - mean) / (keras.ops.std(x, axis=(1, 2, 3), keepdims=True) + 1e-3)

"""Model builders: plain values in, Keras models out. Keras 3 APIs only.

`conf/model/*.yaml` name a builder here by `_target_`; its keys are the
builder's arguments. `HyperModel` is the only place that sees Keras Tuner's
`hp`: it resolves the YAML search spaces (pneumo.config.space) to plain values and
calls the builders, so each builder is ordinary Keras code.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import keras_tuner
from hydra.utils import get_method

from pneumo.config import space
from pneumo.model.layers import Augment, Standardize
from pneumo.model.preprocess import Clahe, View, views
from pneumo.record import names
from pneumo.runtime import backend

# -- bodies: (tensor, **plain values) -> feature tensor ---------------------


def cnn(x, *, filters, blocks, kernel_size, dense_units, dropout):
    """The seed: Conv2D + ReLU + MaxPooling blocks (filters doubling), Dense, Dropout."""
    for i in range(blocks):
        x = keras.layers.Conv2D(filters * 2**i, kernel_size, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(dense_units, activation="relu")(x)
    return keras.layers.Dropout(dropout)(x)


# Keras' default 0.99 needs thousands of steps before the moving statistics that
# validation uses match training; small data sets get a few hundred.
BN_MOMENTUM = 0.9


def resnet(x, *, filters, stages, blocks_per_stage, dropout):
    """A small pre-activation-free residual net: stem, stages of two-conv blocks."""
    x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = keras.layers.ReLU()(x)
    for stage in range(stages):
        width = filters * 2**stage
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = keras.layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False)(x)
            y = keras.layers.BatchNormalization(momentum=BN_MOMENTUM)(y)
            y = keras.layers.ReLU()(y)
            y = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(y)
            y = keras.layers.BatchNormalization(momentum=BN_MOMENTUM)(y)
            if stride != 1 or shortcut.shape[-1] != width:
                shortcut = keras.layers.Conv2D(width, 1, strides=stride, use_bias=False)(shortcut)
                shortcut = keras.layers.BatchNormalization(momentum=BN_MOMENTUM)(shortcut)
            x = keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.layers.Dropout(dropout)(x)


def transfer(x, *, backbone, weights=None, trainable, input_scale, input_offset, dropout):
    """A keras.applications backbone; gray input tiled to the 3 channels it expects."""
    try:
        app = getattr(keras.applications, backbone)
    except AttributeError:
        raise space.ConfigError(f"model.backbone: keras.applications has no {backbone!r}") from None
    x = keras.layers.Concatenate()([x, x, x])
    x = keras.layers.Rescaling(input_scale, offset=input_offset)(x)  # x is already in [0, 1]
    base = app(include_top=False, weights=weights, input_shape=tuple(x.shape[1:]), pooling="avg")
    base.trainable = bool(trainable)
    x = base(x, training=False if not trainable else None)
    return keras.layers.Dropout(dropout)(x)


def augmentation(*, flip, rotation, zoom, translation, gamma, contrast, brightness, seed=None):
    """One layer (pneumo.model.layers.Augment), active only in training; None when nothing is asked."""
    kw = dict(flip=flip, rotation=rotation, zoom=zoom, translation=translation, gamma=gamma, contrast=contrast,
              brightness=brightness)
    return Augment(**kw, seed=seed, name="augmentation") if any(kw.values()) else None


# -- the whole model ---------------------------------------------------------


def build(image_size: int, body, body_kwargs: Mapping, aug_kwargs: Mapping, optimizer, *,
          jit_compile, seed=None, standardize: bool, run_eagerly: bool, clahe: Mapping | None = None,
          label_smoothing: float | None = None) -> keras.Model:
    """uint8 gray images in, P(pneumonia) out: rescaling, augmentation, CLAHE and standardisation live inside."""
    inputs = keras.Input((image_size, image_size, 1), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    augment = augmentation(**aug_kwargs, seed=seed)
    if augment is not None:
        x = augment(x)
    if clahe:  # after the exposure jitter: the model learns from equalised films, as it will serve them
        x = Clahe(**clahe, name="clahe")(x)
    if standardize:
        x = Standardize(name="standardize")(x)
    x = body(x, **body_kwargs)
    # float32 output even under mixed_float16: stable sigmoid and loss.
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="pneumonia")(x)
    model = keras.Model(inputs, outputs, name=body.__name__)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing or 0.0),  # None: not set, none
        metrics=[
            keras.metrics.AUC(name=names.AUC),
            keras.metrics.AUC(curve="PR", name=names.AUPRC),
            keras.metrics.BinaryAccuracy(name=names.ACCURACY),
        ],
        jit_compile=False if run_eagerly else backend.jit_compile(jit_compile),
        run_eagerly=run_eagerly,
    )
    return model


def _weights_only(model: keras.Model) -> keras.Model:
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def ensemble(members: list) -> keras.Model:
    """One model averaging the members' probabilities: served, saved and thresholded like any other."""
    inputs = keras.Input(members[0].input_shape[1:], dtype="uint8", name="image")
    # Each member's weights without its training state: a compiled member would be saved with its
    # optimizer, which loading for inference skips with a warning per member.
    members = [_weights_only(m) for m in members]
    for i, m in enumerate(members):
        m.name = f"member_{i}_{m.name}"  # each member is a named sub-model of the ensemble
    outputs = keras.layers.Average(name="pneumonia", dtype="float32")([m(inputs) for m in members])
    return keras.Model(inputs, outputs, name="ensemble")


def tta(model: keras.Model, *, shift: float, zoom: float) -> keras.Model:
    """One model averaging `model` over fixed views of each film (pneumo.model.preprocess.views): served,
    saved and thresholded like any other; the first view is the film as it is."""
    inputs = keras.Input(model.inputs[0].shape[1:], dtype="uint8", name="image")
    outs = [model(View(**v, name=f"view_{i}")(inputs) if v else inputs) for i, v in enumerate(views(shift, zoom))]
    outputs = keras.layers.Average(name="pneumonia", dtype="float32")(outs)
    return keras.Model(inputs, outputs, name=f"tta_{model.name}")


def served(model: keras.Model, evaluation: Mapping) -> keras.Model:
    """The model as it is scored and registered: wrapped in its test-time views when evaluation.tta asks."""
    views_cfg = evaluation.get("tta")
    return tta(model, **views_cfg) if views_cfg else model


class HyperModel(keras_tuner.HyperModel):
    """Resolves the model / optimizer / augmentation spaces and calls `build`."""

    def __init__(self, model_cfg: Mapping, optimizer_cfg: Mapping, augmentation_cfg: Mapping,
                 image_size: int, *, jit_compile="auto", seed=None, standardize: bool = False,
                 run_eagerly: bool = False, clahe: Mapping | None = None, label_smoothing: float = 0.0):
        super().__init__()
        for prefix, node in (("model", model_cfg), ("optimizer", optimizer_cfg), ("augmentation", augmentation_cfg)):
            space.validate(node, prefix)
        self.groups = {"model": model_cfg, "optimizer": optimizer_cfg, "augmentation": augmentation_cfg}
        self.image_size, self.jit_compile, self.seed, self.standardize = image_size, jit_compile, seed, standardize
        self.run_eagerly, self.clahe, self.label_smoothing = run_eagerly, clahe, label_smoothing

    @classmethod
    def configured(cls, model_cfg: Mapping, optimizer_cfg: Mapping, augmentation_cfg: Mapping, trainer_cfg: Mapping,
                   seed=None) -> HyperModel:
        """From the config's groups: the trainer's image size and the switches that shape the model."""
        t = trainer_cfg
        return cls(model_cfg, optimizer_cfg, augmentation_cfg, t["image_size"], jit_compile=t["jit_compile"], seed=seed,
                   standardize=t["standardize"], run_eagerly=t["run_eagerly"], clahe=t["clahe"],
                   label_smoothing=t["label_smoothing"])

    def build(self, hp):
        kw = {g: space.resolve(hp, {k: v for k, v in node.items() if k != "_target_"}, g)
              for g, node in self.groups.items()}
        body = get_method(self.groups["model"]["_target_"])
        optimizer = get_method(self.groups["optimizer"]["_target_"])(**kw["optimizer"])
        return build(self.image_size, body, kw["model"], kw["augmentation"], optimizer,
                     jit_compile=self.jit_compile, seed=self.seed, standardize=self.standardize,
                     run_eagerly=self.run_eagerly, clahe=self.clahe, label_smoothing=self.label_smoothing)

    def check(self) -> None:
        """Build once with every default (the Keras Tuner guide's habit): a config whose
        defaults cannot make a model fails here, naming the groups, before any run exists."""
        try:
            self.build(keras_tuner.HyperParameters())
        except space.ConfigError:
            raise
        except (ValueError, TypeError) as e:
            text = str(e).split("Arguments received")[0].replace("\x1b[1m", "").replace("\x1b[0m", "")
            detail = " ".join(text.split())[:300]
            raise space.ConfigError(
                f"model/optimizer/augmentation: the default hyperparameters do not build a model: {detail}"
            ) from None
        finally:
            keras.backend.clear_session()

    def fit(self, hp, model, *args, **kwargs):
        # kwargs carries the tuner's own callbacks: pass them through, after one of ours where the optimizer
        # keeps an average of the weights (optimizer.use_ema): validation, the best epoch's weights and the
        # callbacks that read them then all see the average (Keras swaps it in at each epoch's end).
        if getattr(model.optimizer, "use_ema", False):
            kwargs["callbacks"] = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True), *kwargs.get("callbacks", [])]
        return model.fit(*args, **kwargs)

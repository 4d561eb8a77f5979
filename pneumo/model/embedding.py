"""The model's own view of a film: its penultimate-layer embedding, beside its probability.

The out-of-distribution guard and the shift check measure distances there. Every pneumo model
ends in one Dense layer named `pneumonia`; its input is the embedding. An ensemble averages
sub-models: its embedding is the FIRST member's (the best trial's), not an average: members'
embeddings live in different spaces, so averaging them would mean nothing.
"""

from __future__ import annotations

import keras
import numpy as np

HEAD = "pneumonia"  # the name builders give the final Dense layer (and the ensemble its Average)


def _head_input(model):
    layer = model.get_layer(HEAD)
    if isinstance(layer, keras.layers.Dense):
        return model, layer.input
    members = [m for m in model.layers if isinstance(m, keras.Model)]  # an ensemble
    if not members:
        raise ValueError(f"model {model.name!r} has no Dense layer {HEAD!r}: no embedding to measure")
    return _head_input(members[0])


def embedder(model) -> keras.Model:
    """uint8 films in, [probability, embedding] out: one forward pass (two for an ensemble)."""
    owner, emb = _head_input(model)
    if owner is model:
        return keras.Model(model.inputs, [model.outputs[0], emb], name="embedder")
    inner = keras.Model(owner.inputs, emb, name="first_member_embedding")
    x = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    return keras.Model(x, [model(x), inner(x)], name="embedder")


def predict(embed: keras.Model, x, batch_size: int = 64):
    """(probabilities (n,), embeddings (n, d)) of uint8 films x (n, size, size, 1)."""
    prob, emb = embed.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(prob, float).reshape(-1), np.asarray(emb, float).reshape(len(x), -1)

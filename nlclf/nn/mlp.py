"""The stack of layers of the notes: f -> k = H f + b_H -> h = g(k) -> ... -> z = U h + b_U.

Parameters live in a plain dict of arrays, named as in the notes:
``E`` the embedding table, ``H1, bH1, H2, bH2, ...`` the hidden layers and
``U, bU`` the output layer. A gradient dict uses the same keys, and each
gradient has its parameter's shape (a row-sparse ``Rows`` for the first layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import activations
from .layers import (Rows, as_batch, dense_backward, dense_forward, drop_entries, dropout_mask,
                     embed_concat_backward, embed_concat_forward, row_mean,
                     sparse_backward, sparse_forward)
from .losses import softmax

INPUT_KINDS = ("bow", "embed_mean", "embed_concat")


@dataclass(frozen=True)
class NetSpec:
    """Everything that fixes the network's shape and forward pass.

    input_kind: ``bow`` (X is CSR (N, V), the first hidden layer reads it directly),
    ``embed_mean`` (X is CSR (N, V) of counts; f = mean of the rows of E) or
    ``embed_concat`` (X is (N, T) token ids; f = [E j1; ...; E jT]).
    input_dropout: on ``bow``, dropout of the bag's entries; on ``embed_mean``,
    word dropout (the mean is taken over the surviving words).
    """

    input_kind: str
    n_inputs: int                       # V
    n_classes: int                      # C
    hidden: tuple = ()
    activation: str = "relu"
    leaky_slope: float = 0.01
    hidden_bias: bool = True
    output_bias: bool = True
    dropout: float = 0.0
    input_dropout: float = 0.0
    embed_dim: int = 0                  # e
    max_tokens: int = 0                 # T (embed_concat)
    freeze_embeddings: bool = False
    pad_id: int = 0


class Layer(NamedTuple):
    kind: str          # "sparse" (reads CSR), "embed_concat", or "dense"
    W: str
    b: str | None
    act: str
    dropout: float


def plan(spec: NetSpec) -> list[Layer]:
    """The layers, input to output."""
    layers = []
    if spec.input_kind == "embed_mean":
        layers.append(Layer("sparse", "E", None, "identity", 0.0))
    elif spec.input_kind == "embed_concat":
        layers.append(Layer("embed_concat", "E", None, "identity", 0.0))
    first = "sparse" if spec.input_kind == "bow" else "dense"
    for i, _ in enumerate(spec.hidden, start=1):
        kind = first if i == 1 else "dense"
        layers.append(Layer(kind, f"H{i}", f"bH{i}" if spec.hidden_bias else None,
                            spec.activation, spec.dropout))
    kind = first if not spec.hidden else "dense"
    layers.append(Layer(kind, "U", "bU" if spec.output_bias else None, "identity", 0.0))
    return layers


def input_width(spec: NetSpec) -> int:
    """D, the width of f."""
    if spec.input_kind == "bow":
        return spec.n_inputs
    if spec.input_kind == "embed_mean":
        return spec.embed_dim
    return spec.embed_dim * spec.max_tokens


def param_shapes(spec: NetSpec) -> dict:
    """Name -> shape of every parameter, input to output."""
    shapes = {}
    if spec.input_kind != "bow":
        shapes["E"] = (spec.n_inputs, spec.embed_dim)                       # (V, e)
    fan_in = input_width(spec)
    sizes = list(spec.hidden) + [spec.n_classes]
    for layer, fan_out in zip([l for l in plan(spec) if l.W != "E"], sizes):
        shapes[layer.W] = (fan_in, fan_out)                                 # (D, H), (H, H'), (H, C)
        if layer.b:
            shapes[layer.b] = (fan_out,)
        fan_in = fan_out
    return shapes


def init_params(spec: NetSpec, rng: np.random.Generator, dtype=np.float32) -> dict:
    """He init for the ReLU family, Glorot for the rest and the output; zero biases.

    The embedding table is N(0, 1/e) with the padding row at zero.
    """
    dtype = np.dtype(dtype)
    acts = {l.W: l.act for l in plan(spec)}
    params = {}
    for name, shape in param_shapes(spec).items():
        if name == "E":
            W = rng.normal(0.0, 1.0 / np.sqrt(shape[1]), size=shape)
            W[spec.pad_id] = 0.0
        elif len(shape) == 1:
            W = np.zeros(shape)
        elif name != "U" and activations.INIT_FOR[acts[name]] == "he":
            W = rng.normal(0.0, np.sqrt(2.0 / shape[0]), size=shape)
        else:
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            W = rng.uniform(-limit, limit, size=shape)
        params[name] = W.astype(dtype)
    return params


def forward(params: dict, spec: NetSpec, X, train: bool = False,
            rng: np.random.Generator | None = None, masks: dict | None = None):
    """Logits z (N, C) and the caches backward needs.

    In training mode dropout masks are drawn from ``rng``, or taken from ``masks``
    (layer index -> mask), which the gradient checks use to fix them.
    """
    layers = plan(spec)
    x = X
    if spec.input_kind != "embed_concat":
        x = as_batch(x)
        data = x.data
        if train and spec.input_dropout > 0:
            data = drop_entries(x, spec.input_dropout, rng, scale=spec.input_kind == "bow")
        if spec.input_kind == "embed_mean":
            data = row_mean(x, data)
        x = x.with_data(data.astype(params[layers[0].W].dtype, copy=False))
    caches = []
    for i, layer in enumerate(layers):
        W, b = params[layer.W], params.get(layer.b) if layer.b else None
        if layer.kind == "sparse":
            k, _ = sparse_forward(W, b, x)
        elif layer.kind == "embed_concat":
            k, _ = embed_concat_forward(W, x)
        else:
            k, _ = dense_forward(W, b, x)
        h = k if layer.act == "identity" else activations.get(layer.act, spec.leaky_slope)[0](k)
        mask = None
        if train and layer.dropout > 0:
            mask = masks[i] if masks is not None else dropout_mask(h.shape, layer.dropout, rng, h.dtype)
        caches.append((x, k, h, mask))
        x = h * mask if mask is not None else h
    return x, caches


def backward(params: dict, spec: NetSpec, caches: list, dz) -> dict:
    """Gradients of the loss for every parameter, from dz = dℓ/dz (N, C), batch mean included."""
    layers = plan(spec)
    grads = {}
    dh = dz
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        x, k, h, mask = caches[i]
        if layer.W == "E" and spec.freeze_embeddings:
            break
        if mask is not None:
            dh = dh * mask
        if layer.act == "identity":
            dk = dh
        else:
            dk = dh * activations.get(layer.act, spec.leaky_slope)[1](k, h)   # dℓ/dk = dℓ/dh ⊙ g'(k)
        W, b = params[layer.W], params.get(layer.b) if layer.b else None
        if layer.kind == "sparse":
            dW, db = sparse_backward(W, b, x, dk)
            dx = None
        elif layer.kind == "embed_concat":
            dW, db, dx = embed_concat_backward(W, x, dk, spec.pad_id), None, None
        else:
            need_dx = i > 0 and not (layers[i - 1].W == "E" and spec.freeze_embeddings)
            dx, dW, db = dense_backward(W, b, x, dk, need_dx=need_dx)
        grads[layer.W] = dW
        if layer.b:
            grads[layer.b] = db
        dh = dx
    return grads


def add_l2(params: dict, grads: dict, decay: dict) -> float:
    """Add the L2 term 0.5·λ·||W||² to the gradients of the weights named in ``decay``.

    Returns the term to add to the loss. Biases are never decayed. For a row-sparse
    gradient only the rows in the batch are decayed (lazy L2), and the loss term
    counts those rows, so loss and gradient stay consistent.
    """
    penalty = 0.0
    for name, lam in decay.items():
        if lam <= 0 or name not in grads:
            continue
        W, g = params[name], grads[name]
        if isinstance(g, Rows):
            rows = W[g.index]
            penalty += 0.5 * lam * float((rows * rows).sum())
            g.value += lam * rows
        else:
            penalty += 0.5 * lam * float((W * W).sum())
            g += lam * W
    return penalty


def predict_proba(params: dict, spec: NetSpec, X, temperature: float = 1.0):
    """Class probabilities o (N, C)."""
    z, _ = forward(params, spec, X)
    if temperature != 1.0:
        z = z / z.dtype.type(temperature)
    return softmax(z)


def n_params(params: dict) -> int:
    return int(sum(p.size for p in params.values()))

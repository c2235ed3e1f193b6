"""The stack of layers of the notes: f -> k = H f + b_H -> h = g(k) -> (more layers) -> z = U h + b_U.

Parameters live in a plain dict of arrays, named as in the notes:
``E`` the embedding table, ``H1, bH1, H2, bH2, ...`` the hidden layers and
``U, bU`` the output layer. A gradient dict uses the same keys, and each
gradient has its parameter's shape (a row-sparse ``Rows`` for the first layer).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import activations
from .layers import KINDS, Rows, as_batch, drop_entries, dropout_mask, row_mean
from .losses import sigmoid, softmax

INPUT_KINDS = ("bow", "embed_mean", "embed_concat")
OUTPUTS = {"softmax": softmax, "sigmoid": sigmoid}     # o from z: one label a text, or any number


@dataclass(frozen=True)
class NetSpec:
    """Everything that fixes the network's shape and forward pass.

    input_kind: ``bow`` (X is CSR (N, V), the first hidden layer reads it directly),
    ``embed_mean`` (X is CSR (N, V) of counts; f = mean of the rows of E) or
    ``embed_concat`` (X is (N, T) token ids; f = [E j1; ...; E jT]).
    input_dropout: on ``bow``, dropout of the bag's entries; on ``embed_mean``,
    word dropout (the mean is taken over the surviving words).
    output: ``softmax`` (one label a text, o sums to 1) or ``sigmoid`` (any number of labels
    a text: C independent probabilities).
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
    output: str = "softmax"


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


def row_sparse(spec: NetSpec) -> set:
    """Names of the parameters whose gradients are row-sparse (layers.Rows): the first layer's
    when it reads a sparse batch or token ids."""
    return {layer.W for layer in plan(spec)[:1] if layer.kind != "dense"}


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
        shapes["E"] = (spec.n_inputs, spec.embed_dim)                       # (V, E)
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
        W, b = params[layer.W], params.get(layer.b) if layer.b else None      # (D, H) or (V, E); (H,)
        k, cache = KINDS[layer.kind][0](W, b, x, pad_id=spec.pad_id)        # k (N, H): x W + b
        h = k if layer.act == "identity" else activations.get(layer.act, spec.leaky_slope)[0](k)   # (N, H)
        mask = None
        if train and layer.dropout > 0:
            mask = masks[i] if masks is not None else dropout_mask(h.shape, layer.dropout, rng, h.dtype)
        caches.append((cache, k, h, mask))
        x = h * mask if mask is not None else h                                # (N, H) the next layer's input
    return x, caches                                                           # z (N, C)


def backward(params: dict, spec: NetSpec, caches: list, dz) -> dict:
    """Gradients of the loss for every parameter, from dz = dℓ/dz (N, C), batch mean included."""
    layers = plan(spec)
    grads = {}
    dh = dz                                                                    # (N, C) dℓ/dz
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        cache, k, h, mask = caches[i]
        if layer.W == "E" and spec.freeze_embeddings:
            break
        if mask is not None:
            dh = dh * mask                                                     # (N, H)
        if layer.act == "identity":
            dk = dh
        else:
            dk = dh * activations.get(layer.act, spec.leaky_slope)[1](k, h)   # (N, H) dℓ/dk = dℓ/dh ⊙ g'(k)
        W, b = params[layer.W], params.get(layer.b) if layer.b else None
        need_dx = i > 0 and not (layers[i - 1].W == "E" and spec.freeze_embeddings)
        dx, dW, db = KINDS[layer.kind][1](W, b, cache, dk, need_dx, pad_id=spec.pad_id)   # like x, W, b
        grads[layer.W] = dW
        if layer.b:
            grads[layer.b] = db
        dh = dx                                                                # (N, H_prev)
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


def _block_diag(blocks: list) -> np.ndarray:
    """(sum of rows, sum of columns) with the blocks on the diagonal, zeros elsewhere."""
    out = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)), blocks[0].dtype)
    r = c = 0
    for b in blocks:
        out[r:r + b.shape[0], c:c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return out


def merge(spec: NetSpec, members: list) -> tuple:
    """K networks of one spec as one network whose logits are the mean of theirs:
    z = (1/K) Σ_k z_k. Returns (spec with every width K times larger, params).

    Side by side, member k's hidden units (and embedding columns) form block k of each layer:
    a layer reading the shared input (the bag, or the ids of E) is the members' weights
    concatenated along the output (D, K·H); a layer reading blocks is block-diagonal
    (K·H, K·H'); the output layer averages: mean of U_k on the shared bag, or U_k/K
    stacked (K·H, C). For embed_concat, f holds T positions of K·E columns, so H1's rows
    are interleaved to match. Dropout is off at prediction, so the merged forward pass is
    exactly the mean of the members'.
    """
    K = len(members)
    if K == 1:
        return spec, dict(members[0])
    layers = plan(spec)
    params = {}
    stacked = False                                  # does the current layer read K blocks?
    for i, layer in enumerate(layers):
        Ws = [m[layer.W] for m in members]
        last = i == len(layers) - 1
        if i == 1 and spec.input_kind == "embed_concat":                   # rows (t, k, d)
            T, e, H = spec.max_tokens, spec.embed_dim, Ws[0].shape[1]
            if last:
                W = np.stack([Wk.reshape(T, e, H) / K for Wk in Ws], axis=1).reshape(T * K * e, H)
            else:
                W = np.zeros((T, K, e, K, H), Ws[0].dtype)                  # columns (k, h)
                for k, Wk in enumerate(Ws):
                    W[:, k, :, k, :] = Wk.reshape(T, e, H)
                W = W.reshape(T * K * e, K * H)
        elif last:
            W = (np.mean(Ws, axis=0) if not stacked else np.concatenate(Ws) / K).astype(Ws[0].dtype)
        elif not stacked:
            W = np.concatenate(Ws, axis=1)                                  # (D, K·H) or (V, K·E)
        else:
            W = _block_diag(Ws)                                             # (K·H, K·H')
        params[layer.W] = W
        if layer.b:
            bs = [m[layer.b] for m in members]
            params[layer.b] = np.mean(bs, axis=0).astype(bs[0].dtype) if last else np.concatenate(bs)
        stacked = True
    wide = dataclasses.replace(spec, hidden=tuple(K * h for h in spec.hidden),
                               embed_dim=K * spec.embed_dim)
    return wide, params


def predict_proba(params: dict, spec: NetSpec, X, temperature: float = 1.0):
    """Class probabilities o (N, C): softmax(z), or σ(z) elementwise for a sigmoid output."""
    z, _ = forward(params, spec, X)
    if temperature != 1.0:
        z = z / z.dtype.type(temperature)
    return OUTPUTS[spec.output](z)


def n_params(params: dict) -> int:
    return int(sum(p.size for p in params.values()))

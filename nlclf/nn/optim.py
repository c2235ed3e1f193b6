"""Optimisers and learning-rate schedules.

An optimiser owns its state and nothing else: ``step(params, grads, lr)`` updates
``params`` in place. A ``Rows`` gradient updates only its rows, and the state of those
rows only (lazy momentum, lazy Adam): a step never reads or writes every row of a (V, H)
table. (Plain SGD's fused update builds one int32 (V+1,) row-pointer array, while V is
small next to the batch: see layers.ProductRows.)
Schedules are pure functions of the step.
"""

from __future__ import annotations

import math

import numpy as np

from .layers import Rows

SCHEDULES = ("constant", "linear", "cosine")
OPTIMIZERS = ("sgd", "momentum", "adam", "adagrad")


def lr_at(step: int, total: int, base: float, schedule: str = "constant", warmup: int = 0) -> float:
    """Learning rate at ``step`` (0-based) of ``total``: linear warm-up, then the schedule.

    linear decays to zero at ``total``; cosine follows half a cosine to zero.
    """
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return base
    progress = min(1.0, (step - warmup) / (total - warmup))
    if schedule == "linear":
        return base * (1.0 - progress)
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}")


def clip_by_global_norm(grads: dict, max_norm: float) -> float:
    """Scale all gradients in place so that their joint L2 norm is at most max_norm; return the norm before."""
    total = 0.0
    for g in grads.values():
        v = g.value if isinstance(g, Rows) else g
        total += float(np.dot(v.ravel(), v.ravel()))
    norm = math.sqrt(total)
    if max_norm > 0 and norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for g in grads.values():
            if isinstance(g, Rows):
                g.value *= scale
            else:
                g *= scale
    return norm


class SGD:
    """W <- W - lr·dW (the notes' update), or with momentum μ: v <- μ v + dW; W <- W - lr·v."""

    def __init__(self, params: dict, momentum: float = 0.0, lr_mult: dict | None = None):
        self.momentum = momentum
        self.lr_mult = lr_mult or {}
        self.state = ({name: np.zeros_like(p) for name, p in params.items()} if momentum else {})
        self.t = 0

    def step(self, params: dict, grads: dict, lr: float) -> None:
        self.t += 1
        mu = self.momentum
        for name, g in grads.items():
            W = params[name]
            rate = W.dtype.type(lr * self.lr_mult.get(name, 1.0))
            if isinstance(g, Rows):
                if mu:
                    v = self.state[name]
                    v_rows = v[g.index] * W.dtype.type(mu) + g.value
                    v[g.index] = v_rows
                    W[g.index] -= rate * v_rows
                else:
                    g.add_scaled_to(W, -rate)
            elif mu:
                v = self.state[name]
                v *= W.dtype.type(mu)
                v += g
                W -= rate * v
            else:
                W -= rate * g

    def state_arrays(self) -> dict:
        return {f"v.{k}": v for k, v in self.state.items()}

    def load_state_arrays(self, arrays: dict, t: int) -> None:
        for k in self.state:
            self.state[k][...] = arrays[f"v.{k}"]
        self.t = t


class Adam:
    """Adam (Kingma & Ba) with bias correction; lazy for Rows: only the batch's rows of m, v and W move.

    m <- β1 m + (1-β1) g;  v <- β2 v + (1-β2) g²;  W <- W - lr·m̂/(√v̂ + ε), m̂ = m/(1-β1ᵗ), v̂ = v/(1-β2ᵗ).
    """

    def __init__(self, params: dict, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 lr_mult: dict | None = None):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.lr_mult = lr_mult or {}
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}
        self.t = 0

    def step(self, params: dict, grads: dict, lr: float) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        c1, c2 = 1.0 - b1 ** self.t, 1.0 - b2 ** self.t
        for name, g in grads.items():
            W, m, v = params[name], self.m[name], self.v[name]
            dt = W.dtype.type
            rate = dt(lr * self.lr_mult.get(name, 1.0) * math.sqrt(c2) / c1)
            eps = dt(self.eps * math.sqrt(c2))
            if isinstance(g, Rows):                 # in place on (U, H) blocks: 3 temporaries
                idx, gv = g.index, g.value
                m_rows, v_rows = m[idx], v[idx]                                  # gathered copies
                tmp = np.multiply(gv, dt(1 - b1))
                m_rows *= dt(b1)
                m_rows += tmp                                                    # m
                np.multiply(gv, gv, out=tmp)
                tmp *= dt(1 - b2)
                v_rows *= dt(b2)
                v_rows += tmp                                                    # v
                m[idx], v[idx] = m_rows, v_rows
                np.sqrt(v_rows, out=tmp)
                tmp += eps
                np.divide(m_rows, tmp, out=tmp)
                tmp *= -rate
                Rows(idx, tmp).add_scaled_to(W, 1.0)                             # W -= rate m̂/(√v̂ + ε)
            else:
                m *= dt(b1)
                m += dt(1 - b1) * g
                v *= dt(b2)
                v += dt(1 - b2) * (g * g)
                W -= rate * m / (np.sqrt(v) + eps)

    def state_arrays(self) -> dict:
        out = {f"m.{k}": a for k, a in self.m.items()}
        out.update({f"v.{k}": a for k, a in self.v.items()})
        return out

    def load_state_arrays(self, arrays: dict, t: int) -> None:
        for k in self.m:
            self.m[k][...] = arrays[f"m.{k}"]
            self.v[k][...] = arrays[f"v.{k}"]
        self.t = t


class Adagrad:
    """Adagrad (Duchi, Hazan & Singer): s <- s + g²;  W <- W - lr·g/(√s + ε).

    For the parameters named in ``rows`` (a sparse first layer's (V, H) table) the
    accumulator is one number a row, s_r <- s_r + mean_h g_rh² (row-wise Adagrad, the
    optimiser of the embedding tables of large recommendation models): a (V,) state
    instead of Adam's two (V, H) tables, and a step that reads and writes the batch's rows
    of W once, not those of m, v and W. The rate of a row falls as its gradients add up, so
    frequent features settle while rare ones keep learning; no schedule is needed.
    """

    def __init__(self, params: dict, eps: float = 1e-8, lr_mult: dict | None = None, rows=()):
        self.eps = eps
        self.lr_mult = lr_mult or {}
        self.s = {name: np.zeros(p.shape[:1] if name in rows else p.shape, dtype=p.dtype)
                  for name, p in params.items()}
        self.t = 0

    def step(self, params: dict, grads: dict, lr: float) -> None:
        self.t += 1
        for name, g in grads.items():
            W, s = params[name], self.s[name]
            dt = W.dtype.type
            rate, eps = dt(lr * self.lr_mult.get(name, 1.0)), dt(self.eps)
            if isinstance(g, Rows):
                idx, gv = g.index, g.value                                       # (U,), (U, H)
                if s.ndim == 1:                                                  # row-wise: (U,)
                    s_rows = s[idx] + np.einsum("ij,ij->i", gv, gv) / dt(gv.shape[1])
                    s[idx] = s_rows
                    g.add_row_scaled_to(W, -rate / (np.sqrt(s_rows) + eps))
                else:                                                            # element-wise, lazy
                    s_rows = s[idx] + gv * gv
                    s[idx] = s_rows
                    W[idx] -= rate * gv / (np.sqrt(s_rows) + eps)
            else:
                s += g * g
                W -= rate * g / (np.sqrt(s) + eps)

    def state_arrays(self) -> dict:
        return {f"s.{k}": a for k, a in self.s.items()}

    def load_state_arrays(self, arrays: dict, t: int) -> None:
        for k in self.s:
            self.s[k][...] = arrays[f"s.{k}"]
        self.t = t


def make(name: str, params: dict, momentum: float = 0.9, beta1: float = 0.9, beta2: float = 0.999,
         eps: float = 1e-8, lr_mult: dict | None = None, rows=()):
    """The optimiser ``name``; ``rows``: the parameters whose gradients are row-sparse (the
    first layer of a bag or an embedding table), which Adagrad keeps one accumulator a row for."""
    if name == "sgd":
        return SGD(params, 0.0, lr_mult)
    if name == "momentum":
        return SGD(params, momentum, lr_mult)
    if name == "adam":
        return Adam(params, beta1, beta2, eps, lr_mult)
    if name == "adagrad":
        return Adagrad(params, eps, lr_mult, rows)
    raise ValueError(f"unknown optimizer {name!r}")

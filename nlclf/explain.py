"""Why a prediction: gradient × input on the first layer, by a hand-written backward pass.

Shapes: the package's letters (N texts, V vocabulary, D = V + B bag columns, H hidden, C classes,
T tokens, E embedding width), B hash buckets.

For a text with input f and chosen class c (the predicted one), the attribution of input
feature j is

    a_j = f_j · ∂z_c/∂f_j

with z_c the LOGIT of class c, not its probability: the logit is what the features add up
to before the softmax couples the classes, and it does not depend on the temperature.
a_j > 0 pushed the prediction toward c, a_j < 0 against it. With no hidden layer,
z_c = Σ_j f_j U[j, c] + b_c, so a_j = f_j U[j, c] is exactly feature j's share of the logit.

The backward pass is ``mlp.backward``'s, started from dz = onehot(c) (N, C) in place of a
loss gradient: down the layers with the activation table and the forward caches to
dk = ∂z_c/∂k (N, H) at the first layer that reads f (k = f W + b), then ∂z_c/∂f = dk Wᵀ.
Only the entries present in the input are touched: never a dense (N, D) array.

Per input kind (X the weighted bag of ``Featurizer.transform``):

``bow``: f = X (N, D) CSR. For a stored entry (n, j):
    a_nj = X_nj · (W[j] · dk_n)

``embed_mean``: the forward pass takes s_n = Σ_j X_nj and w_nj = X_nj / s_n (``row_mean``;
an empty row stays empty), then f_n = Σ_j w_nj E[j] (E,). The input of token j is its
weight w_nj on row E[j], so with g_n = ∂z_c/∂f_n = dk_n Wᵀ (E,):
    ∂z_c/∂w_nj = E[j] · g_n,     a_nj = w_nj · (E[j] · g_n),     Σ_j a_nj = f_n · g_n.
Why w and not the raw X: through the normalisation ∂f_n/∂X_nj = (E[j] − f_n) / s_n, so
    X_nj · ∂z_c/∂X_nj = w_nj (E[j] − f_n) · g_n = a_nj − w_nj (f_n · g_n),
which sums to 0 over j for every text (z does not change when a bag is scaled: Euler's
theorem for a function homogeneous of degree 0). It only ranks the tokens against the
text's own mean embedding and gives a one-word text a zero; a_nj keeps the share of each
token in the first layer's input.

``embed_concat``: f_n = [E[j_1]; ...; E[j_T]] (T·E). Position t's input is its slice:
    a_nt = E[j_t] · g_nt,     g_nt = (∂z_c/∂f_n)[t·E : (t+1)·E]      (gradient × input summed over E)
Padding positions get a score like the others (E[pad] is usually zero) and ``explain`` skips them.
"""

from __future__ import annotations

import numpy as np

from . import metrics
from .model import Classifier
from .nn import activations, mlp
from .nn.mlp import OUTPUTS
from .text import CHAR_MARK

BATCH = 256          # texts explained together; bounds the (nnz, H) gather


def _first(spec: mlp.NetSpec) -> int:
    """Index in ``mlp.plan`` of the first layer that reads f (after E for the embedding kinds)."""
    return 0 if spec.input_kind == "bow" else 1


def logit_grad_first(params: dict, spec: mlp.NetSpec, caches: list, c) -> np.ndarray:
    """dk (N, H): ∂z_c/∂k of the first layer reading f, for class c (N,) of each row.

    ``mlp.backward``'s loop over layers with dz = onehot(c): dk = dh ⊙ g'(k), dh' = dk Wᵀ.
    """
    layers = mlp.plan(spec)
    first = _first(spec)
    z = caches[-1][2]                                       # (N, C): the output layer is identity
    dh = np.zeros_like(z)                                   # (N, C) ∂z_c/∂z
    dh[np.arange(len(z)), c] = 1
    for i in range(len(layers) - 1, first - 1, -1):
        layer = layers[i]
        _, k, h, _ = caches[i]
        dk = dh if layer.act == "identity" else dh * activations.get(layer.act, spec.leaky_slope)[1](k, h)
        if i > first:
            dh = dk @ params[layer.W].T                     # (N, H_prev)
    return dk                                               # (N, H)


def attribute(params: dict, spec: mlp.NetSpec, X, c=None):
    """(z (N, C), c (N,), A): gradient × input of the logit z_c for every input entry.

    X is what the network reads: the weighted bag (N, D) CSR for ``bow`` and ``embed_mean``,
    token ids (N, T) for ``embed_concat``. c defaults to the predicted class argmax z.
    A has X's layout: CSR with X's sparsity (a_nj for each stored entry) for the bag kinds,
    (N, T) for ``embed_concat``. See the module docstring for the math.
    """
    z, caches = mlp.forward(params, spec, X)                # (N, C)
    c = z.argmax(axis=1) if c is None else np.asarray(c)
    dk = logit_grad_first(params, spec, caches, c)          # (N, H)
    W = params[mlp.plan(spec)[_first(spec)].W]              # (D, H) or (E, H) or (T·E, H)
    n = z.shape[0]
    if spec.input_kind == "embed_concat":
        J = caches[0][0]                                    # (N, T)
        E = params["E"]                                     # (V, E)
        g = (dk @ W.T).reshape(n, J.shape[1], E.shape[1])   # (N, T, E) ∂z_c/∂f_t
        return z, c, np.einsum("nte,nte->nt", E[J], g)      # (N, T)
    x = caches[0][0]                                        # X (bow) or w = row_mean(X) (embed_mean), CSR
    rows = np.repeat(np.arange(n), np.diff(x.indptr))       # (nnz,) row of each entry
    if spec.input_kind == "bow":
        grad = np.einsum("rh,rh->r", W[x.indices], dk[rows])                # (nnz,) W[j] · dk_n
    else:
        g = dk @ W.T                                                        # (N, E) ∂z_c/∂f
        grad = np.einsum("re,re->r", params["E"][x.indices], g[rows])       # (nnz,) E[j] · g_n
    import scipy.sparse as sp
    A = sp.csr_matrix((x.data * grad, x.indices.copy(), x.indptr.copy()), shape=x.shape)
    return z, c, A


def feature_name(j: int, tokens: list) -> str:
    """A column's string: the vocabulary token or n-gram, ``~<gram>`` for a character n-gram
    (``~<un``, ``~ing>``), or ``#bucket<b>`` for hash bucket b."""
    if j >= len(tokens):
        return f"#bucket{j - len(tokens)}"
    t = tokens[j]
    return "~" + t[1:] if t.startswith(CHAR_MARK) else t


def _top(names: list, scores: np.ndarray, k: int) -> tuple:
    """(toward, against): the k largest positive and the k most negative (name, score), by |score|."""
    pos = [i for i in np.argsort(-scores, kind="stable")[:k].tolist() if scores[i] > 0]
    neg = [i for i in np.argsort(scores, kind="stable")[:k].tolist() if scores[i] < 0]
    return ([(names[i], float(scores[i])) for i in pos], [(names[i], float(scores[i])) for i in neg])


def explain(model: Classifier, texts: list, k: int = 5, batch: int = BATCH) -> list:
    """For each text: the predicted label, its probability, and the k features that pushed the
    logit of that label most toward it and most against it.

    Returns one dict per text: {"text", "label", "proba", "toward": [(feature, score), ...],
    "against": [(feature, score), ...]}, each list sorted by |score| and at most k long
    (positive scores only in ``toward``, negative only in ``against``). Features are
    vocabulary tokens and n-grams, ``#bucket<b>`` for hashed n-grams, ``<unk>`` for unknown
    words; for ``embed_concat`` one entry per position, padding skipped. ``proba`` uses the
    model's temperature. A model with several labels a text also gives "labels": one such
    {"label", "proba", "toward", "against"} for every label it predicts (at or above its
    threshold, the most probable one at least), most probable first; the top-level keys are
    the first of them.
    """
    tokens = model.featurizer.vocab.tokens
    concat = model.spec.input_kind == "embed_concat"
    several = model.spec.output == "sigmoid"
    out = []
    for start in range(0, len(texts), batch):
        chunk = list(texts[start:start + batch])
        X = model.featurizer.transform(chunk)               # (N, D) CSR or (N, T) ids
        z, c, A = attribute(model.params, model.spec, X)
        proba = OUTPUTS[model.spec.output](z / z.dtype.type(model.temperature))   # (N, C); σ(z) for several labels
        rows, labels = np.arange(len(chunk)), c             # (R,) the (text, label) pairs explained
        if several:
            keep = metrics.decide(proba, 0.5 if model.thresholds is None else model.thresholds)   # (N, C)
            rows, labels = np.nonzero(keep)
            order = np.lexsort((-proba[rows, labels], rows))                # by text, most probable first
            rows, labels = rows[order], labels[order]
            _, _, A = attribute(model.params, model.spec, X[rows], labels)  # one row a pair
        per_text = [[] for _ in chunk]
        for r, (i, label) in enumerate(zip(rows.tolist(), labels.tolist())):
            if concat:
                keep_t = X[i] != model.spec.pad_id
                cols, scores = X[i][keep_t], A[r][keep_t]
            else:
                sl = slice(A.indptr[r], A.indptr[r + 1])
                cols, scores = A.indices[sl], A.data[sl]
            names = [feature_name(j, tokens) for j in cols.tolist()]
            toward, against = _top(names, np.asarray(scores, dtype=np.float64), k)
            per_text[i].append({"label": model.labels[label], "proba": float(proba[i, label]),
                                "toward": toward, "against": against})
        for text, explained in zip(chunk, per_text):
            item = {"text": text, **explained[0]}
            if several:
                item["labels"] = explained
            out.append(item)
    return out

"""What a model is and what it has learnt: `nlclf inspect`."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import scipy.sparse as sp

from . import checkpoint, data, explain, parallel
from .errors import ConfigError
from .model import Classifier
from .nn import mlp
from .nn.losses import log_softmax, softplus
from .text import SEP


def _single_feature_inputs(model: Classifier, ids):
    """X with one row per feature id: a bag holding only that feature (weighted like training),
    or a text of that one token (embed_concat)."""
    n = len(ids)
    if model.spec.input_kind == "embed_concat":
        X = np.full((n, model.spec.max_tokens), model.spec.pad_id, dtype=np.int32)
        X[:, 0] = ids
        return X
    X = sp.csr_matrix((np.ones(n, np.float32), np.asarray(ids, np.int32), np.arange(n + 1)),
                      shape=(n, model.featurizer.n_features))
    return model.featurizer.weigh(X)


def run_inspect(model_dir, data_path=None, words: Iterable[str] = (), top: int = 10, chunk: int = 4096) -> dict:
    """What a model is: shape, parameters, vocabulary; the features most associated with each
    label (log-probability of the label given a text of that feature alone); with a data file,
    the unknown-word rate and the most frequent unknown words; nearest neighbours of ``words``
    in the embedding table (embedding kinds)."""
    model, cfg, meta = checkpoint.load(model_dir)
    spec, fz = model.spec, model.featurizer
    vocab = fz.vocab.tokens
    r = {"model": str(model_dir), "kind": spec.input_kind, "hidden": list(spec.hidden),
         "ensemble": cfg.train.ensemble, "member_hidden": [h // cfg.train.ensemble for h in spec.hidden],
         "activation": spec.activation, "labels": model.labels, "temperature": model.temperature,
         "vocab_size": len(vocab), "n_features": fz.n_features,
         "parameters": {k: list(v.shape) for k, v in model.params.items()},
         "n_parameters": mlp.n_params(model.params),
         "size_bytes": sum(f.stat().st_size for f in checkpoint.model_files(model_dir))}
    if model.compression is not None:
        r["compressed"] = dict(model.compression)
    ids = np.arange(2, len(vocab))
    C = len(model.labels)
    best = [np.zeros(0)] * C
    best_ids = [np.zeros(0, np.int64)] * C
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        z = mlp.forward(model.params, spec, _single_feature_inputs(model, part))[0]
        logp = -softplus(-z) if spec.output == "sigmoid" else log_softmax(z)      # log σ(z) for several labels
        for c in range(C):                       # keep a running top-k per label
            s = np.concatenate([best[c], logp[:, c]])
            i = np.concatenate([best_ids[c], part])
            keep = np.argsort(-s, kind="stable")[:top]
            best[c], best_ids[c] = s[keep], i[keep]
    r["top_features"] = {model.labels[c]: [(explain.feature_name(i, vocab), float(np.exp(s)))
                                           for i, s in zip(best_ids[c].tolist(), best[c].tolist())]
                         for c in range(C)}
    if data_path is not None:
        texts = data.iter_texts([str(data_path)], cfg.data)
        unknown: dict = {}
        n_tokens = n_unk = 0
        index = fz.vocab.index
        for batch in parallel.chunks(texts, 4096):
            for t in fz.tokens_of(batch):
                if t == SEP:
                    continue
                n_tokens += 1
                if t not in index:
                    n_unk += 1
                    unknown[t] = unknown.get(t, 0) + 1
        r["unknown_rate"] = n_unk / n_tokens if n_tokens else 0.0
        r["tokens"] = n_tokens
        r["frequent_unknown"] = sorted(unknown.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    if words:
        if "E" not in model.params:
            raise ConfigError(f"--word: {model_dir} is a bag-of-words model; nearest neighbours need an "
                              f"embedding model (features.kind embed_mean or embed_concat)")
        E = model.params["E"].astype(np.float64)
        norms = np.linalg.norm(E, axis=1)
        norms[norms == 0] = 1.0
        r["neighbours"] = {}
        for w in words:
            w = w.lower() if cfg.features.lowercase else w
            if w not in fz.vocab.index:
                r["neighbours"][w] = None
                continue
            j = fz.vocab.index[w]
            cos = E @ E[j] / (norms * norms[j])
            cos[[0, 1, j]] = -np.inf
            nn_ids = np.argsort(-cos, kind="stable")[:top]
            r["neighbours"][w] = [(explain.feature_name(i, vocab), float(cos[i])) for i in nn_ids.tolist()]
    return r

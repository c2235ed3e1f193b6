"""Training-loop and prediction seconds on debtags: several labels a text (sigmoid outputs, binary
cross-entropy, Y (N, C) uint8) against one label a text (each text's first tag; softmax,
cross-entropy) with the same X and the same network shape (the default config, 100 outputs).

Usage: python bench/multilabel_speed.py [--data-root ../shared/data]

Three rounds, alternating; prints each round and the medians (2 epochs of the loop, then
predict_proba of dev and 5,000 training rows).
"""
import argparse
import time

import numpy as np
from nlclf import config, data, features, pipeline, training
from nlclf.nn import mlp
ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--data-root", default="../shared/data")
D = f"{ap.parse_args().data_root}/debtags"
cfg = config.load_text("data: {train: x}\ntrain: {epochs: 2, patience: 0}\n")
opts = config.DataConfig(format="fasttext")
sets, texts = data.read_multilabelled(f"{D}/train.txt", opts)
dsets, dtexts = data.read_multilabelled(f"{D}/dev.txt", opts)
labels = sorted({l for s in sets for l in s})
Y, Yd = data.label_matrix(sets, labels), data.label_matrix(dsets, labels)
y = np.array([labels.index(s[0]) for s in sets]); yd = np.array([labels.index(s[0]) for s in dsets])
f = features.make(cfg.features)
X = f.fit_transform(texts, y); Xd = f.transform(dtexts)
t = training.resolve_auto(cfg.train, X.shape[0], True)
out = {"one": [], "several": []}
for rep in range(3):
    for name in ("one", "several"):
        spec = pipeline.net_spec(cfg, f, len(labels), name == "several")
        params = mlp.init_params(spec, np.random.default_rng(0))
        d = training.Data(X, Y, Xd, Yd, training.pos_weights(Y, "auto")) if name == "several" else training.Data(X, y, Xd, yd)
        r = training.fit(spec, params, d, t, np.random.default_rng(0))
        t0 = time.perf_counter(); mlp.predict_proba(params, spec, Xd); mlp.predict_proba(params, spec, X[:5000]); tp = time.perf_counter() - t0
        out[name].append((r.train_seconds, tp))
        print(name, rep, f"loop {r.train_seconds:.2f} s (2 epochs), predict {tp:.3f} s", flush=True)
for name, v in out.items():
    print(name, "median loop", np.median([a for a, _ in v]), "median predict", np.median([b for _, b in v]))

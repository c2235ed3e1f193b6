"""Build the synthetic speed-benchmark corpus from the real sentence sets.

The lines of sst5 (train+dev+test), trec (train+test) and mr (all) are pooled and
grouped by (set, label): 13 groups named like ``sst5:positive``, ``trec:HUM``,
``mr:negative``. Each document picks a group with probability proportional to its
size, then three sentences drawn uniformly with replacement from that group, joined
by one space; its label is the group name.

Writes to ``--out-dir``:

* ``train.tsv``   -- ``--docs`` documents, ``label<TAB>text``;
* ``dev.tsv``     -- ``--dev-docs`` documents from a distinct seed stream;
* ``predict.txt`` -- the text of the train documents, one a line (no label).

The output depends only on the data files and ``--seed``.

    python bench/corpus.py --data-root ../shared/data --docs 1000000 \\
        --dev-docs 20000 --seed 0 --out-dir bench/out
"""
import argparse
from pathlib import Path

import numpy as np

SOURCES = {
    "sst5": ("train.tsv", "dev.tsv", "test.tsv"),
    "trec": ("train.tsv", "test.tsv"),
    "mr": ("all.tsv",),
}
SENTENCES_PER_DOC = 3
CHUNK = 100_000  # documents formatted and written per write() call


def load_groups(data_root):
    """Return ``(names, pool, offsets)``: the group names in a fixed order, all sentences
    concatenated group by group, and each group's start in ``pool`` (plus the end)."""
    groups = {}
    for name, files in SOURCES.items():
        for fname in files:
            with open(Path(data_root) / name / fname, encoding="utf-8") as f:
                for line in f:
                    line = line.rstrip("\n")
                    if line:
                        label, text = line.split("\t", 1)
                        groups.setdefault(f"{name}:{label}", []).append(text)
    names = sorted(groups)
    pool = [text for n in names for text in groups[n]]
    offsets = np.cumsum([0] + [len(groups[n]) for n in names])
    return names, pool, offsets


def sample(rng, n, offsets):
    """Draw ``n`` documents: return (group index per doc, pool indices of shape (n, 3))."""
    sizes = np.diff(offsets)
    group = rng.choice(len(sizes), size=n, p=sizes / sizes.sum())
    within = rng.integers(0, sizes[group][:, None], size=(n, SENTENCES_PER_DOC))
    return group, offsets[group][:, None] + within


def write(path, names, pool, group, idx, with_label=True):
    """Write documents in chunks of ``CHUNK`` lines."""
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, len(group), CHUNK):
            rows = idx[start:start + CHUNK].tolist()
            texts = [" ".join([pool[i] for i in row]) for row in rows]
            if with_label:
                labels = [names[g] for g in group[start:start + CHUNK].tolist()]
                lines = [f"{lab}\t{t}" for lab, t in zip(labels, texts)]
            else:
                lines = texts
            f.write("\n".join(lines) + "\n")


def main(argv=None):
    """Parse the command line and write the three files."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True)
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--dev-docs", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default="bench/out")
    args = p.parse_args(argv)

    names, pool, offsets = load_groups(args.data_root)
    train_rng, dev_rng = (np.random.default_rng(s)
                          for s in np.random.SeedSequence(args.seed).spawn(2))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    group, idx = sample(train_rng, args.docs, offsets)
    write(out / "train.tsv", names, pool, group, idx)
    write(out / "predict.txt", names, pool, group, idx, with_label=False)
    group, idx = sample(dev_rng, args.dev_docs, offsets)
    write(out / "dev.tsv", names, pool, group, idx)


if __name__ == "__main__":
    main()

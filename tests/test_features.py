"""Tokenizer, vocabulary and featurizers: edge cases, weightings, n-grams, hashing, padding."""

import numpy as np
import pytest

from nlclf.config import FeatureSpec
from nlclf.features import make as Featurizer
from nlclf.features.bag import bucket_of
from nlclf.nn import mlp
from nlclf.text import CHAR_MARK, SEP, char_ngrams, tokenize_many
from nlclf.vocab import PAD_ID, UNK_ID, Vocabulary

from test_gradients import check

TEXTS = ["the cat sat on the mat", "the dog sat", "a cat and a dog", "the the the"]
Y = [0, 1, 1, 0]                 # labels of TEXTS (nb weights need them)


def tok(text, **kw):
    """The tokens of one text as production makes them: tokenize_many on a one-text batch."""
    tokens = tokenize_many([text], **kw)
    assert tokens[-1] == SEP
    return tokens[:-1]


def test_regex_tokenizer_unicode():
    assert tok("Hello, World!") == ["hello", ",", "world", "!"]
    assert tok("Café déjà-vu") == ["café", "déjà", "-", "vu"]
    assert tok("don't stop") == ["don't", "stop"]
    assert tok("東京タワー") == ["東", "京", "タ", "ワ", "ー"]
    assert tok("great 👍🏽 movie") == ["great", "👍", "🏽", "movie"]
    assert tok("") == [] and tok("   \t  ") == []


def test_tokenizer_options():
    assert tok("A  b\tC", mode="whitespace") == ["a", "b", "c"]
    assert tok("A b", mode="whitespace", lowercase=False) == ["A", "b"]
    assert tok("Café Noël", accents=False) == ["cafe", "noel"]
    assert tok("wow , really ?! yes", punctuation=False) == ["wow", "really", "yes"]
    assert tok("abc defgh", mode="whitespace", max_chars=5) == ["abc", "d"]
    long = "word " * 100000
    assert len(tok(long)) == 100000


def test_a_batch_keeps_texts_apart():
    """SEP ends every text, even one holding SEP itself; a text's tokens never run into the next's."""
    tokens = tokenize_many(["a b", "", "c\x00d", "E"])
    assert tokens == ["a", "b", SEP, SEP, "c", "d", SEP, "e", SEP]


def test_tokens_longer_than_max_token_chars_are_cut():
    f = Featurizer(FeatureSpec(kind="bow", tokenizer="whitespace", max_token_chars=4, char_ngrams=()))
    assert f.tokens_of(["abcdefgh ab"]) == ["abcd", "ab", SEP]


def test_vocabulary_order_thresholds_and_reserved():
    from collections import Counter
    counts = Counter({"b": 3, "a": 3, "c": 5, "d": 1})
    v = Vocabulary.build(counts, min_count=2)
    assert v.tokens == ["<pad>", "<unk>", "c", "a", "b"]        # (-count, token)
    assert Vocabulary.build(counts, max_size=2).tokens == ["<pad>", "<unk>", "c", "a"]


def bow(y=Y, **kw):
    kw = {"ngrams": 1, "weighting": "count", "min_count": 1, "char_ngrams": (), "char_weight": 1.0,
          "normalize": False, **kw}                                      # the cases below: plain counts of every word
    return Featurizer(FeatureSpec(kind="bow", tokenizer="whitespace", **kw)).fit(TEXTS, y)


def test_bow_counts_and_unknown_words():
    f = bow()
    X = f.transform(["the the cat zebra", "", "   "])
    assert X.shape == (3, len(f.vocab)) and X.dtype == np.float32
    row = dict(zip(X[0].indices, X[0].data))
    assert row == {f.vocab.index["the"]: 2.0, f.vocab.index["cat"]: 1.0, UNK_ID: 1.0}
    assert X[1].nnz == 0 and X[2].nnz == 0


@pytest.mark.parametrize("weighting", ["count", "binary", "log", "tfidf"])
def test_weightings(weighting):
    f = bow(weighting=weighting)
    X = f.transform(["the the cat"])
    the, cat = f.vocab.index["the"], f.vocab.index["cat"]
    got = dict(zip(X.indices, X.data))
    tf = {"count": (2, 1), "binary": (1, 1), "log": (1 + np.log(2), 1), "tfidf": (2, 1)}[weighting]
    if weighting == "tfidf":     # smoothed idf from the training texts: df(the) = 3, df(cat) = 2, N = 4
        tf = (2 * (np.log(5 / 4) + 1), 1 * (np.log(5 / 3) + 1))
    assert got[the] == pytest.approx(tf[0], rel=1e-6) and got[cat] == pytest.approx(tf[1], rel=1e-6)


@pytest.mark.parametrize("y,the_weight,cat_weight", [
    # two classes: NBSVM's |r| = |log((p/|p|1) / (q/|q|1))| with α = 1 over the 10 features
    # (<pad>, <unk>, 8 words). Class 0 (texts 0, 3) holds 6 binarized entries -> |p|1 = 16;
    # class 1 (texts 1, 2) holds 7 -> |q|1 = 17. the: p 1+2, q 1+1; cat: p 1+1, q 1+1.
    ([0, 1, 1, 0], np.log((3 / 16) / (2 / 17)), np.log((2 / 16) / (2 / 17))),
    # three classes: sums 16, 13 (text 1: 3 entries), 14 (text 2: 4 entries); the: 3, 2, 1;
    # cat: 2, 1, 2 -> max - min of log p(feature | c)
    ([0, 1, 2, 0], np.log(3 / 16) - np.log(1 / 14), np.log(2 / 14) - np.log(1 / 13)),
])
def test_nb_weights_are_the_spread_of_smoothed_log_likelihoods(y, the_weight, cat_weight):
    f = bow(y=y, weighting="nb")
    X = f.transform(["the the cat"])                  # binarized, times the weight
    got = dict(zip(X.indices, X.data))
    assert got[f.vocab.index["the"]] == pytest.approx(the_weight, rel=1e-6)
    assert got[f.vocab.index["cat"]] == pytest.approx(cat_weight, rel=1e-6)
    assert f.weights.dtype == np.float32 and f.weights.shape == (f.n_features,)


def test_nb_weights_need_labels():
    with pytest.raises(ValueError, match="labels"):
        bow(y=None, weighting="nb")


def test_l2_normalisation():
    X = bow(normalize=True).transform(["the cat sat", "", "dog dog"])
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    assert norms == pytest.approx([1.0, 0.0, 1.0])


def test_bigrams_in_vocabulary_and_hashed():
    f = bow(ngrams=2, hash_buckets=16)
    assert "the cat" in f.vocab and f.n_features == len(f.vocab) + 16
    X = f.transform(["the cat", "cat the"])          # "cat the" was never seen: hashed
    assert f.vocab.index["the cat"] in X[0].indices
    assert len(f.vocab) + f.ngram_bucket(["cat", "the"]) in X[1].indices
    assert f.ngram_bucket(["cat", "the"]) == f.ngram_bucket(["cat", "the"])
    g = bow(ngrams=2)                                 # no buckets: unseen bigrams are dropped
    assert g.transform(["cat the"]).nnz == 2


def test_lookup_tables_of_a_saved_vocabulary():
    """Words only inside kept n-grams, <pad>/<unk> typed as text, and every kind of entry,
    read from a vocabulary as a loaded model has it."""
    tokens = ["<pad>", "<unk>", "the", "the cat", "cat sat", "big cat sat", CHAR_MARK + "<ze", "dog"]
    spec = FeatureSpec(kind="bow", tokenizer="whitespace", ngrams=3, weighting="count", min_count=1,
                       char_ngrams=(3, 3), char_weight=1.0, normalize=False, hash_buckets=0)
    f = Featurizer(spec, Vocabulary(tokens, np.ones(len(tokens), dtype=np.int64)))
    X = f.transform(["the cat sat", "big cat sat", "<pad> <unk> dog", "zebra"]).toarray()
    at = {t: i for i, t in enumerate(tokens)}
    assert X[0, [at["the"], at["the cat"], at["cat sat"]]].tolist() == [1, 1, 1]
    assert X[0, UNK_ID] == 2                                       # cat, sat: words only inside n-grams
    assert X[1, [at["big cat sat"], at["cat sat"]]].tolist() == [1, 1] and X[1, UNK_ID] == 3
    assert X[2, PAD_ID] == 0 and X[2, UNK_ID] == 2 and X[2, at["dog"]] == 1
    assert X[3, at[CHAR_MARK + "<ze"]] == 1 and X[3, UNK_ID] == 1
    assert X.sum(axis=1).tolist() == [5, 5, 3, 2]                 # nothing else: the rest is unseen


@pytest.mark.parametrize("weighting", ["count", "binary", "log", "tfidf", "nb"])
def test_gradient_through_each_weighting_with_ngrams_and_hashing(weighting, rng):
    f = bow(ngrams=2, hash_buckets=5, weighting=weighting, normalize=weighting == "log")
    X = f.transform(TEXTS + ["a cat sat on a dog", "the mat"]).astype(np.float64)
    spec = mlp.NetSpec("bow", f.n_features, 3, hidden=(4,), activation="tanh")
    params = mlp.init_params(spec, rng, np.float64)
    check(params, spec, X, rng.integers(0, 3, size=X.shape[0]), 0.1)


@pytest.mark.parametrize("truncate,expected", [("head", ["the", "cat", "sat"]), ("tail", ["on", "the", "mat"])])
def test_embed_concat_pads_and_truncates(truncate, expected):
    f = Featurizer(FeatureSpec(kind="embed_concat", tokenizer="whitespace", max_tokens=3, min_count=1,
                               truncate=truncate)).fit(TEXTS)
    X = f.transform(["the cat sat on the mat", "dog", "", "zebra"])
    assert X.shape == (4, 3) and X.dtype == np.int32
    assert [f.vocab.tokens[i] for i in X[0]] == expected
    assert list(X[1]) == [f.vocab.index["dog"], PAD_ID, PAD_ID]
    assert list(X[2]) == [PAD_ID] * 3 and list(X[3]) == [UNK_ID, PAD_ID, PAD_ID]


def test_nb_spread_is_the_same_computed_in_blocks():
    from nlclf.features.weighting import nb_spread
    f = bow(y=[0, 1, 2, 0], weighting="count", ngrams=2)
    X = f.transform(TEXTS)
    whole = nb_spread(X, [0, 1, 2, 0], 0.5)
    assert np.array_equal(nb_spread(X, [0, 1, 2, 0], 0.5, block=3), whole)
    assert whole.shape == (f.n_features,) and np.all(whole >= 0)


def test_nb_spread_counts_the_same_dense_or_sparse(monkeypatch):
    """The (feature, class) counts in one dense array (few pairs) or as sparse blocks (many)."""
    import scipy.sparse as sp
    from nlclf.features import weighting
    rng = np.random.default_rng(3)
    X = sp.random(300, 500, density=0.05, format="csr", random_state=4, dtype=np.float32)
    y = rng.integers(0, 7, 300)
    dense = weighting.nb_spread(X, y, 1.0)
    monkeypatch.setattr(weighting, "NB_DENSE_COUNTS", 0)
    assert np.array_equal(weighting.nb_spread(X, y, 1.0), dense)


def test_char_ngrams_of_a_word():
    assert char_ngrams("ab", 1, 3) == [CHAR_MARK + g for g in ["a", "b", "<a", "ab", "b>", "<ab", "ab>"]]
    assert char_ngrams("cat", 3, 3) == [CHAR_MARK + g for g in ["<ca", "cat", "at>"]]
    assert char_ngrams("a", 4, 6) == []                  # "<a>" is shorter than every length asked


def test_char_weight_scales_character_ngrams_only_and_before_normalizing():
    plain, light = bow(char_ngrams=(3, 3), char_weight=1.0), bow(char_ngrams=(3, 3), char_weight=0.25)
    texts = ["the cat", "scat the the", "cat sat on the mat"]
    X1, X2 = plain.transform(texts).toarray(), light.transform(texts).toarray()
    is_char = np.array([t.startswith(CHAR_MARK) for t in plain.vocab.tokens])
    assert is_char.any() and (~is_char).any() and plain.vocab.tokens == light.vocab.tokens
    assert np.array_equal(X2[:, ~is_char], X1[:, ~is_char])              # words (and <unk>) as they were
    assert np.array_equal(X2[:, is_char], 0.25 * X1[:, is_char])
    nb1 = bow(char_ngrams=(3, 3), weighting="nb", char_weight=1.0)
    nb2 = bow(char_ngrams=(3, 3), weighting="nb", char_weight=0.5)
    assert np.allclose(nb2.transform(texts).toarray(), nb1.transform(texts).toarray() * np.where(is_char, 0.5, 1.0))
    assert np.array_equal(nb2.weights, nb1.weights)                     # the NB weights themselves unscaled
    normed = bow(char_ngrams=(3, 3), char_weight=0.25, normalize=True).transform(texts).toarray()
    assert np.allclose(normed, X2 / np.linalg.norm(X2, axis=1, keepdims=True), atol=1e-6)
    assert np.array_equal(bow(char_weight=0.25).transform(texts).toarray(), bow().transform(texts).toarray())


def test_char_ngrams_counted_from_training_and_given_to_unknown_words():
    f = bow(char_ngrams=(3, 3), min_count=2)
    vocab = set(f.vocab.tokens)
    # 'cat' occurs twice in TEXTS, so its grams <ca, cat, at> reach min_count 2; <ma only in 'mat', once
    assert {CHAR_MARK + "<ca", CHAR_MARK + "cat", CHAR_MARK + "at>"} <= vocab
    assert CHAR_MARK + "<ma" not in vocab and "mat" not in vocab
    X = f.transform(["scat", "cat"])                     # scat: an unknown word sharing "cat", "at>"
    names = [{f.vocab.tokens[j] for j in X[i].indices} for i in range(2)]
    assert names[0] == {"<unk>", CHAR_MARK + "cat", CHAR_MARK + "at>"}
    assert names[1] == {"cat", CHAR_MARK + "<ca", CHAR_MARK + "cat", CHAR_MARK + "at>"}


def test_char_ngrams_hashed_cached_and_the_same_in_any_batch():
    f = bow(char_ngrams=(2, 4), hash_buckets=16)
    texts = ["the zebra sat", "zebra zebra", "", "the cat"]
    X = f.transform(texts)
    V = len(f.vocab)
    assert X[1].indices.max() >= V                       # unseen grams of 'zebra' went to buckets
    assert np.all(X[1].data % 2 == 0)                    # 'zebra' twice: every column counted twice
    again = f.transform(texts)                           # vocabulary words' grams now come from the cache
    one_by_one = [f.transform([t]) for t in texts]
    for i in range(len(texts)):
        assert dict(zip(X[i].indices, X[i].data)) == dict(zip(again[i].indices, again[i].data))
        assert dict(zip(X[i].indices, X[i].data)) == dict(zip(one_by_one[i].indices, one_by_one[i].data))
    expected = {f.vocab.index.get(g, V + bucket_of(g, 16)) for g in ["the", *char_ngrams("the", 2, 4),
                                                                     "cat", *char_ngrams("cat", 2, 4)]}
    assert set(X[3].indices) == expected


def test_ngram_counts_merged_from_parts_are_summed_per_key(rng):
    """bag._counts_merge: the sorted distinct keys of several chunks' n-gram counts, each key's
    counts summed and its words kept, whatever the parts' order and sizes (the fit pass merges
    every MERGE_EVERY keys, then once at the end)."""
    from collections import Counter
    from nlclf.features.bag import _counts_merge, key_of
    parts, expected = [], Counter()
    for size in (0, 1, 50, 400):
        words = rng.integers(0, 30, size=(size, 2)).astype(np.int32)          # (U, 2): many repeats
        counts = rng.integers(1, 9, size=size)
        parts.append((key_of([words[:, 0], words[:, 1]]), counts, words))
        for (a, b), c in zip(words.tolist(), counts.tolist()):
            expected[a, b] += c
    keys, counts, words = _counts_merge(parts)
    assert (keys[1:] > keys[:-1]).all() and counts.dtype == np.int64
    assert dict(zip(map(tuple, words.tolist()), counts.tolist())) == dict(expected)
    assert np.array_equal(keys, key_of([words[:, 0], words[:, 1]]))
    merged_twice = _counts_merge([_counts_merge(parts[:2]), *parts[2:]])
    assert all(np.array_equal(a, b) for a, b in zip(merged_twice, (keys, counts, words)))
    empty = _counts_merge([parts[0]])
    assert len(empty[0]) == len(empty[1]) == len(empty[2]) == 0 and empty[2].shape == (0, 2)


@pytest.mark.parametrize("light", [False, True])
def test_counts_csr_counts_each_row_and_column_of_its_segments(rng, light):
    """Segments whose rows are in order, of rows from empty to 3,000 entries (power-of-two
    blocks of several widths, empty rows first and last): the CSR of np.unique's counts."""
    from nlclf.features.bag import counts_csr
    n, D = 40, 500
    lengths = rng.integers(0, 60, n)
    lengths[[0, 7, n - 1]] = 0
    lengths[3], lengths[11] = 3000, 1
    segments, all_rows, all_cols = [], [], []
    for _ in range(3):                                                   # three segments, each in row order
        k = rng.multinomial(lengths.sum() // 3, lengths / lengths.sum())
        rows = np.repeat(np.arange(n), k)
        cols = rng.integers(0, D if len(segments) else 20, len(rows))     # many repeats in one segment
        segments.append((rows, cols))
        all_rows.append(rows)
        all_cols.append(cols)
    X = counts_csr(segments, (n, D), light)
    keys, counts = np.unique(np.concatenate(all_rows) * D + np.concatenate(all_cols), return_counts=True)
    indptr = np.searchsorted(keys, np.arange(n + 1) * D)
    assert np.array_equal(X.indptr, indptr) and np.array_equal(X.indices, keys % D)
    assert X.data.dtype == np.float32 and np.array_equal(X.data, counts)
    empty = counts_csr([(np.zeros(0, np.int64), np.zeros(0, np.int64))], (3, D), light)
    assert list(empty.indptr) == [0, 0, 0, 0] and len(empty.indices) == 0


@pytest.mark.parametrize("n_keys", [8, 3000])
def test_key_table_finds_every_key_and_misses_the_others_through_collisions(rng, n_keys):
    """A table at most half full probes past occupied slots: every stored key gives its value,
    every other key -1, as a dict would; keys made to share their first slot are found too."""
    from nlclf.features.bag import KeyTable, _mix
    keys = np.unique(rng.integers(0, 2**40, n_keys).astype(np.uint64))
    table = KeyTable(keys, np.arange(len(keys)) * 7)
    others = rng.integers(2**40, 2**41, 4 * n_keys).astype(np.uint64)
    query = rng.permutation(np.concatenate([keys, others]))
    expected = {int(k): 7 * i for i, k in enumerate(keys.tolist())}
    assert table.get(query).tolist() == [expected.get(int(k), -1) for k in query.tolist()]
    slot = _mix(keys) & table.mask
    assert len(np.unique(slot)) < len(keys)                   # collisions happened, and were probed past

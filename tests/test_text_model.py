"""The text model, really trained on a small slice of the development catalog (800 texts; seconds on one thread).

Product texts are short, so many epochs cost little and the word vectors become meaningful even on a
slice; a few hundred 20 Newsgroups posts at a test-sized budget leave skip-gram vectors nearly collinear.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from embedding.text import (
    TextConfig,
    TextEmbedder,
    TextInputError,
    TextModelIncompatibleError,
    TextModelMissingError,
    TextTrainingError,
    tokenize,
    train_text_model,
)
from embedding.text.artifact import CURRENT
from embedding.text.corpora import Labelled
from embedding.text.scdv import Mixture
from niteru.catalog import read_catalog, stratified_sample

pytestmark = pytest.mark.slow


def small_config(model_dir: Path, **overrides: object) -> TextConfig:
    values: dict[str, object] = {
        "dim": 32,
        "epochs": 20,
        "clusters": 6,
        "buckets": 20_000,
        "reduced_dim": 24,
        "threads": 1,  # one thread: repeatable
        "seed": 7,
        **overrides,
    }
    return TextConfig(model_dir, **values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def corpus(catalog_dir: Path) -> tuple[Labelled, Labelled]:
    """800 training and 300 held-out product texts spread over the whole file, labelled by category."""
    rows = read_catalog(catalog_dir)
    train = stratified_sample(rows, 800)
    taken = {r.product_id for r in train}
    test = stratified_sample([r for r in rows if r.product_id not in taken], 300)
    return tuple(Labelled([r.text for r in part], [r.category for r in part]) for part in (train, test))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, corpus: tuple[Labelled, Labelled]) -> tuple[TextConfig, Path]:
    config = small_config(tmp_path_factory.mktemp("text-model"))
    return config, train_text_model(corpus[0].texts, config)


@pytest.fixture(scope="module")
def embedder(trained: tuple[TextConfig, Path]) -> TextEmbedder:
    return TextEmbedder(trained[0]).load()


def test_products_of_a_category_are_closer_than_products_of_different_categories(
    embedder: TextEmbedder, corpus: tuple[Labelled, Labelled]
) -> None:
    labels = np.array(corpus[1].labels)  # held-out texts: none was seen in training
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    different = labels[:, None] != labels[None, :]
    for embed in (embedder.embed, embedder.embed_full):
        sims = (x := embed(corpus[1].texts)) @ x.T
        assert sims[same].mean() > sims[different].mean() + 0.15
    # and each held-out text's nearest training text is mostly of its category
    x_train, x_test = embedder.embed(corpus[0].texts), embedder.embed(corpus[1].texts)
    nearest = np.array(corpus[0].labels)[np.argmax(x_test @ x_train.T, axis=1)]
    assert (nearest == labels).mean() > 0.7


def test_vectors_have_the_promised_shape_and_length(embedder: TextEmbedder, corpus: tuple[Labelled, Labelled]) -> None:
    texts = corpus[1].texts[:10]
    x = embedder.embed(texts)
    assert x.shape == (10, embedder.dim) == (10, 24) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    full = embedder.embed_full(texts)
    assert full.shape == (10, 6 * 32) and (full == 0).any()  # sparsified
    np.testing.assert_array_equal(embedder.embed_full_sparse(texts).toarray(), full)
    assert embedder.embed_average(texts).shape == (10, 32)
    assert embedder.version.startswith("scdv-") and embedder.version == embedder.meta["version"]
    for embed in (embedder.embed, embedder.embed_full, embedder.embed_average):
        assert embed([]).shape[0] == 0
    assert embedder.embed_full_sparse([]).shape == (0, embedder.full_dim)


def test_full_vector_is_the_scdv_formula(embedder: TextEmbedder, corpus: tuple[Labelled, Labelled]) -> None:
    """Recompute SCDV by hand for a text of vocabulary words: sum of idf x (p_w ⊗ v_w), normalise, sparsify."""
    import fasttext
    from sklearn.mixture import GaussianMixture

    words = [w for w in embedder._index if w not in {"the", "a"}][:40]
    text = " ".join(words + words[:10])  # the first ten words twice: counts matter
    ft = fasttext.load_model(str(embedder.model_dir / embedder.version / "fasttext.bin"))
    gmm = GaussianMixture(n_components=6, covariance_type="diag")
    gmm.weights_, gmm.means_ = embedder._mixture.weights, embedder._mixture.means
    gmm.precisions_cholesky_ = embedder._mixture.precisions_cholesky
    # idf from the training documents, by sklearn's smoothed formula
    docs = [set(tokenize(t)) for t in corpus[0].texts]
    n = len(docs)
    expected = np.zeros(6 * 32)
    for word, count in Counter(tokenize(text)).items():
        v = ft.get_word_vector(word).astype(np.float64)
        p = gmm.predict_proba(v[None, :])[0]
        idf = np.log((1 + n) / (1 + sum(word in d for d in docs))) + 1
        expected += count * idf * np.kron(p, v)
    expected /= np.linalg.norm(expected)
    expected[np.abs(expected) < embedder.threshold] = 0
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(embedder.embed_full([text])[0], expected, atol=2e-5)


@pytest.mark.parametrize("covariance", ["diag", "tied", "spherical"])
def test_mixture_posterior_matches_scikit_learn(covariance: str, embedder: TextEmbedder) -> None:
    from sklearn.mixture import GaussianMixture

    vectors = embedder._vectors[:400].astype(np.float64)
    gmm = GaussianMixture(n_components=5, covariance_type=covariance, random_state=0, max_iter=20).fit(vectors)
    ours = Mixture.from_sklearn(gmm).predict_proba(embedder._vectors[400:600])
    np.testing.assert_allclose(ours, gmm.predict_proba(embedder._vectors[400:600].astype(np.float64)), atol=1e-4)


def test_saved_and_reloaded_model_gives_identical_vectors(
    trained: tuple[TextConfig, Path], embedder: TextEmbedder, corpus: tuple[Labelled, Labelled], tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained[1], copy)
    again = TextEmbedder(trained[0], model_dir=copy).load()
    texts = corpus[1].texts[:20]
    np.testing.assert_array_equal(again.embed(texts), embedder.embed(texts))
    assert again.version == embedder.version


def test_retraining_on_one_thread_with_a_seed_gives_the_same_model(
    tmp_path: Path, corpus: tuple[Labelled, Labelled]
) -> None:
    """Every array of the artifact (word vectors, mixture, idf, threshold, PCA) is bit-identical."""
    from embedding.text.artifact import load_artifact

    texts = corpus[0].texts[::4]
    first, second = (
        load_artifact(train_text_model(texts, s)) for s in (small_config(tmp_path / "a"), small_config(tmp_path / "b"))
    )
    assert first.arrays.keys() == second.arrays.keys()
    for name in first.arrays:
        np.testing.assert_array_equal(first.arrays[name], second.arrays[name], err_msg=name)
    assert len(first.arrays["words"]) > 100


def test_fasttext_initialises_its_whole_input_matrix(tmp_path: Path) -> None:
    """The installed fastText carries scripts/setup.sh's patch: upstream 0.9.3 fills only thread/10 of
    the input matrix and leaves the rest as uninitialised memory (zeros or garbage), fastText#1061.
    At a learning rate of almost nothing the trained matrix is still the initial uniform(-1/dim, 1/dim)."""
    import fasttext

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("red cotton shirt\nblue cotton shirt\n" * 20, encoding="utf-8")
    dim = 16
    model = fasttext.train_unsupervised(
        str(corpus), model="skipgram", dim=dim, epoch=1, lr=1e-9, minCount=1, bucket=5_000, thread=1, verbose=0
    )
    matrix = model.get_input_matrix()
    assert matrix.shape[0] >= 5_000
    assert np.isfinite(matrix).all()
    assert np.abs(matrix).max() <= 1.0 / dim
    zero_rows = int((np.abs(matrix).sum(axis=1) == 0).sum())
    assert zero_rows == 0, f"{zero_rows} of {matrix.shape[0]} rows were never initialised: run scripts/setup.sh"


def test_current_points_at_the_newest_model_and_nothing_half_written_is_left(
    tmp_path: Path, corpus: tuple[Labelled, Labelled]
) -> None:
    config = small_config(tmp_path, epochs=1)
    texts = corpus[0].texts[:200]
    first = train_text_model(texts, config)
    second = train_text_model(texts[::-1], config)
    out = config.model_dir
    assert (out / CURRENT).read_text().strip() == second.name != first.name
    assert sorted(p.name for p in out.iterdir()) == sorted([CURRENT, first.name, second.name])
    assert TextEmbedder(config).load().version == second.name


def test_unseen_word_gets_a_vector_from_its_character_ngrams(embedder: TextEmbedder) -> None:
    assert "tshirtt" not in embedder._index and "tshirt" in embedder._index
    typo, word, other = embedder.embed_average(["tshirtt", "tshirt", "lipstick"])
    assert typo @ word > 0.8 and typo @ word > typo @ other


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  \n\t  ",
        "😀👍🎉",
        "<p><br/></p>",
        "\x00\x01\x02",
        "\ud800\udfff",
        "ꙮꙮꙮ ꙮꙮ",  # no character n-gram of it was ever seen: no word at all
    ],
)
def test_text_without_a_known_word_is_the_zero_vector(embedder: TextEmbedder, text: str) -> None:
    for embed in (embedder.embed, embedder.embed_full, embedder.embed_average):
        x = embed([text, "blue cotton shirt"])
        assert np.isfinite(x).all()
        assert not x[0].any() and np.linalg.norm(x[1]) == pytest.approx(1.0, rel=1e-5)


def test_bad_input_never_sinks_the_batch(embedder: TextEmbedder) -> None:
    huge = "cotton shirt blue black " * 42_000  # a 1 MB description
    texts = [huge, "<b>Blue</b> &amp; shirt\x07\ud800 😀", "ＢＬＵＥ　ｓｈｉｒｔ", "blue shirt"]
    x = embedder.embed(texts)
    assert x.shape == (4, embedder.dim) and np.isfinite(x).all()
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(x[1], x[3], atol=1e-6)  # markup, entities, junk and emoji change nothing
    cut = embedder.config.max_chars
    np.testing.assert_array_equal(x[0], embedder.embed([huge[:cut]])[0])
    with pytest.raises(TextInputError, match="item 1 is NoneType"):
        embedder.embed(["shirt", None])  # type: ignore[list-item]


def test_missing_model_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(TextModelMissingError, match="niteru train-text"):
        TextEmbedder(TextConfig(tmp_path)).load()


def test_incompatible_artifact_is_refused(trained: tuple[TextConfig, Path], tmp_path: Path) -> None:
    copy = tmp_path / "old"
    shutil.copytree(trained[1], copy)
    meta = json.loads((copy / "meta.json").read_text())
    meta["format_version"] = 0
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(TextModelIncompatibleError, match="format version 0"):
        TextEmbedder(trained[0], model_dir=copy).load()


def test_training_on_texts_without_words_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TextTrainingError, match="at least 2 texts with words"):
        train_text_model(["", "  ", "😀", "<br>"], small_config(tmp_path))


def test_subwords_are_fasttexts_own(trained: tuple[TextConfig, Path]) -> None:
    """The n-grams serving enumerates are those fastText computes, for ASCII, Japanese, mixed and short words."""
    import fasttext

    from embedding.text.model import subwords

    ft = fasttext.load_model(str(trained[1] / "fasttext.bin"))
    config = trained[0]
    for word in ("tshirtt", "ab", "x", "ワンピース", "黒いtシャツ", "über-größe", "🙂🙂", "a" * 40):
        grams = ft.get_subwords(word)[0]
        in_vocabulary = ft.get_word_id(word) >= 0  # then fastText lists the word itself first
        assert subwords(word, config.minn, config.maxn) == (grams[1:] if in_vocabulary else grams), word


def test_a_model_without_kept_ngram_rows_gives_the_same_vectors(
    trained: tuple[TextConfig, Path], embedder: TextEmbedder, corpus: tuple[Labelled, Labelled], tmp_path: Path
) -> None:
    """Models written before the n-gram rows were kept take them from their fastText file, once."""
    old = tmp_path / "old"
    shutil.copytree(trained[1], old)
    with np.load(old / "scdv.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "ngram_vectors"}
    assert len(arrays) == len(np.load(trained[1] / "scdv.npz").files) - 1
    np.savez(old / "scdv.npz", allow_pickle=False, **arrays)
    again = TextEmbedder(trained[0], model_dir=old).load()
    texts = [*corpus[1].texts[:20], "tshirtt ワンピースx", "unheardofword"]
    np.testing.assert_allclose(again.embed(texts), embedder.embed(texts), rtol=0, atol=1e-6)
    (old / "fasttext.bin").unlink()
    with pytest.raises(TextModelMissingError):
        TextEmbedder(trained[0], model_dir=old).load()


def test_serving_text_vectors_does_not_load_fasttext(trained: tuple[TextConfig, Path]) -> None:
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path; from embedding.text import TextEmbedder, TextConfig\n"
        "e = TextEmbedder(TextConfig(Path(sys.argv[1]))).load(); e.embed(['tshirtt unheardof', 'a red dress'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fasttext', 'scipy', 'sklearn')))\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script, str(trained[1])],
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "[]", done.stdout

"""The fit's BM25 scorer (``niteru.lexical.TitleScores``) against the engine: the same scores as an Edge shard
of the same document vectors, on real catalog titles and hand-written Japanese ones."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from niteru.catalog import read_catalog
from niteru.lexical import AVG_TITLE_TOKENS, Bm25Index, TitleScores, document, query

# Titles whose lexical vector is empty (stopwords, numbers): the engine leaves them out of N.
EMPTY = ["the and of", "123 456", "の を に"]
JAPANESE = [
    "ナイキ ランニングシューズ ブルー",
    "黒いスニーカー赤色のTシャツ",
    "無印良品ステンレス保温マグカップ",
    "ユニクロ ダウンジャケット ブラック",
    "アディダス ランニングシューズ ホワイト",
    "ステンレス マグカップ 350ml",
]


def engine_scores(titles: list[str], texts: list[str]) -> list[dict[int, float]]:
    """Each text's score for every stored title it matches, from a real Edge shard of ``document`` vectors."""
    with Bm25Index(titles, avg_len=AVG_TITLE_TOKENS) as index:
        return [dict(index.search(t, len(titles))) for t in texts]


def assert_same(titles: list[str], texts: list[str]) -> int:
    """Our score of each text for each title equals the engine's to 1e-4 relative; returns the matches seen."""
    ours = TitleScores(titles).scores(texts, np.tile(np.arange(len(titles)), (len(texts), 1)))
    seen = 0
    for i, engine in enumerate(engine_scores(titles, texts)):
        assert set(np.flatnonzero(ours[i] > 0).tolist()) == set(engine), texts[i]
        for row, score in engine.items():
            assert ours[i, row] == pytest.approx(score, rel=1e-4), (texts[i], titles[row])
        seen += len(engine)
    return seen


def test_the_scores_are_the_engines_on_hand_written_titles() -> None:
    titles = ["red running shoes", "blue running shoes", "red dress women", "black leather wallet men", *EMPTY]
    titles += JAPANESE
    texts = ["red shoes", "men wallet", "running women red", "ランニングシューズ", "マグカップ ステンレス", "the"]
    assert assert_same(titles, texts) > 8


def test_n_counts_only_the_titles_with_a_lexical_vector() -> None:
    titles = ["blue shirt", "blue jeans", "red shirt", *EMPTY]
    scores = TitleScores(titles)
    assert scores.documents == 3
    # "red": in one of the three non-empty titles; its document value times Qdrant's IDF with N = 3.
    tokens, values = document("red shirt")
    (token,) = query("red")[0]
    expected = values[tokens.index(token)] * math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    assert scores.scores(["red"], np.array([[2, 0, 3]]))[0] == pytest.approx([expected, 0.0, 0.0])
    assert engine_scores(titles, ["red"])[0] == pytest.approx({2: expected}, rel=1e-4)


def test_missing_candidates_and_unknown_words_score_zero() -> None:
    scores = TitleScores(["blue shirt", "red shirt"])
    out = scores.scores(["blue", "green hat", ""], np.array([[0, -1], [0, 1], [1, 0]]))
    assert out[0, 0] > 0 and out[0, 1] == 0.0
    assert not out[1:].any()
    assert scores.scores([], np.zeros((0, 3), np.int64)).shape == (0, 3)


@pytest.mark.catalog
def test_the_scores_are_the_engines_on_catalog_titles(catalog_dir: Path) -> None:
    rows = read_catalog(catalog_dir)
    titles = [r.title for r in rows[:: max(1, len(rows) // 400)]][:400] + JAPANESE + EMPTY
    # stored titles as queries (a product's similar query) and their words reversed (a re-written variant)
    texts = titles[::7] + [" ".join(reversed(t.split())) for t in titles[3::11]]
    assert assert_same(titles, texts) > 1000

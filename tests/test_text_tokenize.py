"""Normalisation and tokenisation: Japanese by MeCab/UniDic, Latin by the word regex, mixed titles, junk."""

from __future__ import annotations

import pytest

from embedding.text import normalize, tokenize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # dictionary forms (買い -> 買う), particles and auxiliaries dropped
        ("東京都で新しい靴を買いました。", ["東京", "都", "新しい", "靴", "買う"]),
        ("彼女は赤いバッグを持っていた", ["彼女", "赤い", "バッグ", "持つ", "いる"]),
    ],
)
def test_japanese_sentence_is_split_into_dictionary_words(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_mixed_japanese_english_title() -> None:
    assert tokenize("ナイキのスニーカー Air Max 90") == ["ナイキ", "スニーカー", "air", "max", "90"]
    assert tokenize("iPhoneケース") == ["iphone", "ケース"]


def test_letter_glued_to_katakana_stays_in_the_word() -> None:
    assert tokenize("白いTシャツとVネック") == ["白い", "tシャツ", "vネック"]


def test_nfkc_folds_full_width_and_half_width_forms() -> None:
    assert tokenize("ＴシャツＸＬ　ﾒﾝｽﾞ") == ["tシャツ", "xl", "メンズ"]
    assert normalize("ＡＢＣ１２３") == "abc123"


def test_english_words_keep_inner_punctuation_and_drop_stop_words() -> None:
    assert tokenize("The Men's 2.5 cm T-Shirt, Blue/Red") == ["men's", "2.5", "cm", "t-shirt", "blue", "red"]
    assert tokenize("the shirt", keep_stop_words=True) == ["the", "shirt"]


def test_markup_urls_and_boilerplate_are_removed() -> None:
    text = (
        "<div class='x'><p>Red <b>cotton</b> shirt</p><script>var tracking = 1;</script>"
        "&amp; details at https://shop.example.com/a?b=c or mail@shop.example.com "
        "Price: Rs. 899 Free Shipping 送料無料</div>"
    )
    assert tokenize(text) == ["red", "cotton", "shirt", "details"]


def test_escaped_markup_is_text_not_tags() -> None:
    assert tokenize("&lt;b&gt;bold&lt;/b&gt;") == ["b", "bold", "b"]


def test_junk_characters_do_not_break_words() -> None:
    text = "blue\x00\x07shirt \ud800lone surrogate\udfff 😀👍 zero\u200bwidth \ufeffbom"
    assert tokenize(text) == ["blue", "shirt", "lone", "surrogate", "zero", "width", "bom"]


@pytest.mark.parametrize("text", ["", "   \n\t ", "😀👍🎉", "<br/><hr>", "!!! ... ---", "\x00\x01\x02"])
def test_texts_without_words_give_no_tokens(text: str) -> None:
    assert tokenize(text) == []


def test_long_text_is_cut_before_tokenising() -> None:
    text = "shirt " * 200_000  # 1.2 MB
    assert len(tokenize(text, max_chars=600)) == 100
    assert len(tokenize(text)) == 200_000

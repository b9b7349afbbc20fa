"""Normalisation and tokenisation of product text, Japanese, English and mixed.

``normalize(text)`` cleans: invalid surrogates and control characters out, HTML tags and entities out,
URLs and e-mail addresses out, shop boilerplate ("Price: Rs. 899", "送料無料", ...) out, Unicode NFKC
(full-width ASCII becomes ASCII, half-width katakana becomes full-width), Latin lower-cased.

``tokenize(text)`` splits the cleaned text into runs of Japanese script and everything else. Japanese
runs go through MeCab (fugashi) with the UniDic dictionary (unidic-lite); words are reduced to their
dictionary form (買い -> 買う) and particles, auxiliary verbs and symbols are dropped. Other runs are
split by a word regex (letters/digits, with inner ' - . kept: "t-shirt", "don't", "2.5"), and English
stop words are dropped. A lone Latin letter glued to katakana stays in the word (Tシャツ -> tシャツ).
So "ナイキのスニーカー Air Max 90" -> ナイキ, スニーカー, air, max, 90.

Why fugashi + unidic-lite rather than SudachiPy: both install from PyPI; fugashi is already in the
environment, is a thin Cython binding to MeCab (a small share of a query's time budget), and
unidic-lite is a fixed dictionary (its version is recorded in every text model) whose UniDic short units
match what a shopper types.
SudachiPy's strength is its multi-granularity and normalisation of spelling variants, but its core
dictionary is larger and its tokenizer slower per call; the spelling variants it unifies are partly
covered here by NFKC and fastText's character n-grams. Latin text does not go through MeCab because
MeCab splits English product words unpredictably ("t-shirt" -> t, -, shirt).
"""

from __future__ import annotations

import html
import re
import threading
import unicodedata
from typing import Any

# Bumped whenever the tokens for a text could change: models record it and refuse a mismatch.
TOKENIZER_VERSION = "1"

_SURROGATES = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
_SCRIPT_STYLE = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^<>]{0,2000}>")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
# Shop boilerplate seen in catalogs (Flipkart-style and Japanese shops): it says nothing about the product.
_BOILERPLATE = re.compile(
    r"key features of|specifications of|price:\s*rs\.?\s*[\d,.]+|rs\.\s*[\d,.]+|"
    r"buy .{1,80}? (?:for|at) rs\.?\s*[\d,.]+ online|only genuine products|free shipping|cash on delivery!?|"
    r"\d+ days? replacement guarantee|送料無料|送料込み?|税込み?|税抜き?|ポイント\d+倍",
    re.IGNORECASE,
)
# Hiragana, katakana (with ー), CJK ideographs (+ extension A and compatibility), 々 〆 ヵ ヶ.
_JA_RUN = re.compile("[\u3041-\u309f\u30a0-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3005\u3006]+")
_WORD = re.compile(r"[^\W_]+(?:['\-.][^\W_]+)*")
# A lone Latin letter glued to a katakana word is part of it: Tシャツ, Yシャツ, Vネック, Gパン.
_LETTER_BEFORE_KANA = re.compile(r"(?:^|[^\w])([a-z])$")
_KATAKANA_START = re.compile("[\u30a1-\u30fa]")
# UniDic part-of-speech (pos1) that carry no topic: particles, auxiliaries, symbols, blanks.
_JA_DROP_POS = frozenset({"助詞", "助動詞", "補助記号", "記号", "空白"})

_STOP_WORDS = """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself yourselves
    s t d ll m re ve don't it's i'm"""
ENGLISH_STOP_WORDS = frozenset(_STOP_WORDS.split())

_local = threading.local()  # MeCab taggers are not thread-safe: one per thread


def _tagger() -> Any:
    tagger = getattr(_local, "tagger", None)
    if tagger is None:
        import fugashi  # imported here: no dictionary is loaded at import time

        tagger = fugashi.Tagger()
        _local.tagger = tagger
    return tagger


def dictionary_version() -> str:
    """The Japanese dictionary in use (recorded in model artifacts: another dictionary, other tokens)."""
    from importlib.metadata import version

    return f"unidic-lite {version('unidic-lite')}"


def normalize(text: str, max_chars: int | None = None) -> str:
    """Clean one text (see the module docstring); ``max_chars`` cuts very long texts first."""
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars]
    text = _SURROGATES.sub(" ", text)
    text = _SCRIPT_STYLE.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = html.unescape(text)  # after tags: "&lt;b&gt;" is text someone meant to show
    text = _SURROGATES.sub(" ", text)  # html.unescape can produce them from "&#xd800;"
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub(" ", text)  # after NFKC, which can map other characters onto controls
    text = _URL.sub(" ", text)
    text = _EMAIL.sub(" ", text)
    text = text.lower()  # Japanese has no case, so this only folds Latin (and Greek, Cyrillic)
    text = _BOILERPLATE.sub(" ", text)
    return text


def _japanese_words(run: str) -> list[str]:
    words: list[str] = []
    for word in _tagger()(run):
        # The raw UniDic CSV, not ``word.feature``: building that 29-field tuple costs twice the tagging.
        # Field 0 is pos1; field 10 is orthBase, the dictionary form in its usual spelling (買い -> 買う),
        # absent for unknown words. Quoted fields (with commas) occur only after field 10.
        fields = word.feature_raw.split(",")
        if fields[0] in _JA_DROP_POS:
            continue
        base = fields[10] if len(fields) > 10 else ""
        words.append(base if base and base != "*" else word.surface)
    return words


def _latin_words(chunk: str, keep_stop_words: bool) -> list[str]:
    words = _WORD.findall(chunk)
    if keep_stop_words:
        return words
    return [w for w in words if w not in ENGLISH_STOP_WORDS]


def tokenize_normalized(text: str, keep_stop_words: bool = False) -> list[str]:
    """Tokens of an already normalised text."""
    tokens: list[str] = []
    pos = 0
    for match in _JA_RUN.finditer(text):
        latin = text[pos : match.start()]
        glued = _LETTER_BEFORE_KANA.search(latin)
        prefix = ""
        if glued and _KATAKANA_START.match(match.group()):
            prefix, latin = glued.group(1), latin[: glued.start(1)]
        tokens.extend(_latin_words(latin, keep_stop_words))
        words = _japanese_words(match.group())
        if prefix and words:
            words[0] = prefix + words[0]
        tokens.extend(words)
        pos = match.end()
    if pos < len(text):
        tokens.extend(_latin_words(text[pos:], keep_stop_words))
    return tokens


def tokenize(text: str, max_chars: int | None = None, keep_stop_words: bool = False) -> list[str]:
    """Normalise and split one text into words; an empty list when nothing word-like is left."""
    return tokenize_normalized(normalize(text, max_chars), keep_stop_words)

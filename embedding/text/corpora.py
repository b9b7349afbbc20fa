"""Readers for the labelled text corpora of the quality benchmark and the tests (read-only, in place).

20 Newsgroups is read straight out of ``20news-bydate.tar.gz`` with ``tarfile`` (nothing extracted,
nothing downloaded); livedoor news from ``livedoor.tsv``. Both in one folder (the service's ``text_data_dir`` setting).
"""

from __future__ import annotations

import csv
import random
import sys
import tarfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

NEWSGROUPS_FILE = "20news-bydate.tar.gz"
LIVEDOOR_FILE = "livedoor.tsv"


@dataclass(frozen=True)
class Labelled:
    texts: list[str]
    labels: list[str]


def read_20newsgroups(
    data_dir: Path, subset: str, categories: set[str] | None = None, per_category: int | None = None
) -> Labelled:
    """The ``train`` or ``test`` split, in archive order, decoded as Latin-1 (as scikit-learn does)."""
    path = data_dir / NEWSGROUPS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (set NITERU_TEXT_DATA_DIR)")
    prefix = f"20news-bydate-{subset}/"
    taken: dict[str, int] = defaultdict(int)
    texts: list[str] = []
    labels: list[str] = []
    with tarfile.open(path) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not member.isfile() or not member.name.startswith(prefix):
                continue
            group = member.name[len(prefix) :].split("/")[0]
            if categories is not None and group not in categories:
                continue
            if per_category is not None and taken[group] >= per_category:
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            texts.append(f.read().decode("latin-1"))
            labels.append(group)
            taken[group] += 1
    return Labelled(texts, labels)


def read_livedoor(data_dir: Path, per_category: int | None = None) -> Labelled:
    """Every article as title + body, labelled by category, in file order."""
    path = data_dir / LIVEDOOR_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (set NITERU_TEXT_DATA_DIR)")
    csv.field_size_limit(sys.maxsize)
    taken: dict[str, int] = defaultdict(int)
    texts: list[str] = []
    labels: list[str] = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if per_category is not None and taken[row["category"]] >= per_category:
                continue
            texts.append(f"{row['title']}\n{row['body']}")
            labels.append(row["category"])
            taken[row["category"]] += 1
    return Labelled(texts, labels)


def split(data: Labelled, test_fraction: float, seed: int) -> tuple[Labelled, Labelled]:
    """A fixed shuffled split (the same for the same seed and data)."""
    order = list(range(len(data.texts)))
    random.Random(seed).shuffle(order)
    cut = round(len(order) * (1 - test_fraction))
    pick = [order[:cut], order[cut:]]
    a, b = ([data.texts[i] for i in p] for p in pick), ([data.labels[i] for i in p] for p in pick)
    train_texts, test_texts = a
    train_labels, test_labels = b
    return Labelled(train_texts, train_labels), Labelled(test_texts, test_labels)

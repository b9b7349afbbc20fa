"""What "looks alike" means beyond the label: colour and brand words of a title, and re-listed variants.

A measure that only counts the subcategory rewards a model that learns the subcategory and forgets the
look (issue #17: a learned projection gained precision and lost the query's colour). These helpers feed
the look-alike measures of ``niteru.evaluation``:

- ``colours``: the colours a title names, from a fixed English + Japanese word list mapped to one name
  per colour (grey = gray = グレー = 灰);
- ``brand_of``: the product's brand when it is known: the catalog has no brand column, its ``shop_id`` is
  the brand (Myntra: the title's first word; Flipkart: the brand, or "unknown"; grocery: one shop), so the
  shop id counts as the brand only when the title names it;
- ``variant_image`` / ``variant_fields``: the same product re-listed by another shop: a re-shot photo
  (crop, flip, small rotation, brightness; PIL only, deterministic per product and seed) and a re-written
  title (brand dropped, words shuffled).
"""

from __future__ import annotations

import hashlib
import io
import re

import numpy as np

from niteru.products import ProductFields

# Colour words -> one name per colour. English words match whole words; Japanese ones match anywhere in the
# title (Japanese titles have no spaces). Words that are mostly something else in catalogs ("rose", "wine",
# "peach") are left out: a measure of look must not count a perfume's name as its colour.
ENGLISH_COLOURS: dict[str, str] = {
    **{w: w for w in ("black", "white", "red", "blue", "green", "yellow", "pink", "purple", "orange", "brown")},
    **{w: w for w in ("beige", "maroon", "navy", "silver", "gold", "cream", "olive", "khaki", "teal", "magenta")},
    **{w: w for w in ("turquoise", "lavender", "mustard", "burgundy", "violet", "charcoal", "tan", "copper")},
    "grey": "grey",
    "gray": "grey",
    "golden": "gold",
    "multicolour": "multi",
    "multicolor": "multi",
    "multi": "multi",
}
JAPANESE_COLOURS: dict[str, str] = {
    "ブラック": "black",
    "黒": "black",
    "ホワイト": "white",
    "白": "white",
    "レッド": "red",
    "赤": "red",
    "ブルー": "blue",
    "青": "blue",
    "グリーン": "green",
    "緑": "green",
    "イエロー": "yellow",
    "黄": "yellow",
    "ピンク": "pink",
    "パープル": "purple",
    "紫": "purple",
    "オレンジ": "orange",
    "ブラウン": "brown",
    "茶": "brown",
    "グレー": "grey",
    "グレイ": "grey",
    "灰": "grey",
    "ネイビー": "navy",
    "紺": "navy",
    "ベージュ": "beige",
    "シルバー": "silver",
    "銀": "silver",
    "ゴールド": "gold",
    "金色": "gold",
    "カーキ": "khaki",
}
_WORD = re.compile(r"[a-z]+")


def colours(title: str) -> frozenset[str]:
    """The colours ``title`` names (empty when it names none)."""
    lowered = title.lower()
    found = {ENGLISH_COLOURS[w] for w in _WORD.findall(lowered) if w in ENGLISH_COLOURS}
    found.update(name for word, name in JAPANESE_COLOURS.items() if word in title)
    return frozenset(found)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def brand_of(shop_id: str, title: str) -> str | None:
    """The brand, when known: the shop id, lower-cased, if the title names it as whole words."""
    brand = _words(shop_id)
    if not brand:
        return None
    words = _words(title)
    n = len(brand)
    named = any(words[i : i + n] == brand for i in range(len(words) - n + 1))
    return " ".join(brand) if named else None


def _rng(product_id: str, seed: int) -> np.random.Generator:
    """One generator per product and seed: the same variant on every run, whatever the order."""
    digest = hashlib.sha256(f"{seed}\0{product_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def variant_fields(product_id: str, fields: ProductFields, seed: int) -> ProductFields:
    """The product as another shop would list it: its brand dropped from the title (when known), the
    title's words shuffled, another shop id. Category, subcategory, description and price stay: a shop
    re-listing a product copies those."""
    rng = _rng(product_id, seed)
    words = fields.title.split()
    brand = brand_of(fields.shop_id, fields.title)
    if brand is not None:
        n = len(brand.split())
        lowered = [w.lower() for w in words]
        for i in range(len(words) - n + 1):
            if [re.sub(r"\W", "", w) for w in lowered[i : i + n]] == brand.split():
                kept = words[:i] + words[i + n :]
                words = kept or words  # a title that is only the brand keeps it
                break
    order = rng.permutation(len(words))
    if len(words) > 1 and list(order) == list(range(len(words))):
        order = np.roll(order, 1)  # a shuffle that left every word in place is no re-write
    shop = "relist-" + hashlib.sha256(f"{seed}\0{product_id}".encode()).hexdigest()[:8]
    return fields.model_copy(update={"title": " ".join(words[i] for i in order), "shop_id": shop})


def variant_image(product_id: str, image: bytes, seed: int) -> bytes:
    """A re-shot photo: a crop keeping 80-95 % of each side, a horizontal flip half of the time, a rotation
    of 2-8 degrees either way (the corners filled with the photo's border colour, as on a studio
    background), brightness times 0.85-1.15; JPEG, quality 90. Raises ``OSError`` when PIL cannot read
    the image."""
    from PIL import Image, ImageEnhance, ImageOps

    rng = _rng(product_id, seed)
    with Image.open(io.BytesIO(image)) as opened:
        photo = ImageOps.exif_transpose(opened).convert("RGB")
    w, h = photo.size
    keep_w, keep_h = rng.uniform(0.80, 0.95, size=2)
    cw, ch = max(1, round(w * keep_w)), max(1, round(h * keep_h))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    photo = photo.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        photo = ImageOps.mirror(photo)
    pixels = np.asarray(photo)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]).mean(axis=0)
    angle = float(rng.uniform(2.0, 8.0)) * (1 if rng.random() < 0.5 else -1)
    fill = (int(border[0]), int(border[1]), int(border[2]))
    photo = photo.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=fill)
    photo = ImageEnhance.Brightness(photo).enhance(float(rng.uniform(0.85, 1.15)))
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=90)
    return out.getvalue()

"""SearchFilter to a Qdrant filter (the only place the two meet besides the store itself)."""

from __future__ import annotations

from qdrant_client import models

from niteru.products import point_id
from niteru.store.base import SearchFilter


def to_filter(f: SearchFilter | None) -> models.Filter | None:
    if f is None:
        return None
    must: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value))
        for key, value in (("category", f.category), ("subcategory", f.subcategory), ("shop_id", f.shop_id))
        if value is not None
    ]
    must_not: list[models.Condition] = []
    if f.exclude_shop_id is not None:
        must_not.append(models.FieldCondition(key="shop_id", match=models.MatchValue(value=f.exclude_shop_id)))
    if f.exclude_product_ids:
        must_not.append(models.HasIdCondition(has_id=[point_id(p) for p in f.exclude_product_ids]))
    if not must and not must_not:
        return None
    return models.Filter(must=must or None, must_not=must_not or None)

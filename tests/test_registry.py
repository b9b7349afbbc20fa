"""The task registry's argument models and the refusal type, without models or a store (fast)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobs import registry
from niteru.products import ProductFields
from niteru.refusals import Refusal, from_embedding, from_fields
from niteru.settings import Settings
from niteru.write_inputs import ImageSource, check_fields

SETTINGS = Settings(jobs_image_batch_max=2)
ITEM = {"product_id": "p1", "image": "images/a.jpg"}


@pytest.mark.parametrize("bad", [{"image_version": "3"}, {"image_version": True}, {"colour": "red"}, {"image": None}])
def test_arguments_are_strict(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        registry.parse(registry.IMAGE, ITEM | bad, SETTINGS)
    assert registry.parse(registry.IMAGE, ITEM | {"image_version": 3}, SETTINGS).model_dump(exclude_unset=True) == (
        ITEM | {"image_version": 3}
    )


def test_unknown_tasks_and_the_batch_limit() -> None:
    with pytest.raises(registry.UnknownTaskError, match=r"known: niteru\.products\.upsert"):
        registry.parse("niteru.nope", {}, SETTINGS)
    with pytest.raises(ValidationError, match="at most 2 items"):
        registry.parse(registry.IMAGES, {"items": [ITEM] * 3}, SETTINGS)
    with pytest.raises(ValidationError):  # checked as a whole before queueing: one bad item is a 422
        registry.parse(registry.IMAGES, {"items": [ITEM, ITEM | {"image_version": "3"}]}, SETTINGS)


def test_a_running_batch_checks_item_by_item() -> None:
    raw = {"items": [ITEM, {"product_id": "p2", "image_version": "3"}, "nonsense"]}
    args = registry.ImagesArgs.model_validate(raw, context={"per_item": True})
    assert isinstance(args.items[0], registry.ImageArgs)
    assert [type(i).__name__ for i in args.items[1:]] == ["BadItem", "BadItem"]
    assert isinstance(args.items[1], registry.BadItem) and args.items[1].product_id == "p2"


def test_beat_and_the_celery_wrappers_use_the_registry_names() -> None:
    from jobs.schedule import beat_schedule

    entry = beat_schedule(Settings(rebuild_cron="30 3 * * *"))["niteru-daily-rebuild"]
    assert entry["task"] == registry.REBUILD
    assert set(registry.NAMES) == {
        "niteru.products.upsert",
        "niteru.images.registered",
        "niteru.images.registered_many",
        "niteru.products.delete",
        "niteru.collection.rebuild",
    }


def test_refusals_carry_reason_status_and_transience() -> None:
    from embedding.image.errors import CorruptImageError, NotAnImageError

    assert from_embedding(NotAnImageError("text")).status == 415
    corrupt = from_embedding(CorruptImageError("truncated"), "p1")
    assert (corrupt.reason, corrupt.status, corrupt.transient, corrupt.product_id) == ("corrupt", 422, False, "p1")
    assert corrupt.detail == "refused (corrupt): truncated"
    assert Refusal("too_large", "big").status == 413 and Refusal("stale", "old").status == 409
    with pytest.raises(ValidationError) as caught:
        ProductFields.model_validate({"shop_id": "s", "title": " "})
    assert from_fields(caught.value).reason == "empty_title"


def test_fields_and_image_sources() -> None:
    with pytest.raises(Refusal) as caught:
        check_fields("p1", {"shop_id": "s", "title": "t", "price": "cheap"})
    assert caught.value.reason == "invalid_price"
    with pytest.raises(Refusal) as caught:
        check_fields("bad\nid", {"shop_id": "s", "title": "t"})
    assert caught.value.reason == "invalid_product_id"
    assert ImageSource.of_ref("https://x.example/a.jpg").kind == "url"
    assert ImageSource.of_ref("file:///etc/passwd").kind == "url"  # refused by the fetcher, never read
    assert ImageSource.of_ref("images/a.jpg").kind == "path"
    assert ImageSource.given(b"abc").ref.startswith("upload:")


def test_every_version_has_the_one_bound() -> None:
    from niteru.products import MAX_VERSION

    for name, kwargs in (
        (registry.IMAGE, ITEM | {"image_version": MAX_VERSION + 1}),
        (registry.UPSERT, {"product_id": "p1", "fields": {}, "image": "a.jpg", "image_version": MAX_VERSION + 1}),
        (registry.IMAGES, {"items": [ITEM | {"image_version": -1}]}),
        (registry.DELETE, {"product_id": "p1", "version": MAX_VERSION + 1}),
    ):
        with pytest.raises(ValidationError, match=r"less than or equal|greater than or equal"):
            registry.parse(name, kwargs, SETTINGS)
    assert registry.parse(registry.DELETE, {"product_id": "p1", "version": MAX_VERSION}, SETTINGS)


def test_stamp_fills_missing_versions_only() -> None:
    assert registry.stamp(registry.IMAGE, ITEM, 7) == ITEM | {"image_version": 7}
    assert registry.stamp(registry.IMAGE, ITEM | {"image_version": 3}, 7)["image_version"] == 3
    upsert = {"product_id": "p1", "fields": {}}
    assert registry.stamp(registry.UPSERT, upsert, 7) == upsert  # no image, no image version
    assert registry.stamp(registry.UPSERT, upsert | {"image": "a.jpg"}, 7)["image_version"] == 7
    batch = registry.stamp(registry.IMAGES, {"items": [ITEM, ITEM | {"image_version": 3}]}, 7)
    assert [i["image_version"] for i in batch["items"]] == [7, 3]
    assert registry.stamp(registry.DELETE, {"product_id": "p1"}, 7) == {"product_id": "p1", "version": 7}
    assert registry.stamp(registry.REBUILD, {}, 7) == {}
    stamped = registry.stamp(registry.IMAGE, ITEM)["image_version"]  # default: now, in microseconds
    assert registry.parse(registry.IMAGE, ITEM | {"image_version": stamped}, SETTINGS)


def test_the_visibility_timeout_exceeds_the_longest_task() -> None:
    assert Settings(rebuild_lock_timeout=3600).visibility_timeout > 3600
    assert Settings(rebuild_lock_timeout=60, celery_visibility_timeout=61).visibility_timeout == 61
    with pytest.raises(ValidationError, match="must exceed rebuild_lock_timeout"):
        Settings(celery_visibility_timeout=3600)  # the default lock lives 4 h

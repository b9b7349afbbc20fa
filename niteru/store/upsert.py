"""The conditional upsert both engines run: never replace a stored image_version by an older one."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from niteru.store.records import ProductPoint, UpsertOutcome

# Rounds of rewriting items a concurrent write overtook: each round is one conditional write per item, and
# only a writer storing a yet newer version in between can cause another round.
RETRIES = 3


def newest_per_product(points: Sequence[ProductPoint]) -> dict[str, ProductPoint]:
    """A product twice in one batch: its newest image wins (the later one on a tie)."""
    latest: dict[str, ProductPoint] = {}
    for p in points:
        seen = latest.get(p.product.product_id)
        if seen is None or p.product.image_version >= seen.product.image_version:
            latest[p.product.product_id] = p
    return latest


def conditional_upsert(
    latest: Mapping[str, ProductPoint],
    stored_versions: Callable[[list[str]], dict[str, int]],
    write: Callable[[Sequence[ProductPoint], int], None],
) -> UpsertOutcome:
    """The write both engines do: never replace a stored image_version by an older one.

    ``write(points, floor)`` upserts, replacing a stored point only while its image_version <= floor (a
    condition the engine checks itself, so a concurrent newer write wins). One call for the common case at
    the batch's lowest version; products whose stored version lies between that and their own get a call
    each, with their own version as the condition. Read back: another writer may have won a race.
    """
    before = stored_versions(list(latest))
    fresh = [p for pid, p in latest.items() if before.get(pid, -1) <= p.product.image_version]
    if fresh:
        floor = min(p.product.image_version for p in fresh)
        bulk = [p for p in fresh if before.get(p.product.product_id, -1) <= floor]
        if bulk:
            write(bulk, floor)
        for p in fresh:
            if before.get(p.product.product_id, -1) > floor:
                write([p], p.product.image_version)
    after = stored_versions(list(latest))
    # The bulk condition is the batch's lowest version: a concurrent write of a version between that and
    # an item's own made the engine refuse the item although it is newer. Such items are written again,
    # each with its own version as the condition, until the read-back holds them or something newer.
    for _ in range(RETRIES):
        behind = [p for pid, p in latest.items() if after.get(pid, -1) < p.product.image_version]
        if not behind:
            break
        for p in behind:
            write([p], p.product.image_version)
        after = stored_versions(list(latest))
    outcome = UpsertOutcome()
    for pid, p in latest.items():
        (outcome.written if after.get(pid) == p.product.image_version else outcome.stale).append(pid)
    return outcome

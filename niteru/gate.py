"""The rebuild's gate: swap only when the new collection is not worse than the live one.

Between its build and its swap the rebuild (``niteru.rebuild``) measures both collections on the same
fixed sample (``niteru.evaluation``: precision@10, variant recall@1 and @10, colour and brand consistency,
routed as users get them, ``mode=auto``). Each collection is queried with its own text model: the live one
with the current model, the new one with the model the rebuild trained. The swap is refused when one of
``GATED`` falls by more than ``rebuild_gate_tolerance`` (absolute) and the fall is more than the noise
of the sample (``gate_stats``: a paired bootstrap puts it above zero with 95 % confidence); ``force``
swaps anyway (the report says so).

The report (``report_path``: one JSON file in the data folder, replaced atomically) keeps both sets of
figures; ``niteru rebuild`` prints it and ``/metrics`` exposes the figures of the collection that serves.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from niteru.embedders import Embedders
from niteru.evaluation import (
    QueryOutcome,
    embed_variants,
    evaluate,
    fixed_sample,
    make_variants,
    measures,
    reembed_variants,
    summarise,
)
from niteru.gate_stats import fall_lower_bound
from niteru.route_table import load_route_table
from niteru.routing import Mode
from niteru.settings import Settings
from niteru.store import ProductStore

if TYPE_CHECKING:
    from embedding.image import MobileNetEmbedder
    from embedding.joint import JointEmbedder
    from embedding.text import TextEmbedder

log = logging.getLogger(__name__)
# The measures a swap must not lose (variant recall@10 is reported, and follows recall@1 closely).
GATED = ("p10", "variant_r1", "colour", "brand")
REPORT_FILE = "rebuild-gate.json"


@dataclass
class Verdict:
    swap: bool
    report: dict[str, Any]  # JSON-ready: what ``save_report`` keeps


def report_path(settings: Settings) -> Path:
    return settings.data_dir / "reports" / REPORT_FILE


def falls(
    live: Sequence[QueryOutcome], new: Sequence[QueryOutcome], tolerance: float, seed: int = 0
) -> tuple[dict[str, float], dict[str, float | None]]:
    """The gated measures that fall by more than ``tolerance`` from ``live`` to ``new`` beyond the sample's
    noise, and by how much; and every gated measure's bound (``gate_stats.fall_lower_bound``). A measure
    neither side could measure (no query named a colour...) cannot fall."""
    before_all, after_all = measures(live), measures(new)
    out, bounds = {}, {}
    for name in GATED:
        before, after = getattr(before_all, name), getattr(after_all, name)
        if before is None or after is None:
            continue
        bounds[name] = bound = fall_lower_bound(live, new, name, seed=seed)
        # Rounded first: a fall of exactly the tolerance (0.30 - 0.29 in floating point) is within it.
        if round(before - after, 9) > tolerance and bound is not None and bound > 0:
            out[name] = before - after
    return out, bounds


def gate(
    live: ProductStore,
    new: ProductStore,
    new_text: TextEmbedder,
    settings: Settings,
    *,
    force: bool = False,
    image: MobileNetEmbedder | None = None,
    live_text: TextEmbedder | None = None,
    new_joint: JointEmbedder | None = None,
) -> Verdict:
    """Measure ``live`` (the alias) and ``new`` (a pinned view of the built collection) and decide, each
    routed by the table fitted on its collection (none fitted: the default table) and
    with its own joint model (``new_joint``: trained for ``new``; the live one's is that of its text model).
    ``image`` and ``live_text`` default to the service's models (the current text model)."""
    from niteru.photos import read_photo

    if settings.rebuild_gate_sample == 0:  # no gate: swap unchecked, no report
        return Verdict(True, {})
    started = time.perf_counter()
    image = image or _image_model(settings)
    live_text = live_text or _current_text(settings)
    report: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "tolerance": settings.rebuild_gate_tolerance,
        "seed": settings.rebuild_gate_seed,
        "mode": Mode.auto.value,
    }
    if live_text is None:  # nothing to compare against (a store ingested without a text model kept)
        report.update(decision="unchecked", reason="no current text model to query the live collection with")
        return Verdict(True, report)
    in_new = {p.product.product_id for batch in new.scroll(batch_size=1024, with_vectors=False) for p in batch}
    products = (p.product for batch in live.scroll(batch_size=1024, with_vectors=False) for p in batch)
    sample = fixed_sample((p for p in products if p.product_id in in_new), settings.rebuild_gate_sample, report["seed"])
    variants = make_variants(sample, lambda ref: read_photo(ref, settings), settings.rebuild_gate_seed)
    if not variants:  # nothing measurable: say so rather than pass on empty figures
        where = f"catalog_dir {settings.catalog_dir} or a kept copy"
        reason = f"none of {len(sample)} sample products has a readable photo ({where})"
        report.update(decision="unchecked", reason=reason)
        log.warning("rebuild gate: %s", reason)
        return Verdict(True, report)
    sides = {"live": (live, live_text), "new": (new, new_text)}
    from niteru.joint import load_joint

    live_joint = load_joint(settings, live_text.version)  # None: the live collection has no joint vector
    embedded = embed_variants(variants, Embedders(image, live_text, live_joint))
    vectors = {"live": embedded, "new": reembed_variants(embedded, Embedders(image, new_text, new_joint))}
    # Each side routed by the table fitted on its collection (the rebuild saves the new one's before this).
    routes = {
        "live": load_route_table(settings, live.current_version()),
        "new": load_route_table(settings, new.collection),
    }
    outcomes = {
        side: evaluate(store, settings, variants, vectors[side], fitted=routes[side])
        for side, (store, _) in sides.items()
    }
    # The same queries on both sides: a product deleted or refused on one side only is left out of both.
    common = set.intersection(*({o.product_id for o in found} for found in outcomes.values()))
    summaries = {side: summarise([o for o in found if o.product_id in common]) for side, found in outcomes.items()}
    paired = {side: [o for o in found if o.product_id in common] for side, found in outcomes.items()}
    fell, bounds = falls(paired["live"], paired["new"], settings.rebuild_gate_tolerance, settings.rebuild_gate_seed)
    for side, (store, text) in sides.items():
        table = routes[side]
        report[side] = {
            "collection": store.collection,
            "text_model": text.version,
            "routing": table.version if table is not None else "default",
            "measures": {c: m.as_dict() for c, m in summaries[side].items()},
        }
    swap = force or not fell
    report.update(
        decision="forced" if fell and force else "swap" if swap else "refuse",
        sample=len(common),
        falls=fell,
        fall_lower_bounds=bounds,  # 95 % paired-bootstrap lower bound of each measure's fall
        seconds=round(time.perf_counter() - started, 1),
    )
    log.info(
        "rebuild gate: %s (%d products, falls %s, %.1f s)",
        report["decision"],
        len(common),
        fell or "none",
        report["seconds"],
    )
    return Verdict(swap, report)


def _image_model(settings: Settings) -> MobileNetEmbedder:
    from embedding.image import MobileNetEmbedder
    from niteru.model_config import image_config

    return MobileNetEmbedder(image_config(settings)).load()


def _current_text(settings: Settings) -> TextEmbedder | None:
    from embedding.text import TextEmbedder, TextModelMissingError
    from niteru.model_config import text_config

    try:
        return TextEmbedder(text_config(settings)).load()
    except TextModelMissingError:
        return None


def save_report(settings: Settings, report: dict[str, Any], serving: str) -> Path:
    """Keep the report, saying which side serves now (``live``: refused; ``new``: swapped)."""
    from embedding.text.artifact import replace_durably

    path = report_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    report.update(serving=serving, path=str(path))
    replace_durably(path, json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return path


def serving_figures(settings: Settings) -> dict[str, dict[str, float]]:
    """The last report's measures of the collection serving now, by category (``all`` too); empty when there
    is no report or it cannot be read (``/metrics`` must answer anyway)."""
    try:
        report = json.loads(report_path(settings).read_text(encoding="utf-8"))
        measures = report[report["serving"]]["measures"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {c: {k: float(v) for k, v in m.items() if k != "queries" and v is not None} for c, m in measures.items()}


def format_report(report: dict[str, Any]) -> str:
    """The report as `niteru rebuild` prints it: the decision, then each measure live -> new (overall)."""
    if not report:
        return "gate: off (rebuild_gate_sample = 0)"
    head = f"gate: {report['decision']}"
    if "live" not in report:
        return f"{head} ({report.get('reason', '')})"
    head += (
        f" on {report['sample']} products in {report['seconds']} s (tolerance {report['tolerance']}); "
        f"report: {report.get('path', '')}"
    )
    live, new = report["live"]["measures"]["all"], report["new"]["measures"]["all"]
    lines = [head, f"  {'measure':<12} {'live':>7} {'new':>7}"]
    for name in ("p10", "variant_r1", "variant_r10", "colour", "brand"):
        a, b = live.get(name), new.get(name)
        mark = "  fell" if name in report["falls"] else ""
        lines.append(f"  {name:<12} {_pct(a):>7} {_pct(b):>7}{mark}")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"

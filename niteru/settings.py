"""One typed settings module for the whole service.

Every value can be set from the environment with the prefix ``NITERU_`` (for example
``NITERU_IMAGE_BATCH_SIZE=64``) or from a ``.env`` file. Everything has a default except secrets.
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from embedding.image.config import Precision, ResizeMode
from niteru.fusion import Fusion

QuantizationKind = Literal["none", "scalar", "product", "binary", "turbo"]

# Renamed settings: the store's were never Qdrant-server-only (they drive the Edge engine too), and the image
# model's threads are no longer TensorFlow's. The old names, as keyword or environment variable, still work
# for now and warn.
RENAMED = {"qdrant_path": "store_dir", "qdrant_alias": "store_alias", "tf_intra_op_threads": "image_threads"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NITERU_", env_file=".env", extra="ignore")

    # --- where things live -------------------------------------------------------------------------
    data_dir: Path = Field(Path("data"), description="Root for the store, model artifacts and reports.")
    catalog_dir: Path = Field(
        Path("../shared/data/catalog-dev"), description="A catalog in the products.csv + images/ format."
    )

    # --- image vectors (MobileNet v1 1.0/224, ImageNet) ------------------------------------------------
    image_block: int = Field(
        13,
        ge=1,
        le=13,
        description="Pointwise block whose pooled output is the image vector. 13 is the final block "
        "(1024-d); earlier blocks are more texture-sensitive (blocks 12-13: 1024-d, 6-11: 512-d).",
    )
    image_size: int = Field(224, description="Network input side; the weights are for 224.")
    image_resize: ResizeMode = Field(
        "pad",
        description="How a non-square image becomes square: pad (letterbox on white, keeps the whole "
        "product undistorted), crop (centre crop, fills the frame) or stretch (distorts).",
    )
    image_batch_size: int = Field(32, ge=1, le=512)
    image_decode_threads: int = Field(
        0,
        ge=0,
        le=32,
        description="Threads decoding the next batch while the model runs; 0 decodes inline (no slower on 2 "
        "cores with catalog images, see bench/image_throughput.py).",
    )
    image_max_pixels: int = Field(
        16_000_000,
        ge=1,
        description="Decompression-bomb guard, checked on the header before any pixel is decoded: refuse images "
        "with more pixels than this. 16 M covers a 4624x3472 phone photo; the model sees 224x224, and a "
        "16-bit RGBA image at the limit still needs 128 MiB to decode, so more only serves attackers.",
    )
    image_max_concurrent_decodes: int = Field(
        1,
        ge=1,
        le=64,
        description="Images decoding at once in one process (photo searches, uploads, URL and catalog images); "
        "the others wait. Decoding is where a large image costs memory, so this bounds the peak: each slot "
        "may hold one image at the pixel limit. One keeps 40 concurrent hostile images within 1.5x the idle "
        "memory (bench/hostile_images.py); raise it with the cores when photo uploads queue.",
    )
    image_min_side: int = Field(8, ge=1, description="Refuse images whose shorter side is below this.")
    image_max_bytes: int = Field(10 * 1024 * 1024, description="Largest encoded image accepted.")
    keep_photos: bool = Field(
        True,
        description="Keep a small copy (256 px JPEG, a few KB) of each uploaded or URL-fetched photo under "
        "data_dir/photos, for the rebuild's look-alike work (joint model's re-shot photos, the routing fit's "
        "variants, the gate); catalog photos are read from catalog_dir. Off: such products get none of it.",
    )
    image_threads: int = Field(0, ge=0, le=64, description="Threads of one image forward pass (0: all cores).")
    image_precision: Precision = Field(
        "fp32",
        description="Converted image model that serves: fp32, or int8 (full-integer, calibrated on catalog "
        "images by `niteru weights`; see docs/models.md for its speed and neighbour overlap).",
    )

    # --- text vectors (fastText skip-gram + SCDV, embedding/text) ----------------------------------
    text_data_dir: Path = Field(
        Path("../shared/data/text"), description="Text corpora for the quality benchmark (20 Newsgroups, livedoor)."
    )
    text_dim: int = Field(200, ge=8, le=1000, description="fastText word-vector dimension.")
    text_epochs: int = Field(10, ge=1, le=200, description="fastText training epochs.")
    text_lr: float = Field(
        0.05, gt=0, le=1, description="fastText learning rate (halved and retried when training diverges to NaN)."
    )
    text_min_count: int = Field(2, ge=1, description="Words rarer than this get no vector of their own.")
    text_minn: int = Field(3, ge=0, description="Shortest character n-gram (0 with text_maxn 0: no subwords).")
    text_maxn: int = Field(6, ge=0, description="Longest character n-gram.")
    text_window: int = Field(5, ge=1, description="fastText context window.")
    text_buckets: int = Field(
        200_000, ge=1000, description="fastText n-gram hash buckets (the model file is about buckets x dim x 4 B)."
    )
    text_clusters: int = Field(60, ge=2, le=500, description="SCDV Gaussian-mixture components (the paper: 60).")
    text_gmm_covariance: Literal["diag", "tied", "spherical"] = Field(
        "diag", description="GMM covariance; diag is far cheaper than the paper's tied and as accurate here."
    )
    text_gmm_max_iter: int = Field(100, ge=1, description="GMM EM iterations at most.")
    text_sparsity_percent: float = Field(
        4.0, ge=0, le=100, description="SCDV sparsity threshold, % of the mean of the average max and min values."
    )
    text_reduced_dim: int = Field(
        256, ge=2, description="PCA width of the stored SCDV vector (the full one is clusters x dim)."
    )
    text_reduction_sample: int = Field(20_000, ge=100, description="Most documents the PCA is fitted on.")
    text_max_chars: int = Field(
        20_000, ge=100, description="Longer texts are cut to this many characters before tokenising."
    )
    text_seed: int = Field(0, ge=0, description="Seed of fastText, the GMM and the PCA.")
    text_threads: int = Field(2, ge=1, le=64, description="fastText training threads (1 makes training repeatable).")

    # --- the joint vector (embedding/joint, niteru/joint.py): trained at rebuild on image + text -------
    joint_enabled: bool = Field(
        True, description="Train the joint vector at rebuild (off: collections keep two vectors)."
    )
    joint_dim: int = Field(128, ge=8, le=1024, description="Width of the joint vector.")
    joint_hidden: int = Field(512, ge=8, le=4096, description="Width of the joint network's hidden layer.")
    joint_epochs: int = Field(12, ge=1, le=200, description="Training epochs of the joint network.")
    joint_label_weight: float = Field(0.5, ge=0, description="Weight of the subcategory (supervised contrastive) term.")
    joint_structure_weight: float = Field(
        2.0, ge=0, description="Weight of the term keeping the raw image+text cosines (look-alike)."
    )
    joint_reshoot: int = Field(
        800,
        ge=0,
        description="Products whose catalog photo is re-shot (cropped, turned...) and re-embedded at rebuild.",
    )
    joint_min_products: int = Field(200, ge=2, description="Fewer labelled products: no joint model is trained.")
    joint_seed: int = Field(0, ge=0, description="Seed of the joint training and its augmentations.")

    # --- catalog store (Qdrant), ingest and the REST API (niteru/store, niteru/ingest.py, api/) -------
    store_engine: Literal["edge", "qdrant"] = Field(
        "edge",
        description="edge: Qdrant Edge in-process (HNSW, payload indexes; one process owns the folder). qdrant: "
        "qdrant-client, a Qdrant server at qdrant_url, or without one its pure-Python local mode (tests). "
        "Setting qdrant_url implies qdrant.",
    )
    qdrant_url: str | None = Field(
        None, description="Qdrant server URL (http://host:6333). Unset: the embedded store on disk (store_dir)."
    )
    qdrant_api_key: SecretStr | None = Field(None, description="API key of the Qdrant server (a secret).")
    store_dir: Path | None = Field(
        None,
        description="Folder of the embedded store, either engine (default data_dir/edge or data_dir/qdrant); one "
        "process at a time.",
    )
    edge_hnsw_ef: int = Field(
        128, ge=1, le=4096, description="Edge: HNSW candidate list size per query (recall against speed)."
    )
    edge_fuse_locally: bool = Field(
        True,
        description="Edge: run a fused (hybrid) search as plain nearest queries fused in the service, which cost less "
        "than Edge's own fused query (bench/results/fused_query.md); false: as Edge's own fused query (same results).",
    )
    edge_search_threads: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Edge: threads of each shard's search pool, which runs one search's segments in parallel (unset: "
        "Edge's default, from the CPUs). Applied when a shard is created or opened, so a change takes effect at "
        "the next start; bench/results/api_latency-threads.md measures it under concurrent clients.",
    )
    edge_index_after: int = Field(
        5000,
        ge=0,
        description="Edge: products written since the last index build after which a serving process builds the "
        "HNSW index again, in the background (0: only when asked, e.g. at the end of `niteru ingest`).",
    )
    edge_indexing_threshold_kb: int | None = Field(
        None,
        ge=1,
        description="Edge: vector data (KB) a segment needs before it gets an HNSW index (unset: Edge's default; "
        "smaller segments are scanned exactly).",
    )
    lexical: bool = Field(
        True,
        description="Give each new collection a BM25 vector of every title (niteru/lexical.py) and let the routing "
        "fit weigh it as a bonus of the wsum fusion; fixed when a collection is created (the next rebuild or "
        "migration brings a change to the store).",
    )
    # --- quantized vectors, per named vector (niteru/store/quantization.py; fixed when a collection is
    # created, so a change reaches the store with the next rebuild or migration) ---
    quantization_image: QuantizationKind = Field(
        "turbo",
        description="How the image vector is held in RAM for search: none (float32), scalar (int8, 4x less), "
        "product (PQ, quantization_pq_compression), binary (quantization_binary_bits) or turbo (TurboQuant, "
        "quantization_turbo_bits). The float32 originals stay on disk for rescoring. Default turbo at 2 bits: "
        "15.5x less RAM than float32 at recall@10 0.99 after rescoring (docs/deployment.md, Quantized vectors).",
    )
    quantization_text: QuantizationKind = Field(
        "none", description="The same for the text vector (none: 256-d, not measured quantized yet)."
    )
    quantization_image_oversampling: float = Field(
        2.0, ge=1, le=32, description="Quantized image search: candidates fetched per result, then rescored."
    )
    quantization_text_oversampling: float = Field(2.0, ge=1, le=32, description="The same for the text vector.")
    quantization_rescore: bool = Field(
        True, description="Rescore the quantized candidates with the float32 originals (read from disk)."
    )
    quantization_originals_on_disk: bool = Field(
        True, description="Keep a quantized vector's float32 originals on disk (mmap), its codes pinned in RAM."
    )
    quantization_scalar_quantile: float = Field(
        0.99, ge=0.5, le=1, description="scalar: share of the values the int8 range covers (outliers clipped)."
    )
    quantization_pq_compression: Literal[4, 8, 16, 32, 64] = Field(
        16, description="product: float32 bytes per code byte (16: 1024-d image -> 256 bytes)."
    )
    quantization_binary_bits: Literal["1", "1.5", "2"] = Field("2", description="binary: bits per dimension.")
    quantization_turbo_bits: Literal["1", "1.5", "2", "4", "8"] = Field(
        "2", description="turbo: bits per dimension (2: 1024-d image -> 256 bytes + a norm)."
    )
    store_alias: str = Field(
        "products", description="Alias the service reads and writes through; it points at a versioned collection."
    )
    qdrant_timeout: float = Field(10.0, gt=0, description="Seconds one Qdrant server call may take.")
    # --- delete tombstones (niteru/store/tombstones.py) ---
    tombstone_ttl: float = Field(
        3 * 24 * 3600.0,
        gt=0,
        description="Seconds a deleted product's tombstone refuses older writes still in flight (default 3 days).",
    )
    store_batch_size: int = Field(128, ge=1, le=10_000, description="Products embedded and upserted per batch.")
    demo_products: int = Field(
        3000, ge=1, description="How many catalog-dev products `make demo` ingests (a stratified sample)."
    )
    api_host: str = Field("127.0.0.1", description="Address `niteru serve` binds.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port `niteru serve` binds.")
    api_max_upload_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Largest image upload or fetched image URL body (413 above)."
    )
    api_max_k: int = Field(100, ge=1, le=1000, description="Most results one similar/search request may ask for.")
    image_fetch_timeout: float = Field(10.0, gt=0, description="Seconds to fetch an image_url given in a PUT.")
    api_key: SecretStr | None = Field(
        None,
        description="Key the write endpoints require (X-API-Key or Authorization: Bearer). Unset: writes are "
        "open and the service warns at start-up (like Qdrant without a key).",
    )
    api_reads_require_key: bool = Field(
        False, description="Reads (products, similar, search, categorize, images) need the API key too."
    )
    cors_origins: list[str] = Field(
        [], description='Origins browsers may call the API from (["https://shop.example"]); empty: no CORS.'
    )
    cors_allow_credentials: bool = Field(
        False, description="Let cross-origin browsers send credentials; refused together with a '*' origin."
    )
    log_level: str = Field("INFO", description="Level of the service's and the worker's logs.")
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one JSON object per line (time, level, logger, message, request_id)."
    )
    metrics_broker_timeout: float = Field(
        0.5, gt=0, le=10, description="Seconds /metrics waits for the broker's queue length before reporting NaN."
    )
    worker_metrics_port: int = Field(
        9808, ge=0, le=65535, description="Port a Celery worker serves its Prometheus /metrics on (0: none)."
    )
    image_fetch_allow_hosts: list[str] = Field(
        [],
        description="Hosts whose image URLs may be fetched even though they resolve to an internal (private, "
        "loopback, link-local) address; every other internal address is refused (see niteru/fetch.py).",
    )
    route_weights: dict[str, dict[str, float]] | None = Field(
        None,
        description="mode=auto: an override of the routing table, category -> weight of each vector ('*': any "
        'other), e.g. {"fashion": {"image": 1.0, "text": 0.2}, "*": {"image": 0.2, "text": 1.0}}. Unset (the '
        "default): the table the last rebuild fitted on the catalog, or before any fit the hand-written one "
        "(niteru/routing.py DEFAULT_WEIGHTS). Set, it wins over both, with the fusion setting. An estimated "
        "category blends the rows by probability.",
    )
    route_fit: bool = Field(True, description="The rebuild fits the routing table on its new collection.")
    route_fit_objective: Literal["precision@10"] = Field(
        "precision@10",
        description="What the fit maximises on the validation queries (niteru/route_grid.py OBJECTIVES): "
        "precision@10 = share of the 10 results in the query's subcategory.",
    )
    route_fit_validation_share: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Share of the products (by a seeded hash of the id) whose queries the fit scores; "
        "bench/relevance.py takes its queries from the others.",
    )
    route_fit_seed: int = Field(0, ge=0, description="Seed of the fit's validation split and its sampling.")
    route_fit_variants: int = Field(
        2400,
        ge=0,
        description="Re-listed variants (re-shot photo, re-written title) of validation products the rebuild's fit "
        "searches with, spread evenly over them; more than there are validation queries: one more each per round, "
        "each round with the next seed, three rounds at most (niteru/route_grid.py). A category's variant "
        "recall@1 is judged on them (route_fit_best_mode, route_fit_variant_tolerance). 0: no look-alike check.",
    )
    route_fit_variant_tolerance: float = Field(
        0.01,
        ge=0,
        le=1,
        description="How far below the reference mode's (image only, text only, 50/50 or the hand table: "
        "route_fit_lookalike_reference) variant recall@1 an eligible route may be (niteru/route_looks.py). Half "
        "the gate's rebuild_gate_tolerance: the fit's validation queries are not the gate's sample.",
    )
    route_fit_best_mode: tuple[Literal["variant", "colour", "brand"], ...] = Field(
        ("variant", "colour"),
        description="Look-alike measures held at the best reference mode's value, with no tolerance and no noise "
        "allowance, wherever some route of the grid can (the global row; each category on both halves of its "
        "queries); where none can, the nearest-mode floors decide (niteru/route_fit.py). Empty: nearest-mode "
        "floors only. JSON list in the environment.",
    )
    route_fit_lookalike_tolerance: float = Field(
        0.01,
        ge=0,
        le=1,
        description="How far below the reference mode's colour (and brand) consistency an eligible route may be: "
        "the share of its results in the query's subcategory that name the query's colour (brand), pooled over "
        "the queries judged (niteru/route_looks.py). Half the gate's rebuild_gate_tolerance, as the variant one.",
    )
    route_fit_lookalike_reference: Literal["nearest mode", "each best"] = Field(
        "nearest mode",
        description="The floor of each look-alike measure (variant recall@1, colour, brand): that of the reference "
        "mode nearest the best of each measure (the smallest largest shortfall), or 'each best': the best of the "
        "modes on each measure separately, a point no route (not even a mode) may reach where the modes trade one "
        "measure for another (niteru/route_looks.py).",
    )
    route_fit_lookalike_confidence: float = Field(
        0.95,
        ge=0,
        lt=1,
        description="A route below a look-alike floor is still eligible unless its fall is above zero with this "
        "confidence (a paired normal approximation over the queries judged): the gate's rule "
        "(niteru/gate_stats.py), so that the noise of a few hundred queries does not decide. 0: the point "
        "values alone decide.",
    )
    route_fit_lookalike_min_queries: int = Field(
        20,
        ge=1,
        description="Colour (brand, variant recall@1) is judged on a category's queries (or half of them: the "
        "held-out check) when at least this many of them name a colour (a brand; have a variant); else on every "
        "validation query.",
    )
    route_fit_min_queries: int = Field(
        20,
        ge=2,
        description="A category with fewer validation queries than this takes the global fitted row; a store "
        "with fewer in all fits no table (the default table routes).",
    )
    route_fit_max_queries: int = Field(
        300, ge=2, description="Validation queries per category at most (a seeded sample): bounds the fit's time."
    )
    route_fit_step: float = Field(
        0.1, gt=0, le=0.5, description="Grid step of the weights (each a multiple of it, summing to 1)."
    )
    search_text_lexical_weight: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Search by text: the weight of the BM25 title bonus beside the text vector's cosine (the "
        "query is the title; `lexical` collections only; 0: cosine alone). bench/text_search_lexical.py: "
        "re-written titles find their product 49.1 -> 55.2 % (recall@1), subcategory precision@10 74.5 -> 82.6; "
        "three-word queries 50.7 -> 54.2.",
    )
    route_fit_lexical_weights: tuple[Annotated[float, Field(ge=0)], ...] = Field(
        (0.0, 0.0025, 0.005, 0.01, 0.02),
        description="The fit's grid of the lexical (BM25 title) weight, wsum routes only, when `lexical` is on (0 "
        "is always tried). Not normalised with the dense weights (those sum to 1): a bonus of weight x BM25 on a "
        "cosine. A title's BM25 for a match runs about 5-25 and its brand or colour word adds about 3-8, where "
        "near neighbours' cosines differ by 0.01-0.1: each step doubles the bonus from a tie-breaker (0.0025) to "
        "one that outweighs the dense order within the candidates (0.02). JSON list in the environment.",
    )
    fusion: Fusion = Field(
        Fusion.wsum,
        description="How hybrid queries fuse the per-vector candidate lists: wsum (weighted cosine sum), wrrf, "
        "rrf or dbsf. The default was picked by bench/relevance.py.",
    )
    rrf_k: int = Field(60, ge=1, description="RRF ranking constant of hybrid and auto queries.")

    # --- jobs (Celery) -----------------------------------------------------------------------------------
    celery_broker_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker (Redis).")
    celery_result_backend: str = Field("redis://127.0.0.1:6379/1", description="Where task results are kept.")
    celery_queue: str = Field("niteru", description="The queue the tasks go to and the workers listen on.")
    jobs_max_retries: int = Field(6, ge=0, description="Retries of a transiently failing task (timeouts, store down).")
    jobs_retry_backoff_max: int = Field(600, ge=1, description="Longest wait between retries, seconds.")
    jobs_result_expires: int = Field(86_400, ge=60, description="Seconds task results are kept.")
    celery_visibility_timeout: int | None = Field(
        None,
        ge=1,
        description="Seconds before Redis gives an unacknowledged task (its worker died) to another worker. It "
        "must exceed the longest task, the rebuild, whose lock lives `rebuild_lock_timeout`: a shorter one runs a "
        "slow task twice at once. Default: `rebuild_lock_timeout` + 15 minutes; a value not above it is refused.",
    )
    jobs_max_deliveries: int = Field(
        3,
        ge=1,
        description="Deliveries of one attempt of a Celery task before it is recorded as failed (`worker_lost`) "
        "instead of run again: a task that kills its worker (out of memory) would otherwise come back forever.",
    )
    jobs_inline_queue_max: int = Field(
        10_000,
        ge=1,
        description="Tasks the inline executor holds waiting; past it `POST /v1/tasks` answers 503 with Retry-After.",
    )
    jobs_executor: Literal["auto", "celery", "inline"] = Field(
        "auto",
        description="Where `POST /v1/tasks` runs a task: `celery` sends it to the broker, `inline` runs the same "
        "function in a thread of the API process (no Redis needed). `auto`: inline with the embedded store "
        "(which one process owns, so no worker could open it), celery with a Qdrant server.",
    )
    jobs_image_batch_max: int = Field(
        256, ge=1, le=10_000, description="Most images one `niteru.images.registered_many` task may carry."
    )
    jobs_fetch_threads: int = Field(8, ge=1, le=64, description="Parallel image downloads within one batch task.")
    rebuild_cron: str = Field(
        "30 3 * * *",
        description="When beat (or the inline scheduler) starts the daily rebuild: 'minute hour day month weekday'.",
    )
    rebuild_timezone: str = Field("UTC", description="Time zone of `rebuild_cron`.")
    rebuild_expires: int = Field(
        6 * 3600,
        ge=60,
        description="Seconds after its scheduled time a rebuild task is dropped unstarted, so missed runs "
        "(workers down, a backlog) do not pile up into several rebuilds in a row.",
    )
    rebuild_lock_timeout: int = Field(
        4 * 3600,
        ge=60,
        description="Seconds the Redis rebuild lock lives without being renewed (a crashed host frees it).",
    )
    rebuild_gate_sample: int = Field(
        300,
        ge=0,
        description="Products (stratified by category, fixed by the seed) on which the rebuild measures the new "
        "collection and the live one before it swaps (see docs/retrieval.md); 0: no gate, the rebuild always swaps.",
    )
    rebuild_gate_tolerance: float = Field(
        0.02,
        ge=0,
        le=1,
        description="The rebuild swaps only when none of precision@10, variant recall@1, colour and brand "
        "consistency falls by more than this (absolute, 0.02 = two points) beyond the sample's noise (a paired "
        "bootstrap, docs/retrieval.md); `niteru rebuild --force` overrides.",
    )
    rebuild_gate_seed: int = Field(0, description="Seed of the gate's sample and of its products' re-listed variants.")
    models_refresh_seconds: float = Field(
        5.0,
        ge=0,
        description="How often a serving process checks which collection the alias points at, to load the text "
        "model and classifier it was built with after a rebuild (writes always check).",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for old, new in RENAMED.items():
            env_old, env_new = f"NITERU_{old.upper()}", f"NITERU_{new.upper()}"
            value = data.pop(old, None)
            if value is None and env_old in os.environ and env_new not in os.environ:
                value = os.environ[env_old]
            if value is not None and new not in data:
                warnings.warn(f"{old} ({env_old}) is deprecated: use {new} ({env_new})", DeprecationWarning, 2)
                data[new] = value
        return data

    @model_validator(mode="after")
    def _safe_access(self) -> Settings:
        # Browsers refuse "*" with credentials anyway; failing here says so before anyone is confused.
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError("cors_origins may not contain '*' when cors_allow_credentials is true")
        if self.api_reads_require_key and self.api_key is None:
            raise ValueError("api_reads_require_key needs an api_key")
        if self.api_key is not None and not self.api_key.get_secret_value().strip():
            raise ValueError("api_key is empty: unset it to leave writes open, or give a real key")
        if self.qdrant_url is not None:  # a server URL means the server, whatever the engine default
            self.store_engine = "qdrant"
        # A task redelivered while it still runs would run twice at once; the rebuild is the longest task.
        if self.celery_visibility_timeout is not None and self.celery_visibility_timeout <= self.rebuild_lock_timeout:
            raise ValueError(
                f"celery_visibility_timeout ({self.celery_visibility_timeout} s) must exceed rebuild_lock_timeout "
                f"({self.rebuild_lock_timeout} s), the longest a task may run"
            )
        return self

    @property
    def visibility_timeout(self) -> int:
        """Seconds before Redis redelivers an unacknowledged task: the setting, or the rebuild's lock plus a margin."""
        return self.celery_visibility_timeout or self.rebuild_lock_timeout + 900

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def store_path(self) -> Path:
        """Folder of the embedded store (Edge shards, or qdrant-client's local mode)."""
        return self.store_dir or self.data_dir / ("edge" if self.store_engine == "edge" else "qdrant")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once (tests build their own)."""
    return Settings()

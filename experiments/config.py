"""The experiment's YAML grid, command-line overrides, validation and expansion into configurations.

A config file has a ``data`` section, a ``run`` section and one section per index family (``flat``,
``ivfflat``, ``pq``, ``ivfpq``, ``opq_ivfpq``, ``hnsw``, ``sq8``, ``ngt``). In a family section every
value may be a scalar or a list; the grid is the cross product. ``enabled: false`` drops a family.

Overrides are ``dotted.key=value`` where the value is parsed as YAML (``ivfpq.nprobe=[1,8,32]``,
``ngt.enabled=false``). A key that is not in the file is refused, so a typo cannot silently do nothing.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Which parameters change the built index (one build per combination) and which only change the
# search (swept over one built index), per family. Anything else in a section is an error.
FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "flat": ((), ()),
    "ivfflat": (("nlist",), ("nprobe",)),
    "pq": (("m", "nbits"), ("rerank",)),
    "ivfpq": (("nlist", "m", "nbits"), ("nprobe", "rerank")),
    "hnsw": (("M",), ("efSearch",)),
    "sq8": ((), ("rerank",)),
    "ngt": (("graph", "edge_size"), ("epsilon",)),
    "opq_ivfpq": (("nlist", "m", "nbits"), ("nprobe", "rerank")),  # last: OPQ training is the slowest build
}
SECTIONS = ("data", "run")


class ConfigError(ValueError):
    """A configuration that cannot run; the message says which key and why."""


def default_config() -> Path:
    """The grid `niteru experiments pq` runs without ``--config``: pq.yaml beside this module."""
    return Path(__file__).with_name("pq.yaml")


@dataclass(frozen=True)
class IndexConfig:
    """One index to build (``build``) and the search settings to sweep over it (``searches``)."""

    family: str
    build: dict[str, Any]
    searches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.family + "".join(f" {k}={v}" for k, v in self.build.items())


def load_config(path: Path, overrides: list[str]) -> dict[str, Any]:
    """Read the YAML file and apply ``key=value`` overrides in order."""
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return apply_overrides(config, overrides)


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form dotted.key=value")
        *parents, leaf = key.strip().split(".")
        node: Any = config
        for part in parents:
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"override {item!r}: no section {part!r} in the config")
            node = node[part]
        if not isinstance(node, dict) or leaf not in node:
            known = sorted(node) if isinstance(node, dict) else []
            raise ConfigError(f"override {item!r}: unknown key {leaf!r} (known: {known})")
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
    return config


def _as_list(family: str, key: str, value: Any) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(f"{family}.{key} is an empty list")
    return values


def _positive_int(family: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{family}.{key}={value!r} must be a positive integer")
    return value


def _check(family: str, params: dict[str, Any], dim: int, n_base: int, k: int) -> None:
    """Refuse a combination that faiss or NGT would reject (or crash on), with the reason."""
    for key in ("nlist", "m", "nbits", "nprobe", "M", "efSearch", "edge_size"):
        if key in params:
            _positive_int(family, key, params[key])
    if "m" in params and dim % params["m"]:
        raise ConfigError(f"{family}.m={params['m']} does not divide the dimension {dim}")
    if "nbits" in params and params["nbits"] > 16:
        raise ConfigError(f"{family}.nbits={params['nbits']} is above 16 (2^nbits centroids per sub-space)")
    if "nbits" in params and 2 ** params["nbits"] > n_base:
        raise ConfigError(f"{family}.nbits={params['nbits']}: {2 ** params['nbits']} centroids > {n_base} vectors")
    if "nlist" in params and params["nlist"] > n_base:
        raise ConfigError(f"{family}.nlist={params['nlist']} is larger than the base ({n_base} vectors)")
    if "nprobe" in params and "nlist" in params and params["nprobe"] > params["nlist"]:
        raise ConfigError(f"{family}.nprobe={params['nprobe']} is larger than nlist={params['nlist']}")
    if "rerank" in params:
        r = params["rerank"]
        if isinstance(r, bool) or not isinstance(r, int) or (r != 0 and r < k):
            raise ConfigError(f"{family}.rerank={r!r} must be 0 (off) or at least k={k} candidates")
    if "graph" in params and params["graph"] not in ("anng", "onng"):
        raise ConfigError(f"{family}.graph={params['graph']!r} must be anng or onng")
    if "epsilon" in params and (not isinstance(params["epsilon"], int | float) or params["epsilon"] < -1):
        raise ConfigError(f"{family}.epsilon={params['epsilon']!r} must be a number >= -1")


def expand(config: dict[str, Any], dim: int, n_base: int) -> list[IndexConfig]:
    """Every enabled family's grid, validated against the vectors' dimension and base size."""
    k = int(config.get("data", {}).get("k", 10))
    unknown = set(config) - set(FAMILIES) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown sections {sorted(unknown)} (index families: {sorted(FAMILIES)})")
    out: list[IndexConfig] = []
    for family, (build_keys, search_keys) in FAMILIES.items():
        section = config.get(family)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ConfigError(f"section {family!r} must be a mapping")
        section = dict(section)
        if not section.pop("enabled", True):
            continue
        extra = set(section) - set(build_keys) - set(search_keys)
        missing = set(build_keys) - set(section)
        if extra or missing:
            raise ConfigError(f"{family}: unknown keys {sorted(extra)}, missing keys {sorted(missing)}")
        build_grid = [
            dict(zip(build_keys, c, strict=True))
            for c in itertools.product(*(_as_list(family, key, section[key]) for key in build_keys))
        ]
        search_grid = [
            dict(zip(search_keys, c, strict=True))
            for c in itertools.product(*(_as_list(family, key, section.get(key, 0)) for key in search_keys))
        ]
        for build in build_grid:
            searches = [s for s in search_grid if not ("nlist" in build and s.get("nprobe", 0) > build["nlist"])]
            for s in search_grid:
                _check(family, {**build, **s}, dim, n_base, k)
            out.append(IndexConfig(family, build, searches or [{}]))
    if not out:
        raise ConfigError("no index family is enabled")
    return out

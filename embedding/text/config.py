"""What the text model needs to know, and nothing of the service that runs it.

The service builds this from its settings (``niteru.model_config.text_config``); a benchmark or a notebook
can build one by hand. ``model_dir`` is the folder of versioned artifacts with its ``CURRENT`` pointer;
the training parameters are recorded in every artifact they produce.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class TextConfig:
    """fastText skip-gram + SCDV: where the models live, how texts are cut, how a model is trained."""

    model_dir: Path
    max_chars: int = 20_000  # longer texts are cut to this many characters before tokenising
    # fastText skip-gram word vectors
    dim: int = 200
    epochs: int = 10
    lr: float = 0.05  # halved and retried when training diverges
    min_count: int = 2  # rarer words get no vector of their own
    minn: int = 3  # shortest character n-gram (0 with maxn 0: no subwords)
    maxn: int = 6
    window: int = 5
    buckets: int = 200_000  # n-gram hash buckets
    threads: int = 2  # 1 makes training repeatable
    seed: int = 0  # of fastText, the mixture and the PCA
    # SCDV
    clusters: int = 60  # Gaussian-mixture components
    gmm_covariance: Literal["diag", "tied", "spherical"] = "diag"
    gmm_max_iter: int = 100
    sparsity_percent: float = 4.0  # of the mean of the average max and min values
    reduced_dim: int = 256  # PCA width of the stored vector
    reduction_sample: int = 20_000  # most documents the PCA is fitted on

    def params(self) -> dict[str, Any]:
        """The parameters an artifact records (under their settings names, ``text_<name>``)."""
        return {f"text_{name}": value for name, value in asdict(self).items() if name != "model_dir"}

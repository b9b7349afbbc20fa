"""What the joint model needs to know: its shape and how it is trained (nothing of the service)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class JointConfig:
    """``model_dir`` holds one folder per text model version: a joint model reads that text model's
    vectors, so it is found by the text version and follows it through rebuilds and rollbacks."""

    model_dir: Path
    dim: int = 128  # width of the stored vector
    hidden: int = 512
    epochs: int = 12
    batch_size: int = 256
    lr: float = 2e-3
    temperature: float = 0.1
    # Loss weights. Instance (augmented views of one product stay together) is the anchor; the label term
    # pulls a subcategory together; the structure term keeps the raw [image; text] cosines, so look-alike
    # (colour, pattern) is not collapsed into the label (issue 17's warning).
    label_weight: float = 0.5
    structure_weight: float = 2.0
    noise: float = 0.03  # feature noise of the second view of products without a re-shot photo
    seed: int = 0
    min_products: int = 200  # fewer labelled products: no joint model

    def params(self) -> dict[str, Any]:
        return {f"joint_{name}": value for name, value in asdict(self).items() if name != "model_dir"}

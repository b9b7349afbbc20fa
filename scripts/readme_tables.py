"""Copy benchmark result tables into README.md between ``<!-- NAME -->`` and ``<!-- /NAME -->`` markers.

    .venv/bin/python scripts/readme_tables.py image-bench=bench/results/image_throughput.md text-bench=a.md,b.md

The README shows what a benchmark last wrote, never numbers typed by hand.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def clean(table: str) -> str:
    """A result file without its own title, its sections one level below the README's (####)."""
    lines = table.strip().splitlines()
    if lines and lines[0].startswith("# "):  # a result file's own title would break the README's outline
        lines = lines[1:]
    return "\n".join(lines).strip().replace("\n## ", "\n#### ")


def inline(readme: str, name: str, table: str) -> str:
    block = f"<!-- {name} -->\n{table.strip()}\n<!-- /{name} -->"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->(?:.*?<!-- /{re.escape(name)} -->)?", re.DOTALL)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no <!-- {name} --> marker")
    return pattern.sub(lambda _: block, readme, count=1)


def main(pairs: list[str]) -> None:
    readme = README.read_text()
    for pair in pairs:
        name, _, paths = pair.partition("=")
        readme = inline(readme, name, "\n\n".join(clean(Path(p).read_text()) for p in paths.split(",")))
    README.write_text(readme)


if __name__ == "__main__":
    main(sys.argv[1:])

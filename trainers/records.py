"""Reading the JSON records lungsweep writes (checkpoint.json, bag.json, the sweep record, manifest.json),
with one rule for what is wrong: missing, damaged, not an object, or lacking keys, each named with its remedy."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import LungsweepError

__all__ = ["read_record_file"]


def read_record_file(
    path: str | Path,
    *,
    required: Sequence[str] = (),
    error: type[LungsweepError] = LungsweepError,
    missing: str,
    remedy: str,
    read_bytes: Callable[[str], bytes | None] | None = None,
) -> dict[str, Any]:
    """The JSON object at `path`. `missing` is the message when there is no file; `remedy` ends every other one.

    read_bytes: how to read a path that may be a URI (None when absent); default: a local file.
    """
    data = (read_bytes or _local_bytes)(str(path))
    if data is None:
        raise error(missing)
    try:
        record = json.loads(data.decode())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path} is damaged (not valid JSON: {e}); {remedy}") from e
    if not isinstance(record, dict):
        raise error(f"{path} holds a {type(record).__name__}, not a JSON object; {remedy}")
    absent = [k for k in required if k not in record]
    if absent:
        raise error(f"{path} lacks key(s) {absent}; it was not written by this lungsweep: {remedy}")
    return record


def _local_bytes(path: str) -> bytes | None:
    return Path(path).read_bytes() if Path(path).is_file() else None

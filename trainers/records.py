"""Reading the JSON records lungsweep writes (checkpoint.json, bag.json, the sweep record, manifest.json),
with one rule for what is wrong: missing, damaged, not an object, or lacking keys, each named with its remedy."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .errors import LungsweepError

__all__ = ["read_record_file"]


def read_record_file(
    path: str | Path,
    *,
    required: Sequence[str] = (),
    error: type[LungsweepError] = LungsweepError,
    missing: str,
    remedy: str,
) -> dict[str, Any]:
    """The JSON object at `path`. `missing` is the message when there is no file; `remedy` ends every other one."""
    path = Path(path)
    if not path.is_file():
        raise error(missing)
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path} is damaged (not valid JSON: {e}); {remedy}") from e
    if not isinstance(record, dict):
        raise error(f"{path} holds a {type(record).__name__}, not a JSON object; {remedy}")
    absent = [k for k in required if k not in record]
    if absent:
        raise error(f"{path} lacks key(s) {absent}; it was not written by this lungsweep: {remedy}")
    return record

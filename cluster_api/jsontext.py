"""Decoding the JSON that scheduler commands print (``bjobs -json``, ``qstat -F json``,
``flux jobs --json``), once for all of them.

orjson decodes a 10k-job answer in half the time of the standard library; anything orjson
refuses (text after the value, NaN, huge numbers, lone surrogates, raw control
characters) and platforms without it go through the standard library, which also words
the error.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # not installed (e.g. PyPy): the standard library decodes
    orjson = None  # type: ignore[assignment]

from .errors import ClusterAPIError


def decode_json(text: str, command: str) -> Any:
    """The JSON value ``text`` starts with; text after it is ignored. Control characters
    inside strings are kept: schedulers print user values (job names, PBS's
    Variable_List) raw, and one such job must not make the whole answer unreadable.
    ClusterAPIError, naming ``command``, when ``text`` does not start with JSON."""
    if orjson is not None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.JSONDecoder(strict=False).raw_decode(text)[0]
    except (ValueError, RecursionError) as exc:
        message = f"{command} printed invalid JSON ({exc}): {text.strip()[:200]!r}"
        raise ClusterAPIError(message) from None

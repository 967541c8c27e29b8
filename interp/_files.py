"""Reading the JSON files users pass (facts, edit requests, probe datasets) or the shipped ones."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from interp.errors import InterpError


def read_json(path: str | None, shipped: str, what: str) -> Any:
    """Parse ``path``, or the package's ``data/<shipped>`` when ``path`` is None; one-line errors."""
    if path is None:
        text, where = resources.files("interp").joinpath(f"data/{shipped}").read_text(), f"the shipped {what}"
    else:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as err:
            raise InterpError(f"cannot read {what} {path}: {err.strerror}") from err
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InterpError(f"{what} {path} is not UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start}); "
                              "re-encode the file as UTF-8") from None
        where = f"{what} {path}"
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InterpError(f"{where} is not JSON: {err.msg} at line {err.lineno}") from err
    except RecursionError:  # nested past Python's limit: not a file any writer of ours made
        raise InterpError(f"{where} nests too deeply to read") from None

"""The registry of rank-one edits a model carries, shared by ROME and its key statistics.

ROME (:mod:`interp.knowledge.rome`) appends each edit it applies and removes it on undo; the key
covariance (:mod:`interp.knowledge.covariance`) refuses to compute statistics of an edited model,
since they must describe the unedited one. Both read this one list, kept on the model object itself
so that it lives and dies with the weights it describes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from interp.knowledge.rome import Edit

__all__ = ["edits", "is_edited"]


def edits(model) -> list[Edit]:
    """The edits the model carries, oldest first (empty for an unedited model)."""
    return model.__dict__.setdefault("_interp_edits", [])


def is_edited(model) -> bool:
    return bool(edits(model))

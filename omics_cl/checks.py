"""Argument checks shared by the public functions: a clear ValueError before any work."""
from __future__ import annotations

import numbers


def check_positive_int(value, name: str, allow_none: bool = False) -> None:
    """Refuse ``value`` unless it is an integer >= 1 (``None`` too with ``allow_none``); booleans are refused."""
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        allowed = "None or a positive integer" if allow_none else "a positive integer"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def check_feature_count(value, name: str) -> None:
    """Refuse ``value`` unless it is ``None`` (all features) or an integer >= 2 (features to keep)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2):
        raise ValueError(f"{name} must be None (all) or an integer of at least 2, got {value!r}")


def check_positive_number(value, name: str, allow_none: bool = False) -> None:
    """Refuse ``value`` unless it is a finite real number > 0 (``None`` too with ``allow_none``); booleans are
    refused."""
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < float("inf"):
        allowed = "None or a positive number" if allow_none else "a positive number"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def check_atlas_labels(atlas, classes, name: str) -> None:
    """Refuse an atlas label column (a pandas Series) that holds no label, or none of whose labels is among the
    reference's ``classes``: an annotation check would have nothing to check."""
    labels = atlas.dropna().astype(str).unique()
    if len(labels) == 0:
        raise ValueError(f"{name} holds no atlas label (every value is missing)")
    known = {str(c) for c in classes}
    if not any(label in known for label in labels):
        raise ValueError(f"none of the atlas labels in {name} (first: {list(labels[:5])}) is a reference class "
                         f"(first: {sorted(known)[:5]}): nothing to check; do the two use the same label names?")


# uns["omics_cl"] entries written by tools other than cluster / integrate / map_paired: a result key must not take them
OTHER_RECORDS = ("subclusters", "label_consistency", "trajectory", "embed_atac", "check_annotations", "transfer_method")


def check_key_added(value) -> None:
    """Refuse a result key (``key_added``) that is not a non-empty string, holds '/' (an .h5ad group separator) or
    names another tool's record."""
    if value is None:
        return
    if not isinstance(value, str) or not value or "/" in value:
        raise ValueError(f"key_added must be None or a non-empty string without '/', got {value!r}")
    if value in OTHER_RECORDS:
        raise ValueError(f"key_added={value!r} is the name of another tool's record in uns['omics_cl']; pick another")

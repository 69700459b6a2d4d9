"""Shared base for every user-facing config model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ConfigModel(BaseModel):
    """Base of user-written configuration: unknown fields are errors, values are validated on
    assignment, and infinities and NaN are never valid numbers."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True,
                              allow_inf_nan=False)

    def fingerprint_payload(self) -> Any:
        """The data-relevant part of this model, as JSON-able data (see ``config.fingerprint``)."""
        return self.model_dump(mode="json", exclude_none=False)


def import_reference(reference: str) -> Any:
    """The object a 'module:qualname' reference names; ImportError/AttributeError if none."""
    import importlib

    module_name, _, qualname = reference.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj

"""The JSON schema of a dataset config, for editors that complete and check YAML configs.

``columns`` items are a union discriminated by ``column_type`` over every registered column type
(plugins included), ``processors`` items one discriminated by ``processor_type``. A sampler
column's ``params`` follow its ``sampler_type`` (an ``if``/``then`` per sampler type).

>>> schema = dataset_config_json_schema()
>>> sorted(schema["properties"]["columns"]["items"]["discriminator"]["mapping"])[:2]
['custom', 'expression']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from pydantic import BaseModel

from gristmill.config.dataset import DatasetConfig
from gristmill.config.registry import get_registry
from gristmill.config.sampler_params import SAMPLER_PARAMS

JsonSchema = dict[str, Any]  # JSON itself: values are any JSON value
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def dataset_config_json_schema() -> JsonSchema:
    """The JSON schema (draft 2020-12) of a ``DatasetConfig`` with every registered type in it."""
    schema = DatasetConfig.model_json_schema()
    definitions: JsonSchema = schema.setdefault("$defs", {})
    registry = get_registry()
    columns = {name: entry.model for name, entry in sorted(registry.column_types().items())}
    processors = {name: entry.model for name, entry in sorted(registry.processor_types().items())}
    properties = schema["properties"]
    properties["columns"]["items"] = _discriminated(columns, "column_type", definitions)
    properties["processors"]["items"] = _discriminated(processors, "processor_type", definitions)
    for stale in ("ColumnConfig", "ProcessorConfig"):
        definitions.pop(stale, None)  # the bases, replaced by the unions above
    _sampler_params_by_type(definitions)
    return {"$schema": SCHEMA_DIALECT, **schema}


def _discriminated(models: Mapping[str, type[BaseModel]], field: str, definitions: JsonSchema) -> JsonSchema:
    """``oneOf`` the models' schemas (hoisted into ``$defs``) with an OpenAPI-style discriminator."""
    mapping = {name: f"#/$defs/{_define(model, definitions)}" for name, model in models.items()}
    for ref in mapping.values():
        member = definitions[ref.rsplit("/", 1)[1]]
        # The discriminator has a default in the model but must be written in a config.
        member["required"] = sorted({*member.get("required", ()), field})
    return {"oneOf": [{"$ref": ref} for ref in mapping.values()],
            "discriminator": {"propertyName": field, "mapping": mapping}}


def _define(model: type[BaseModel], definitions: JsonSchema) -> str:
    """Add ``model``'s schema (and the definitions it uses) to ``definitions``; its key."""
    own = model.model_json_schema(ref_template="#/$defs/{model}")
    definitions.update(own.pop("$defs", {}))
    key = model.__name__
    if key in definitions and definitions[key] != own:  # a plugin's model named like another one
        key = f"{model.__module__}.{model.__name__}"
    definitions[key] = own
    return key


def _sampler_params_by_type(definitions: JsonSchema) -> None:
    """Make a sampler column's ``params`` follow its ``sampler_type`` instead of the empty base model."""
    sampler = cast(JsonSchema | None, definitions.get("SamplerColumn"))
    if sampler is None:
        return
    properties = sampler["properties"]
    properties["sampler_type"] = {**properties["sampler_type"], "enum": sorted(SAMPLER_PARAMS)}
    properties["params"] = {"type": "object", "description": properties["params"].get("description", "")}
    properties["conditional_params"] = {
        "type": "object", "additionalProperties": {"type": "object"},
        "description": properties["conditional_params"].get("description", "")}
    sampler["allOf"] = [
        {"if": {"properties": {"sampler_type": {"const": name}}, "required": ["sampler_type"]},
         "then": {"properties": {"params": {"$ref": f"#/$defs/{_define(model, definitions)}"}}}}
        for name, model in sorted(SAMPLER_PARAMS.items())]
    definitions.pop("SamplerParams", None)

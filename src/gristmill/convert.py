"""Configs from the reference tool (NeMo Data Designer) turned into gristmill configs.

>>> result = convert_reference_config({"columns": [
...     {"name": "who", "column_type": "sampler", "sampler_type": "person_from_faker", "params": {}}]})
>>> result.config["columns"][0]["sampler_type"]
'person'

A pure mapping of data: names are renamed (``llm-text`` -> ``llm_text``, ``person_from_faker`` ->
``person``, ``model_configs`` -> ``models``, ``seed_config`` -> ``seed``), values whose meaning
differs are rewritten so the data means the same (a datetime sampler's exclusive ``end``), and
everything else is listed in :attr:`ConversionResult.unmapped` with its path and the reason,
one line each; :attr:`ConversionResult.notes` lists what was mapped but behaves differently.
Providers are not part of a dataset config: they come back in :attr:`ConversionResult.providers`
for ``providers.yaml``. ``docs/from-reference-tool.md`` is the user's page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gristmill.config.sampler_params import SAMPLER_PARAMS
from gristmill.config.samplers import DATETIME_SAMPLERS, parse_condition

_COLUMN_TYPES = {"llm-text": "llm_text", "llm-code": "llm_code", "llm-structured": "llm_structured",
                 "llm-judge": "llm_judge", "sampler": "sampler", "expression": "expression",
                 "validation": "validation"}
_SAMPLER_TYPES = {"person_from_faker": "person", "person": "person"}
_LLM_FIELDS = ("prompt", "system_prompt", "model_alias")
_TYPE_FIELDS = {"llm_code": ("code_lang",), "llm_structured": ("output_format",), "llm_judge": ("scores",),
                "expression": ("expr", "dtype")}
_OPERATORS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Why a field of the reference tool has no place here; a field not named gets the generic reason.
_REASONS = {
    "multi_modal_context": "multimodal context is not supported yet",
    "tool_alias": "tool use over MCP is not supported yet",
    "tool_configs": "tool use over MCP is not supported yet",
    "with_trace": "traces are not supported yet",
    "profilers": "gristmill analyses every column itself (results.load_analysis())",
    "with_synthetic_personas": "persona fields come from the reference tool's managed datasets",
    "select_field_values": "filters of the reference tool's managed person datasets",
    "skip_health_check": "gristmill checks models with 'gristmill models check'",
}


@dataclass(frozen=True)
class ConversionLine:
    """One line of the report: where in the reference config, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ConversionResult:
    """The gristmill config dict, providers for ``providers.yaml``, and what did not map."""

    config: dict[str, Any]
    providers: list[dict[str, Any]] = field(default_factory=list)
    unmapped: list[ConversionLine] = field(default_factory=list)
    notes: list[ConversionLine] = field(default_factory=list)

    def skip(self, path: str, reason: str) -> None:
        self.unmapped.append(ConversionLine(path, reason))

    def note(self, path: str, reason: str) -> None:
        self.notes.append(ConversionLine(path, reason))


def convert_reference_config(data: dict[str, Any]) -> ConversionResult:
    """Map a reference-tool config (the dict of its YAML/JSON) onto a gristmill config dict."""
    if not isinstance(data, dict):
        raise TypeError(f"a reference config is a mapping, got {type(data).__name__}")
    result = ConversionResult(config={})
    parts: dict[str, Callable[[Any, str, ConversionResult], None]] = {
        "columns": _columns, "model_configs": _models, "seed_config": _seed, "constraints": _constraints,
        "processors": _processors, "model_providers": _providers, "providers": _providers,
    }
    for key, value in data.items():
        if key in parts:
            if value is not None:
                parts[key](value, key, result)
        elif _has_effect(value):
            result.skip(key, _REASONS.get(key, "no gristmill equivalent"))
    return result


def _has_effect(value: Any) -> bool:
    """False for values that say 'nothing' (None, False, empty, the reference's 'none' trace)."""
    return value not in (None, False, "none", "", [], {})


def _leftovers(source: dict[str, Any], used: set[str], path: str, result: ConversionResult) -> None:
    for key, value in source.items():
        if key not in used and _has_effect(value):
            result.skip(f"{path}.{key}", _REASONS.get(key, "no gristmill equivalent"))


# ---------------------------------------------------------------------------------------------- columns

def _columns(columns: list[Any], path: str, result: ConversionResult) -> None:
    out = result.config.setdefault("columns", [])
    for index, column in enumerate(columns):
        converted = _column(column, f"{path}[{index}]", result)
        if converted is not None:
            out.append(converted)


def _column(column: dict[str, Any], path: str, result: ConversionResult) -> dict[str, Any] | None:
    kind = column.get("column_type")
    if kind == "seed-dataset":
        result.note(path, f"seed column {column.get('name')!r} comes from the seed itself; no column needed")
        return None
    if kind not in _COLUMN_TYPES:
        result.skip(path, f"column {column.get('name')!r}: column_type {kind!r} is not supported")
        return None
    validator = (column.get("validator_params") or {}).get("validator_type", column.get("validator_type"))
    if kind == "validation" and validator != "code":
        result.skip(path, f"column {column.get('name')!r}: {validator!r} validators are not mapped yet; only "
                          "code validators (python, sql)")
        return None
    ours = _COLUMN_TYPES[kind]
    out: dict[str, Any] = {"name": column.get("name"), "column_type": ours}
    used = {"name", "column_type", "drop", "skip", "propagate_skip"}
    if column.get("drop"):
        out["drop"] = True
    if "propagate_skip" in column:
        out["propagate_skip"] = column["propagate_skip"]
    _skip(column.get("skip"), path, out, result)
    if ours == "sampler":
        used |= _sampler(column, path, out, result)
    elif ours == "validation":
        used |= _validation(column, path, out, result)
    else:
        used |= _copy(column, (*(_LLM_FIELDS if ours.startswith("llm") else ()), *_TYPE_FIELDS.get(ours, ())), out)
        used |= _reasoning(column, path, out, result)
    _leftovers(column, used, path, result)
    return out


def _copy(source: dict[str, Any], names: tuple[str, ...], out: dict[str, Any]) -> set[str]:
    out.update({name: source[name] for name in names if source.get(name) is not None})
    return set(names)


def _skip(skip: Any, path: str, out: dict[str, Any], result: ConversionResult) -> None:
    if skip is None:
        return
    when = skip.get("when") if isinstance(skip, dict) else skip
    out["skip"] = when
    if isinstance(skip, dict) and skip.get("value") is not None:
        result.skip(f"{path}.skip.value", "a skipped cell is always null here")


def _reasoning(column: dict[str, Any], path: str, out: dict[str, Any], result: ConversionResult) -> set[str]:
    if column.get("extract_reasoning_content"):
        out["keep_reasoning"] = True
        result.note(f"{path}.extract_reasoning_content",
                    f"the reasoning is written to '{out['name']}__reasoning' (not '__reasoning_content')")
    return {"extract_reasoning_content"}


# ---------------------------------------------------------------------------------------------- samplers

def _sampler(column: dict[str, Any], path: str, out: dict[str, Any], result: ConversionResult) -> set[str]:
    kind = str(column.get("sampler_type"))
    ours = _SAMPLER_TYPES.get(kind, kind)
    out["sampler_type"] = ours
    if kind == "person":
        result.note(f"{path}.sampler_type", "the reference tool's 'person' draws from its managed datasets; "
                    "here it is the Faker-based person sampler")
    if ours not in SAMPLER_PARAMS:
        result.skip(f"{path}.sampler_type", f"sampler_type {kind!r} has no gristmill sampler")
        return {"sampler_type", "params", "conditional_params", "convert_to"}
    base = column.get("params") or {}
    out["params"] = _params(base, ours, f"{path}.params", result)
    conditional = _conditional(column.get("conditional_params") or {}, base, ours, path, result)
    if conditional:
        out["conditional_params"] = conditional
    _convert_to(column.get("convert_to"), ours, path, out, result)
    return {"sampler_type", "params", "conditional_params", "convert_to"}


def _params(params: dict[str, Any], kind: str, path: str, result: ConversionResult) -> dict[str, Any]:
    known = SAMPLER_PARAMS[kind].model_fields
    out = {key: value for key, value in params.items() if key in known and value is not None}
    _leftovers({k: v for k, v in params.items() if k != "sampler_type"}, set(known), path, result)
    if kind == "datetime" and "end" in out:
        out["end"] = _inclusive_end(str(out["end"]))
        result.note(f"{path}.end", f"the reference tool's end is exclusive; written as the last value, {out['end']}")
    if kind == "uuid" and out.get("short_form"):
        result.note(f"{path}.short_form", "short ids have 12 hex digits here, 8 in the reference tool")
    return out


def _inclusive_end(end: str) -> str:
    """The last instant before an exclusive ``end`` (the datetime sampler truncates it to its unit)."""
    import numpy as np

    return str(np.datetime64(end, "s") - np.timedelta64(1, "s"))


def _conditional(conditional: dict[str, Any], base: dict[str, Any], kind: str, path: str,
                 result: ConversionResult) -> dict[str, Any]:
    out = {}
    for condition, params in conditional.items():
        where = f"{path}.conditional_params[{condition!r}]"
        try:
            parse_condition(condition)
        except ValueError as exc:
            result.skip(where, f"{exc}; combine conditions with one column each")
            continue
        out[condition] = _params(params or {}, kind, where, result)
        left_out = sorted(set(base) - set(params or {}) - {"sampler_type"})
        if left_out:
            result.note(where, f"{left_out} keep the base params' values here; the reference tool used defaults")
    return out


def _convert_to(target: str | None, kind: str, path: str, out: dict[str, Any], result: ConversionResult) -> None:
    if target is not None:
        out["convert_to"] = target
    elif kind in DATETIME_SAMPLERS:
        out["convert_to"] = "str"
        result.note(path, "datetime values are written as ISO 8601 text, as in the reference tool "
                          "(convert_to: str; remove it for timestamps)")


# ---------------------------------------------------------------------------------------------- validation

def _validation(column: dict[str, Any], path: str, out: dict[str, Any], result: ConversionResult) -> set[str]:
    out["target_columns"] = list(column.get("target_columns") or [])
    params = column.get("validator_params") or {}
    lang, _, dialect = str(params.get("code_lang", "python")).partition(":")
    out["validator"] = lang
    if lang == "sql":  # sqlglot's default dialect ('') is ANSI SQL
        out["params"] = {"dialect": "" if dialect == "ansi" else dialect}
    if column.get("batch_size") is not None:
        out["batch_size"] = column["batch_size"]
    _leftovers(params, {"validator_type", "code_lang"}, f"{path}.validator_params", result)
    return {"target_columns", "validator_type", "validator_params", "batch_size"}


# ---------------------------------------------------------------------------------------------- the rest

def _models(models: list[dict[str, Any]], path: str, result: ConversionResult) -> None:
    out = result.config.setdefault("models", [])
    for index, model in enumerate(models):
        where = f"{path}[{index}]"
        converted: dict[str, Any] = {key: model[key] for key in ("alias", "model", "provider") if key in model}
        params = dict(model.get("inference_parameters") or {})
        converted.update(_model_limits(params))
        converted["inference_parameters"] = _inference(params, f"{where}.inference_parameters", result)
        _leftovers(model, {"alias", "model", "provider", "inference_parameters"}, where, result)
        out.append(converted)


def _model_limits(params: dict[str, Any]) -> dict[str, Any]:
    """Concurrency and timeout sit in the reference tool's inference parameters, on the model here."""
    return {key: params.pop(key) for key in ("max_parallel_requests", "timeout") if params.get(key) is not None}


def _inference(params: dict[str, Any], path: str, result: ConversionResult) -> dict[str, Any]:
    if params.get("generation_type", "chat-completion") not in ("chat-completion", "chat_completion"):
        result.skip(f"{path}.generation_type", f"{params['generation_type']!r} models are not supported yet")
    out: dict[str, Any] = {}
    for key in ("temperature", "top_p"):
        value = params.get(key)
        if isinstance(value, dict):
            result.skip(f"{path}.{key}", "a value drawn per row from a distribution is not supported yet; "
                                         "set one number")
        elif value is not None:
            out[key] = value
    if params.get("max_tokens") is not None:
        out["max_tokens"] = params["max_tokens"]
    if params.get("extra_body"):
        out["extra"] = params["extra_body"]
    _leftovers(params, {"temperature", "top_p", "max_tokens", "extra_body", "generation_type"}, path, result)
    return out


def _providers(providers: list[dict[str, Any]], path: str, result: ConversionResult) -> None:
    for index, provider in enumerate(providers):
        where = f"{path}[{index}]"
        out = {key: provider[key] for key in ("name", "endpoint", "provider_type", "extra_body", "extra_headers")
               if provider.get(key) is not None}
        key = provider.get("api_key")
        if isinstance(key, str) and _ENV_NAME.match(key):
            out["api_key"] = f"${key}"
            result.note(f"{where}.api_key", f"read from the environment variable {key} (written '${key}')")
        elif key is not None:
            out["api_key"] = key
        _leftovers(provider, {*out, "api_key"}, where, result)
        result.providers.append(out)


def _seed(seed: dict[str, Any], path: str, result: ConversionResult) -> None:
    source = seed.get("source") or {}
    if source.get("seed_type", "local") != "local" or "path" not in source:
        result.skip(f"{path}.source", f"seed_type {source.get('seed_type')!r}: only local files are mapped")
        return
    out: dict[str, Any] = {"source": source["path"]}
    if seed.get("sampling_strategy"):
        out["sampling_strategy"] = seed["sampling_strategy"]
    selection = seed.get("selection_strategy")
    if selection:
        out["selection_strategy"] = _selection(selection)
    _leftovers(source, {"seed_type", "path"}, f"{path}.source", result)
    _leftovers(seed, {"source", "sampling_strategy", "selection_strategy"}, path, result)
    result.config["seed"] = out


def _selection(selection: dict[str, Any]) -> dict[str, Any]:
    """An IndexRange keeps its inclusive ``end`` (gristmill's is inclusive too); else a PartitionBlock."""
    if "start" in selection or "end" in selection:
        return {"selection_type": "index_range", "start": selection.get("start", 0), "end": selection["end"]}
    return {"selection_type": "partition_block", "index": selection.get("index", 0),
            "num_partitions": selection.get("num_partitions", 1)}


def _constraints(constraints: list[dict[str, Any]], path: str, result: ConversionResult) -> None:
    out = result.config.setdefault("constraints", [])
    for index, constraint in enumerate(constraints):
        rhs = constraint.get("rhs")
        converted = {"target_column": constraint.get("target_column"),
                     "operator": _OPERATORS.get(constraint.get("operator", ""), constraint.get("operator"))}
        if isinstance(rhs, str):
            converted.update(constraint_type="column_inequality", rhs_column=rhs)
        else:
            converted.update(constraint_type="scalar_inequality", rhs=rhs)
        _leftovers(constraint, {"target_column", "operator", "rhs", "constraint_type"}, f"{path}[{index}]", result)
        out.append(converted)


def _processors(processors: list[dict[str, Any]], path: str, result: ConversionResult) -> None:
    out = result.config.setdefault("processors", [])
    fields = {"drop_columns": "column_names", "schema_transform": "template"}
    for index, processor in enumerate(processors):
        where, kind = f"{path}[{index}]", processor.get("processor_type")
        if kind not in fields:
            result.skip(where, f"processor_type {kind!r} is not supported")
            continue
        body = fields[kind]
        out.append({"name": processor.get("name", kind), "processor_type": kind, body: processor.get(body)})
        _leftovers(processor, {"name", "processor_type", body}, where, result)


__all__ = ["ConversionLine", "ConversionResult", "convert_reference_config"]

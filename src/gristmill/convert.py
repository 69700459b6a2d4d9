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
Providers and tool configs are not part of a dataset config: they come back in
:attr:`ConversionResult.providers` (for ``providers.yaml``) and :attr:`ConversionResult.tool_configs`
(for ``tools.yaml``). ``docs/from-reference-tool.md`` is the user's page.
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
                 "validation": "validation", "embedding": "embedding", "image": "image"}
_SAMPLER_TYPES = {"person_from_faker": "person", "person": "person"}
_LLM_FIELDS = ("prompt", "system_prompt", "model_alias")
_TYPE_FIELDS = {"llm_code": ("code_lang",), "llm_structured": ("output_format",), "llm_judge": ("scores",),
                "expression": ("expr", "dtype"), "embedding": ("target_column", "model_alias"),
                "image": ("prompt", "model_alias")}
_TRACES = ("none", "last_message", "all_messages")
_CHAT = ("chat-completion", "chat_completion", "chat")
# The reference tool's image_format -> MIME type ('jpg' is image/jpeg).
_IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
                "webp": "image/webp"}
# Model names the reference tool sends to /images/generations; it asks other image models through
# chat completions, where gristmill always uses /images/generations.
_DIFFUSION_MODELS = ("dall-e-", "dalle", "stable-diffusion", "sd-", "sd_", "imagen", "gpt-image-")
# Fields of an image request that gristmill's image column sets itself, not through extra_params.
_IMAGE_OWN_FIELDS = ("model", "prompt", "n")
_MAX_TOOL_TURNS = 50  # ToolConfig.max_tool_call_turns' bound
_OPERATORS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Why a field of the reference tool has no place here; a field not named gets the generic reason.
_REASONS = {
    "multi_modal_context": "only LLM columns take multimodal context here",
    "mcp_providers": "MCP servers go in tools.yaml under tool_providers, written by hand (docs/tools.md)",
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
    """The gristmill config dict, providers for ``providers.yaml``, tool configs for ``tools.yaml``,
    and what did not map."""

    config: dict[str, Any]
    providers: list[dict[str, Any]] = field(default_factory=list)
    tool_configs: list[dict[str, Any]] = field(default_factory=list)
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
        "tool_configs": _tool_configs,
    }
    for key, value in data.items():
        if key in parts:
            if value is not None:
                parts[key](value, key, result)
        elif _has_effect(value):
            result.skip(key, _REASONS.get(key, "no gristmill equivalent"))
    if isinstance(data.get("model_configs"), list):
        _model_column_options(data["model_configs"], "model_configs", result)
    return result


def _enum(value: Any) -> str | None:
    """A reference-tool enum value as lower-case text, however it was written.

    >>> _enum("ALL_MESSAGES"), _enum("TraceType.ALL_MESSAGES"), _enum("url"), _enum(None)
    ('all_messages', 'all_messages', 'url', None)
    """
    if value is None:
        return None
    text = str(getattr(value, "value", value)).strip()
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9]*\.[A-Za-z_][A-Za-z0-9_]*", text):  # 'TraceType.ALL_MESSAGES'
        text = text.partition(".")[2]
    return text.lower()


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
        if ours.startswith("llm"):
            used |= _llm_extras(column, path, out, result)
        elif ours == "embedding":
            result.note(path, f"column {out['name']!r} holds one vector per row here (a JSON list of texts is "
                              "embedded as one text); the reference tool wrote {embeddings, num_embeddings, "
                              "dimension}")
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


def _llm_extras(column: dict[str, Any], path: str, out: dict[str, Any], result: ConversionResult) -> set[str]:
    """``with_trace``, ``multi_modal_context`` and ``tool_alias`` of an LLM column."""
    trace = _enum(column.get("with_trace"))
    if trace not in (None, *_TRACES):
        result.skip(f"{path}.with_trace", f"with_trace {column['with_trace']!r} is not one of {', '.join(_TRACES)}")
    elif trace is not None and trace != "none":
        out["with_trace"] = trace
        result.note(f"{path}.with_trace", f"'{out['name']}__trace' holds {{role, content, reasoning}} entries here "
                                          "(tool calls as JSON in the assistant's content), not the reference "
                                          "tool's message dicts")
    contexts = column.get("multi_modal_context")
    if contexts:
        mapped = _contexts(contexts, f"{path}.multi_modal_context", result)
        if mapped:
            out["multi_modal_context"] = mapped
    alias = column.get("tool_alias")
    if alias is not None:
        out["tool_alias"] = alias
        result.note(f"{path}.tool_alias", f"tool config {alias!r} must be declared in tools.yaml (docs/tools.md)")
    return {"with_trace", "multi_modal_context", "tool_alias"}


def _contexts(contexts: Any, path: str, result: ConversionResult) -> list[dict[str, Any]]:
    """The reference tool's image (and audio) contexts as gristmill's ``MultiModalContext`` dicts."""
    if not isinstance(contexts, list):
        result.skip(path, "multi_modal_context must be a list of contexts")
        return []
    out = []
    for index, context in enumerate(contexts):
        where = f"{path}[{index}]"
        if not isinstance(context, dict):
            result.skip(where, f"a context is a mapping, got {context!r}")
            continue
        converted = _context(context, where, result)
        if converted is not None:
            out.append(converted)
    return out


def _context(context: dict[str, Any], path: str, result: ConversionResult) -> dict[str, Any] | None:
    # A context without 'modality' is an image, unless it names an audio or video format (the
    # reference tool's reading of its older configs).
    modality = _enum(context.get("modality")) or next(
        (kind for kind in ("audio", "video") if f"{kind}_format" in context), "image")
    if modality not in ("image", "audio"):
        result.skip(path, f"modality {modality!r}: gristmill sends images and audio only")
        return None
    if not context.get("column_name"):
        result.skip(path, "a context without column_name names no column")
        return None
    data_type, media = _enum(context.get("data_type")), _enum(context.get(f"{modality}_format"))
    out: dict[str, Any] = {"column": context["column_name"], "type": modality}
    if modality == "audio" and data_type == "url":
        result.skip(path, "audio given as URLs: gristmill sends audio as data (format: path or base64), "
                          "as OpenAI-compatible endpoints take it")
        return None
    if data_type not in (None, "url", "base64"):
        result.skip(f"{path}.data_type", f"data_type {context['data_type']!r} is not url or base64")
        return None
    if data_type is None:  # the reference tool tells URLs from base64 cell by cell; gristmill needs one
        data_type = "url" if modality == "image" and media is None else "base64"
        other = ("" if modality == "audio" else ", base64 for bare base64 data" if data_type == "url"
                 else ", url for http(s) links")
        result.note(path, f"the reference tool tells each cell's format itself; written as format: {data_type} "
                          f"(use path for local files{other})")
    out["format"] = data_type
    if media is not None and data_type == "base64":
        out["media_type"] = _IMAGE_TYPES.get(media, f"image/{media}") if modality == "image" else media
    _leftovers(context, {"modality", "column_name", "data_type", "image_format", "audio_format"}, path, result)
    return out


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
        kind = _generation_type(params)
        if kind not in ("chat", "embedding", "image"):
            result.skip(f"{where}.inference_parameters.generation_type",
                        f"generation_type {params['generation_type']!r} is not chat-completion, embedding or image")
            continue
        if kind != "chat":
            converted["generation_type"] = kind
        converted.update(_model_limits(params))
        if kind == "chat":
            converted["inference_parameters"] = _inference(params, f"{where}.inference_parameters", result)
        else:  # their parameters belong on the columns here: see _model_column_options
            own = {"dimensions", "encoding_format"} if kind == "embedding" else set()
            _leftovers(params, {"generation_type", "extra_body", *own}, f"{where}.inference_parameters", result)
        if kind == "image" and not any(name in str(model.get("model", "")).lower() for name in _DIFFUSION_MODELS):
            result.note(f"{where}.model", "gristmill asks image models at the provider's /images/generations; the "
                                          "reference tool asks a model with this name through chat completions")
        _leftovers(model, {"alias", "model", "provider", "inference_parameters"}, where, result)
        out.append(converted)


def _generation_type(params: dict[str, Any]) -> str | None:
    """'chat', 'embedding' or 'image' as gristmill spells them; None for anything else. Without a
    generation_type, embedding fields make an embedding model, as in the reference tool."""
    kind = _enum(params.get("generation_type"))
    if kind is None:
        return "embedding" if "encoding_format" in params or "dimensions" in params else "chat"
    kind = kind.replace("_", "-")
    return "chat" if kind in _CHAT else kind if kind in ("embedding", "image") else None


def _model_limits(params: dict[str, Any]) -> dict[str, Any]:
    """Concurrency and timeout sit in the reference tool's inference parameters, on the model here."""
    return {key: params.pop(key) for key in ("max_parallel_requests", "timeout") if params.get(key) is not None}


def _inference(params: dict[str, Any], path: str, result: ConversionResult) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("temperature", "top_p"):
        value = params.get(key)
        if isinstance(value, dict):
            drawn = _distribution(value, f"{path}.{key}", result)
            if drawn is not None:
                out[key] = drawn
        elif value is not None:
            out[key] = value
    if params.get("max_tokens") is not None:
        out["max_tokens"] = params["max_tokens"]
    if params.get("extra_body"):
        out["extra"] = params["extra_body"]
    _leftovers(params, {"temperature", "top_p", "max_tokens", "extra_body", "generation_type"}, path, result)
    return out


def _distribution(value: dict[str, Any], path: str, result: ConversionResult) -> dict[str, Any] | None:
    """The reference tool's uniform distribution as a :class:`~gristmill.config.models.ParameterDistribution`
    dict; its manual distribution (values with weights) has no equivalent."""
    params = value.get("params") or {}
    kind = _enum(value.get("distribution_type")) or ("manual" if "values" in params else "uniform")
    if kind != "uniform":
        result.skip(path, f"a {kind!r} distribution has no gristmill equivalent (uniform only, or a "
                          "numpy distribution such as normal); set one number or a distribution by hand")
        return None
    if set(params) != {"low", "high"}:
        result.skip(path, f"a uniform distribution takes low and high, got {sorted(params)}")
        return None
    result.note(path, "drawn per row from a stream seeded by the run (a rerun sends the same values), "
                      "rounded to 4 decimals")
    return {"distribution": "uniform", "params": {"low": params["low"], "high": params["high"]}}


def _model_column_options(models: list[Any], path: str, result: ConversionResult) -> None:
    """Embedding and image models' parameters of the reference tool, set on the columns that use them:
    gristmill's embedding column has ``dimensions``, its image column ``size``, ``quality`` and
    ``extra_params``, and sends no per-model fields."""
    columns = result.config.get("columns", [])
    for index, model in enumerate(models):
        if not isinstance(model, dict):
            continue
        params = model.get("inference_parameters") or {}
        where, kind = f"{path}[{index}].inference_parameters", _generation_type(params)
        if kind not in ("embedding", "image"):
            continue
        users = [c for c in columns if c.get("column_type") == kind and c.get("model_alias") == model.get("alias")]
        options = (_embedding_options if kind == "embedding" else _image_options)(params, model, where, result)
        shown = sorted(key for key in options if key != "response_format")
        if shown and not users:
            result.skip(where, f"{', '.join(shown)}: set on the {kind} columns of model {model.get('alias')!r} "
                               f"here, and no {kind} column uses it")
        for column in users:
            column.update(options)


def _embedding_options(params: dict[str, Any], model: dict[str, Any], path: str,
                       result: ConversionResult) -> dict[str, Any]:
    if _enum(params.get("encoding_format")) not in (None, "float"):
        result.skip(f"{path}.encoding_format", "gristmill asks for float vectors and stores them as floats")
    if params.get("extra_body"):
        result.skip(f"{path}.extra_body", "gristmill sends no per-model fields with embedding requests; put them in "
                                          "the provider's extra_body")
    return {"dimensions": params["dimensions"]} if params.get("dimensions") is not None else {}


def _image_options(params: dict[str, Any], model: dict[str, Any], path: str,
                   result: ConversionResult) -> dict[str, Any]:
    """An image model's ``extra_body`` as image-column fields: size and quality are fields, the rest
    extra_params; gpt-image models refuse response_format."""
    body = dict(params.get("extra_body") or {})
    out: dict[str, Any] = {key: body.pop(key) for key in ("size", "quality") if body.get(key) is not None}
    if "gpt-image" in str(model.get("model", "")).lower():
        out["response_format"] = None
        result.note(path, "response_format: null on its image columns (gpt-image models answer base64 and refuse "
                          "the field)")
    fmt = body.pop("response_format", None)
    if fmt not in (None, "b64_json"):
        result.skip(f"{path}.extra_body.response_format", f"gristmill reads base64 answers only, not {fmt!r}")
    for key in _IMAGE_OWN_FIELDS:
        if key in body:
            result.skip(f"{path}.extra_body.{key}", "the image column sets it itself")
            del body[key]
    if body:
        out["extra_params"] = body
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


def _tool_configs(configs: list[dict[str, Any]], path: str, result: ConversionResult) -> None:
    """The reference tool's ``tool_configs`` as gristmill ``ToolConfig`` dicts, for ``tools.yaml``."""
    providers: list[str] = []
    for index, config in enumerate(configs):
        where = f"{path}[{index}]"
        names = list(config.get("providers") or [])
        if not names:
            result.skip(where, f"tool config {config.get('tool_alias')!r} names no providers; gristmill needs one")
            continue
        out: dict[str, Any] = {"alias": config.get("tool_alias"), "providers": names}
        providers += [name for name in names if name not in providers]
        if config.get("allow_tools"):  # None or empty offers every tool, there and here
            out["allow_tools"] = list(config["allow_tools"])
        turns = config.get("max_tool_call_turns")
        if turns is not None:
            out["max_tool_call_turns"] = min(turns, _MAX_TOOL_TURNS) if isinstance(turns, int) else turns
            if isinstance(turns, int) and turns > _MAX_TOOL_TURNS:
                result.note(f"{where}.max_tool_call_turns", f"at most {_MAX_TOOL_TURNS} here; written as "
                                                            f"{_MAX_TOOL_TURNS}")
        if config.get("timeout_sec") is not None:
            out["timeout"] = config["timeout_sec"]
        else:
            result.note(where, "the reference tool waits for a tool call without limit; here one times out "
                               "after 60 s (set timeout)")
        _leftovers(config, {"tool_alias", "providers", "allow_tools", "max_tool_call_turns", "timeout_sec"},
                   where, result)
        result.tool_configs.append(out)
    if providers:
        result.note(path, f"the MCP servers {', '.join(providers)} are declared in Python in the reference tool: "
                          "add them to tools.yaml under tool_providers by hand (docs/tools.md)")


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

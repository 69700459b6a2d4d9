"""LLM column configs: ``llm_text``, ``llm_code``, ``llm_structured`` and ``llm_judge``.

Prompts are Jinja templates over the row (rendered in a sandbox by the engine). With
``keep_reasoning=True`` a column also writes ``<name>__reasoning``: the model's reasoning
(``<think>`` blocks or the API's reasoning field), which is always stripped from the value.
With ``with_trace`` it writes ``<name>__trace``: the messages exchanged for the cell. With
``multi_modal_context`` the user message also carries images or audio read from other columns
(``docs/multimodal.md``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from gristmill.config.columns import ColumnConfig, template_variables
from gristmill.config.json_schema import schema_problems
from gristmill.errors import ConfigError

REASONING_SUFFIX = "__reasoning"
TRACE_SUFFIX = "__trace"
# Fields added after datasets were written: in the fingerprint only when set, so stored datasets
# keep theirs.
_LATER_LLM_FIELDS: dict[str, Any] = {"with_trace": "none", "multi_modal_context": []}


class MultiModalContext(BaseModel):
    """One image or audio clip sent with the prompt, read from a column of the row.

    The cell holds a URL, a local file path or base64 data (``format``), or a list of them; a null
    or empty cell sends nothing. Local files are read and base64-encoded by gristmill; a relative
    path is taken from ``base_dir`` when set, else from the working directory of the process.
    """

    model_config = {"extra": "forbid"}

    column: str = Field(description="The column whose cell holds the image or audio.")
    type: Literal["image", "audio"] = Field(default="image", description="What the cell holds.")
    format: Literal["url", "path", "base64"] = Field(default="path", description=(
        "How the cell holds it: an http(s) or data: URL, a local file path, or base64 data."))
    media_type: str | None = Field(default=None, description=(
        "For images: the MIME type of base64 data or of files without a known extension (default "
        "image/png for base64; from the file extension for paths). For audio: 'wav' or 'mp3' "
        "(default from the file extension, else 'wav')."))
    detail: Literal["auto", "low", "high"] | None = Field(
        default=None, description="OpenAI image detail level, sent only when set.")
    base_dir: str | None = Field(default=None, description=(
        "Folder that relative paths are taken from (format: path). Not part of the fingerprint: "
        "moving the files keeps the dataset; the file bytes are in each request, so edited files "
        "are asked again."))

    @model_validator(mode="after")
    def _check(self) -> MultiModalContext:
        if self.type == "audio" and self.format == "url":
            raise ValueError(f"audio from column {self.column!r} must be a path or base64: OpenAI-compatible "
                             "endpoints take audio as data (input_audio), not as a URL")
        if self.type == "audio" and self.media_type not in (None, "wav", "mp3"):
            raise ValueError(f"audio media_type must be 'wav' or 'mp3', got {self.media_type!r}")
        if self.type == "image" and self.media_type is not None and not self.media_type.startswith("image/"):
            raise ValueError(f"image media_type must be an image/... MIME type, got {self.media_type!r}")
        if self.detail is not None and self.type == "audio":
            raise ValueError("detail applies to images only")
        return self


class LLMColumnBase(ColumnConfig):
    """Fields every LLM column has."""

    prompt: str = Field(description="Jinja2 template of the user message, over the row.")
    system_prompt: str | None = Field(default=None, description="Jinja2 template of the system message.")
    model_alias: str = Field(default="default", description="Alias of the model (models.yaml or config models).")
    keep_reasoning: bool = Field(default=False,
                                 description="Also write the model's reasoning to '<name>__reasoning'.")
    tool_alias: str | None = Field(default=None, description=(
        "Alias of a tool config (tools.yaml or Mill(tool_configs=...)): the model may call its MCP tools "
        "before it answers (docs/tools.md)."))
    with_trace: Literal["none", "last_message", "all_messages"] = Field(default="none", description=(
        "Also write '<name>__trace', a list of {role, content, reasoning}: 'all_messages' holds every "
        "message of the cell (system, prompt, answers, corrections), 'last_message' the final answer."))
    multi_modal_context: list[MultiModalContext] = Field(default_factory=list, description=(
        "Images or audio sent with the prompt as content parts, each read from a column of the row."))

    llm_instructions: ClassVar[str] = ""
    may_fail: ClassVar[bool] = True  # a model can give up on a cell

    @field_validator("prompt", "system_prompt")
    @classmethod
    def _check_template(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                template_variables(value)
            except ConfigError as exc:  # a ValueError lets pydantic name the column and field
                raise ValueError(str(exc)) from None
        return value

    def required_columns(self) -> set[str]:
        names = template_variables(self.prompt)
        if self.system_prompt:
            names |= template_variables(self.system_prompt)
        return names | {context.column for context in self.multi_modal_context}

    def output_columns(self) -> list[str]:
        names = [self.name]
        if self.keep_reasoning:
            names.append(self.name + REASONING_SUFFIX)
        if self.with_trace != "none":
            names.append(self.name + TRACE_SUFFIX)
        return names

    def fingerprint_payload(self) -> Any:
        payload = super().fingerprint_payload()
        for name, default in _LATER_LLM_FIELDS.items():
            if name in payload and getattr(self, name) == default:
                del payload[name]
        for context in payload.get("multi_modal_context", []):
            context.pop("base_dir", None)
        return payload

    def model_aliases(self) -> set[str]:
        return {self.model_alias}

    def _fingerprint_excluded(self) -> set[str]:
        # tool_alias came later: a column without tools keeps its fingerprint.
        excluded = super()._fingerprint_excluded()
        return excluded | {"tool_alias"} if self.tool_alias is None else excluded


class LLMTextColumn(LLMColumnBase):
    """Free text from a model, e.g. ``prompt="Write a one-line bio of {{ name }}."``."""

    column_type: Literal["llm_text"] = "llm_text"


# The reference tool's languages and SQL dialects, and a few more; a language outside the list
# would be used as the fence tag, which models do not always follow.
CODE_LANGUAGES = ("bash", "c", "cobol", "cpp", "csharp", "css", "go", "html", "java", "javascript", "json",
                  "julia", "kotlin", "lua", "markdown", "perl", "php", "python", "r", "ruby", "rust", "scala",
                  "shell", "sql", "swift", "typescript", "yaml")
SQL_DIALECTS = ("ansi", "bigquery", "duckdb", "mysql", "postgres", "snowflake", "sqlite", "tsql")


class LLMCodeColumn(LLMColumnBase):
    """Code from a model: the fenced block in ``code_lang`` is extracted from the answer. An answer
    without a fenced block is sent back with a correction, at most ``max_corrections`` times.

    ``code_lang`` is a language of :data:`CODE_LANGUAGES` (any case), or ``sql:<dialect>`` as the
    reference tool writes it (``sql:postgres``): the fence tag is then ``sql`` (:attr:`code_fence`)
    and the dialect is kept for validators (:attr:`sql_dialect`).
    """

    column_type: Literal["llm_code"] = "llm_code"
    code_lang: str = Field(default="python", description=(
        "Language of the code block: python, sql, bash, ... or a SQL dialect as 'sql:postgres' "
        f"({', '.join('sql:' + d for d in SQL_DIALECTS)})."))
    max_corrections: int = Field(default=2, ge=0, le=10,
                                 description="Follow-up requests when the answer has no code block, per cell.")

    @field_validator("code_lang")
    @classmethod
    def _check_code_lang(cls, value: str) -> str:
        lang, sep, dialect = value.strip().lower().partition(":")
        if lang not in CODE_LANGUAGES:
            raise ValueError(f"unknown code_lang {value!r}; known languages: {', '.join(CODE_LANGUAGES)}, "
                             f"and SQL dialects {', '.join('sql:' + d for d in SQL_DIALECTS)}")
        if sep and (lang != "sql" or dialect not in SQL_DIALECTS):
            raise ValueError(f"unknown code_lang {value!r}; only sql takes a dialect, one of "
                             f"{', '.join('sql:' + d for d in SQL_DIALECTS)}")
        return value

    @property
    def code_fence(self) -> str:
        """The tag of the fenced block asked for and extracted: 'sql' for every SQL dialect."""
        return self.code_lang.strip().lower().partition(":")[0]

    @property
    def sql_dialect(self) -> str | None:
        """The dialect of 'sql:<dialect>' ('postgres'), else None."""
        return self.code_lang.strip().lower().partition(":")[2] or None

    def fingerprint_payload(self) -> Any:
        """Like every column's, plus the fence tag where it is not ``code_lang`` itself ('sql:ansi',
        'Python'): such a column was once asked with its ``code_lang`` as the tag, so its stored data
        came from other prompts. ``code_lang: python`` keeps its fingerprint."""
        payload = super().fingerprint_payload()
        if self.code_fence != self.code_lang:
            payload["code_fence"] = self.code_fence
        return payload


class LLMStructuredColumn(LLMColumnBase):
    """A JSON value matching ``output_format`` (a JSON schema, or a pydantic model turned into one).

    Uses the endpoint's JSON/schema mode where the provider has one, always also instructs the
    model, extracts JSON from the answer (fenced or bare, trailing prose tolerated), validates it,
    and on failure asks again with the validation error, at most ``max_corrections`` times.
    """

    column_type: Literal["llm_structured"] = "llm_structured"
    output_format: dict[str, Any] = Field(description="JSON schema of the value, or a pydantic model class.")
    max_corrections: int = Field(default=2, ge=0, le=10,
                                 description="Follow-up requests carrying the validation error, per cell.")

    @field_validator("output_format", mode="before")
    @classmethod
    def _schema_of_model(cls, value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value.model_json_schema()
        return value

    @field_validator("output_format")
    @classmethod
    def _check_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        # A malformed schema would accept or refuse every answer, after each was paid for.
        problems = schema_problems(value)
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise ValueError(f"not a valid JSON schema: {'; '.join(problems[:3])}{more}")
        return value


class Score(BaseModel):
    """One judged dimension: the model picks one of ``options`` and says why."""

    model_config = {"extra": "forbid"}

    name: str = Field(description="Key of this score in the output, e.g. 'helpfulness'.")
    description: str = Field(description="What is judged.")
    options: dict[str, str] = Field(description="Score value -> what it means, e.g. {'1': 'useless', '5': 'ideal'}.")

    @field_validator("options", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        # YAML gives int keys and JSON str keys; one spelling keeps the fingerprint stable.
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("options")
    @classmethod
    def _not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("a score needs at least one option")
        return value

    def numeric(self) -> bool:
        """True when every option is an integer, so scores are written as ints."""
        return all(k.lstrip("-").isdigit() for k in self.options)


class LLMJudgeColumn(LLMColumnBase):
    """Scores a row with a rubric: writes ``{score_name: {"score": ..., "reasoning": ...}}``."""

    column_type: Literal["llm_judge"] = "llm_judge"
    scores: list[Score] = Field(min_length=1, description="The dimensions to judge.")
    max_corrections: int = Field(default=2, ge=0, le=10,
                                 description="Follow-up requests carrying the validation error, per cell.")

    @field_validator("scores")
    @classmethod
    def _unique(cls, value: list[Score]) -> list[Score]:
        names = [s.name for s in value]
        if len(set(names)) != len(names):
            raise ValueError(f"score names must be unique, got {names}")
        return value

    def json_schema(self) -> dict[str, Any]:
        """The schema the judge's answer must match."""
        properties = {}
        for score in self.scores:
            options: list[Any] = [int(k) if score.numeric() else k for k in score.options]
            properties[score.name] = {
                "type": "object",
                "properties": {"reasoning": {"type": "string"}, "score": {"enum": options}},
                "required": ["reasoning", "score"]}
        return {"type": "object", "properties": properties, "required": [s.name for s in self.scores]}


LLM_COLUMN_TYPES = (LLMTextColumn, LLMCodeColumn, LLMStructuredColumn, LLMJudgeColumn)

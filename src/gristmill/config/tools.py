"""Tools a model may call while it answers an LLM column: MCP servers and tool configs.

Declared like model providers and models (``tools.yaml`` in the gristmill home, or
``Mill(tool_providers=..., tool_configs=...)``)::

    tool_providers:
      - name: docs                  # an MCP server started as a subprocess (stdio)
        command: python
        args: [docs_server.py]
        env: {DOCS_TOKEN: $DOCS_TOKEN}
      - name: search                # an MCP server already running (streamable HTTP)
        url: http://127.0.0.1:8765/mcp
    tool_configs:
      - alias: research
        providers: [docs, search]
        allow_tools: [lookup, search]   # empty: every tool the providers list
        max_tool_call_turns: 4
        timeout: 30

An LLM column names a tool config with ``tool_alias: research``. Like models from
``models.yaml``, tool providers and configs are not part of a dataset's fingerprint: what the
model was offered (the tools' names, descriptions and schemas) and every tool result are part of
the request bodies, so the response cache tells a changed tool from an unchanged one.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from gristmill.config.base import ConfigModel, non_empty_alias


class ToolProvider(ConfigModel):
    """An MCP server: a ``command`` gristmill starts (stdio) or a ``url`` it connects to
    (streamable HTTP). One session per provider is opened on first use and closed with the Mill."""

    # Never quote inputs in errors: env and headers may hold tokens.
    model_config = ConfigDict(hide_input_in_errors=True)

    name: str = Field(description="Provider name that tool configs refer to.")
    command: str | None = Field(default=None, description="Executable of a stdio MCP server, e.g. 'python'.")
    args: list[str] = Field(default_factory=list, description="Arguments of the stdio server's command.")
    env: dict[str, str] = Field(
        default_factory=dict, repr=False,
        description="Environment variables added for the stdio server (the SDK passes only a safe default "
                    "set, PATH and HOME among them); a value '$NAME' is read from gristmill's environment.")
    cwd: str | None = Field(default=None, description="Working directory of the stdio server.")
    url: str | None = Field(default=None, description="Endpoint of a streamable-HTTP MCP server.")
    headers: dict[str, str] = Field(default_factory=dict, repr=False,
                                    description="HTTP headers sent to a streamable-HTTP server; "
                                                "a value '$NAME' is read from the environment.")
    max_parallel_calls: int = Field(default=8, ge=1, description="Tool calls in flight at once on this server.")
    startup_timeout: float = Field(default=30.0, gt=0,
                                   description="Seconds to start the server and list its tools.")

    fingerprint_exclude: ClassVar[frozenset[str]] = frozenset(
        {"env", "headers", "url", "cwd", "max_parallel_calls", "startup_timeout"})

    @property
    def transport(self) -> Literal["stdio", "streamable_http"]:
        return "stdio" if self.command else "streamable_http"

    @model_validator(mode="after")
    def _one_transport(self) -> ToolProvider:
        if bool(self.command) == bool(self.url):
            raise ValueError(f"tool provider {self.name!r} needs exactly one of 'command' (a stdio MCP server) "
                             "or 'url' (a streamable-HTTP MCP server)")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"tool provider {self.name!r}: url must start with http:// or https://")
        return self

    def fingerprint_payload(self) -> Any:
        return self.model_dump(mode="json", exclude=set(self.fingerprint_exclude))


class ToolConfig(ConfigModel):
    """The tools one LLM column may call (``tool_alias``), from which providers, how many rounds."""

    alias: str = Field(description="Name that LLM columns use in 'tool_alias'.")
    providers: list[str] = Field(min_length=1, description="Names of the ToolProviders whose tools are offered.")
    allow_tools: list[str] = Field(
        default_factory=list,
        description="Tool names the model is offered (and may call); empty offers every tool the providers list.")
    max_tool_call_turns: int = Field(
        default=5, ge=1, le=50,
        description="Answers that may ask for tools, per cell; the request after the last such turn is sent "
                    "with tool_choice 'none', and a model that still asks for a tool fails the cell.")
    timeout: float = Field(default=60.0, gt=0, description="Seconds one tool call may take before the cell fails.")
    first_call: str | None = Field(
        default=None,
        description="A tool the model must call in its first answer (sent as tool_choice naming it); later "
                    "answers choose freely. For small models that do not call tools on their own.")

    _check_alias = field_validator("alias")(non_empty_alias)

    @field_validator("providers", "allow_tools")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        dupes = sorted({v for v in value if value.count(v) > 1})
        if dupes:
            raise ValueError(f"listed more than once: {', '.join(dupes)}")
        return value

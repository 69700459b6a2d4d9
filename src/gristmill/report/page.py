"""The HTML of a report: sections built from profiles, usage and sample rows, one inline style sheet.

Everything from data (column names, values, stage names, error reasons) is escaped here or in
``charts``; the page carries a Content-Security-Policy that allows no script at all, so even a
value that slipped through could not run.
"""

from __future__ import annotations

import json
from collections.abc import Container, Mapping, Sequence
from html import escape
from typing import Any

import pyarrow as pa

from gristmill.report.charts import chart_svg
from gristmill.report.profile import INTERNAL_COLUMNS, ColumnProfile, FieldProfile

SAMPLE_ROWS = 10
MAX_CELL_CHARS = 400
USAGE_ORDER = ("requests", "input_tokens", "output_tokens", "cache_hits", "failures", "retries", "corrections",
               "rate_limited")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:19px;margin:28px 0 10px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:0 0 6px} .muted{color:#666}
table{border-collapse:collapse;background:#fff;margin:6px 0} td,th{border:1px solid #e2e2e2;padding:3px 8px;
text-align:left;vertical-align:top} th{background:#f1f1f1} td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:14px} .card{background:#fff;border:1px solid #e2e2e2;border-radius:6px;
padding:12px;width:520px} .card .stats{margin-bottom:6px} .chart text{font-size:11px;fill:#333}
.caption{font-size:12px;margin-top:6px} .fields table{font-size:12px;width:100%}
.dag text{font-size:12px;fill:#222} .bad{color:#b3261e} .null{color:#999;font-style:italic}
.samples{overflow-x:auto} .samples td{max-width:320px;white-space:pre-wrap;word-break:break-word;font-size:12px}
.stage{margin-top:36px;padding-top:4px;border-top:3px solid #bbb}
"""


def page(title: str, facts: Sequence[tuple[str, str]], sections: Sequence[str]) -> str:
    """The whole document; ``facts`` are (label, value) shown under the title."""
    facts_html = " · ".join(f"{escape(label)}: <b>{escape(value)}</b>" for label, value in facts)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><main><h1>{escape(title)}</h1><p class=\"muted\">{facts_html}</p>"
            + "".join(sections) + "</main></body></html>\n")


def table_html(headers: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: Container[int] = ()) -> str:
    """A table of already-escaped cells; the ``numeric`` columns (by position) are right-aligned."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def usage_keys(usage: Mapping[str, Mapping[str, int]]) -> list[str]:
    """The counters present, the usual ones first."""
    present = {key for counts in usage.values() for key in counts}
    return [k for k in USAGE_ORDER if k in present] + sorted(present - set(USAGE_ORDER))


def usage_section(usage: Mapping[str, Mapping[str, int]], costs: Mapping[str, float],
                  columns_by_model: Mapping[str, Sequence[str]], *, heading: str = "Model usage") -> str:
    """One row per model alias; a cost column only when prices were configured."""
    if not usage:
        return f"<h2>{escape(heading)}</h2><p class=\"muted\">No LLM requests.</p>"
    keys = usage_keys(usage)
    headers = ["model", "columns", *keys, *(["cost (USD)"] if costs else [])]
    rows = []
    for model, counts in usage.items():
        cost = [f"{costs[model]:.4f}" if model in costs else "no price"] if costs else []
        rows.append([escape(model), escape(", ".join(columns_by_model.get(model, ()))),
                     *(f"{counts.get(k, 0):,}" for k in keys), *cost])
    return f"<h2>{escape(heading)}</h2>" + table_html(headers, rows, numeric=range(2, len(headers)))


def columns_section(profiles: Sequence[ColumnProfile]) -> str:
    """An overview table, then a card per column with its charts (a struct's: a table of its fields)."""
    rows = [[f'<a href="#col-{i}">{escape(p.name)}</a>', type_html(p), escape(p.kind), f"{p.nulls:,}",
             _problem(p.failed), f"{p.skipped:,}", escape(p.summary)] for i, p in enumerate(profiles)]
    headers = ["column", "type", "kind", "nulls", "failed", "skipped", "summary"]
    overview = table_html(headers, rows, numeric=range(3, 6))
    cards = "".join(_card(i, p) for i, p in enumerate(profiles))
    return f"<h2>Columns</h2>{overview}<div class=\"cards\">{cards}</div>"


def _problem(count: int) -> str:
    return f'<span class="bad">{count:,}</span>' if count else "0"


def type_html(profile: ColumnProfile) -> str:
    """The column's arrow type; a struct's is long (every field), so it reads 'struct of N fields'
    with the full type as its tooltip (the card lists the fields)."""
    if profile.kind != "struct":
        return escape(profile.type)
    count = len(profile.fields)
    return f'<span title="{escape(profile.type)}">struct of {count} {"field" if count == 1 else "fields"}</span>'


def _card(index: int, profile: ColumnProfile) -> str:
    charts = "".join(_caption(c.title, c.note, show_title=c.title != profile.name) + chart_svg(c)
                     for c in profile.charts)
    stats = [f"{profile.nulls:,} of {profile.rows:,} null"]
    stats += [f"<span class=\"bad\">{profile.failed:,} failed</span>"] * bool(profile.failed)
    stats += [escape(profile.summary)] * bool(profile.summary and not profile.fields)  # fields: listed below
    kind = type_html(profile) if profile.kind == "struct" else f"{escape(profile.kind)} · {type_html(profile)}"
    return (f'<div class="card" id="col-{index}"><h3>{escape(profile.name)} <span class="muted">{kind}</span></h3>'
            f'<div class="stats muted">{" · ".join(stats)}</div>{charts}{_fields_table(profile.fields)}</div>')


def _fields_table(fields: Sequence[FieldProfile]) -> str:
    """A struct column's fields, one row each."""
    if not fields:
        return ""
    rows = [[escape(f.name), escape(f.type), escape(f.kind), f"{f.nulls:,}", escape(f.summary)] for f in fields]
    return f'<div class="fields">{table_html(["field", "type", "kind", "nulls", "summary"], rows, numeric=(3,))}</div>'


def _caption(title: str, note: str, *, show_title: bool) -> str:
    text = " · ".join([title] * show_title + [note] * bool(note))
    return f'<div class="caption">{escape(text)}</div>' if text else ""


def samples_section(table: pa.Table, limit: int = SAMPLE_ROWS) -> str:
    """The first ``limit`` rows, every value escaped and cut to ``MAX_CELL_CHARS``."""
    names = [n for n in table.column_names if n not in INTERNAL_COLUMNS]
    rows = [[cell_html(row.get(n)) for n in names] for row in table.slice(0, limit).to_pylist()]
    heading = f"<h2>Sample records</h2><p class=\"muted\">first {len(rows)} of {table.num_rows:,} rows</p>"
    return heading + f'<div class="samples">{table_html(names, rows)}</div>'


def cell_text(value: Any) -> str:
    """A value as plain text: strings as they are, nested values as JSON."""
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS] + "…"


def cell_html(value: Any) -> str:
    return '<span class="null">null</span>' if value is None else escape(cell_text(value))

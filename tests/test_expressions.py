"""Expression columns: the fast path renders exactly what Jinja renders, dtype casts, the sandbox."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

import gristmill as gm
from gristmill.engine.templates import _fast_plan, render_column

# Appending an empty ``if`` block keeps the text but takes the template off the fast path.
JINJA_ONLY = "{% if true %}{% endif %}"

VALUES: dict[str, list[Any]] = {
    "f": [1.5, 0.1 + 0.2, 1e20, -0.0, float("nan"), 2.0],
    "i": [0, -7, 2**62, 1, 10, 3],
    "maybe": [None, "x", None, 1, None, True],
    "b": [True, False, True, False, None, True],
    "s": ["plain", "", "<tag> & 'q'", "ünïcode", "line\nbreak", "{{ not a template }}"],
    "d": [dt.date(2024, 1, 31), dt.datetime(2024, 2, 1, 12, 30), None, dt.date(1999, 12, 31),
          dt.datetime(2000, 1, 1), dt.date(2024, 2, 29)],
    "person": [{"first_name": f"N{i}", "last_name": "L", "address": {"city": f"C{i}"}, "items": i}
               for i in range(6)],
    "lst": [[1, 2], [], ["a"], [None], [1.5], [True]],
}
N = len(VALUES["f"])


def column(name: str) -> list[Any]:
    return VALUES[name]


@pytest.mark.parametrize("template", [
    "{{ f }}",
    "{{ i }}",
    "{{ f }}|{{ i }}",
    "{{ maybe }}",
    "{{ b }}",
    "{{ s }}",
    "{{ d }}",
    "{{ lst }}",
    "{{ person }}",
    "{{ person.first_name }} {{ person.last_name }}",
    "{{ person.address.city }}",
    "prefix {{ s }} middle {{ i }} suffix\n",
    "no variables at all",
    "",
])
def test_fast_path_renders_exactly_what_jinja_renders(template: str) -> None:
    assert _fast_plan(template) is not None
    assert _fast_plan(template + JINJA_ONLY) is None
    fast = render_column(template, N, column)
    slow = render_column(template + JINJA_ONLY, N, column)
    assert fast == slow


@pytest.mark.parametrize("template", [
    "{{ s | upper }}",
    "{{ f | round(1) }}",
    "{{ person['first_name'] }}",
    "{{ i + 1 }}",
    "{% for x in lst %}{{ x }};{% endfor %}",
    "{{ 'yes' if b else 'no' }}",
    "{{ person.items }}",  # the dict method, as Jinja resolves it, not the 'items' key
    "{{ person.keys }}",
])
def test_templates_beyond_plain_substitution_use_jinja(template: str) -> None:
    assert _fast_plan(template) is None
    rendered = render_column(template, N, column)
    assert len(rendered) == N


def test_filters_fall_back_to_jinja_and_render_the_same_values() -> None:
    assert render_column("{{ s | upper }}", N, column) == [s.upper() for s in VALUES["s"]]
    assert render_column("{{ person['items'] }}", N, column) == [str(i) for i in range(6)]


def preview(mill: gm.Mill, *columns: dict[str, Any], n: int = 20, seed: pd.DataFrame | None = None) -> pd.DataFrame:
    builder = gm.ConfigBuilder()
    if seed is not None:
        builder.with_seed_dataset(seed)
    for spec in columns:
        builder.add_column(**spec)
    return mill.preview(builder.build(), num_records=n)


def expr(name: str, template: str, dtype: str = "str") -> dict[str, Any]:
    return {"name": name, "column_type": "expression", "expr": template, "dtype": dtype}


def test_struct_fields_of_a_person_render_alike_on_both_paths(mill: gm.Mill) -> None:
    person = {"name": "p", "column_type": "sampler", "sampler_type": "person", "params": {"locale": "en_US"}}
    frame = preview(mill, person,
                    expr("fast", "{{ p.first_name }} {{ p.last_name }} ({{ p.age }})"),
                    expr("slow", "{{ p.first_name }} {{ p.last_name }} ({{ p.age }})" + JINJA_ONLY),
                    expr("by_key", "{{ p['first_name'] }} {{ p['last_name'] }} ({{ p['age'] }})"), n=120)
    assert frame["fast"].tolist() == frame["slow"].tolist() == frame["by_key"].tolist()
    assert all(name.strip() for name in frame["fast"])


def test_seed_values_render_alike_on_both_paths(mill: gm.Mill) -> None:
    seed = pd.DataFrame({"price": [9.99, 10.0, 0.1 + 0.2, None], "qty": [1, 2, 3, 4],
                         "tags": [["a"], [], ["b", "c"], None]})
    frame = preview(mill, expr("fast", "{{ price }}/{{ qty }}/{{ tags }}"),
                    expr("slow", "{{ price }}/{{ qty }}/{{ tags }}" + JINJA_ONLY), seed=seed, n=8)
    assert frame["fast"].tolist() == frame["slow"].tolist()


@pytest.mark.parametrize(("template", "dtype", "expected", "kind"), [
    ("{{ v * 2 }}", "int", [2, 4, 6, 8], "i"),
    ("{{ v }}.0", "int", [1, 2, 3, 4], "i"),
    (" {{ v }} ", "int", [1, 2, 3, 4], "i"),
    ("{{ v / 2 }}", "float", [0.5, 1.0, 1.5, 2.0], "f"),
    ("{{ v > 2 }}", "bool", [False, False, True, True], "b"),
    ("{{ 'yes' if v % 2 else 'no' }}", "bool", [True, False, True, False], "b"),
    ("{{ v }}", "str", ["1", "2", "3", "4"], "O"),
])
def test_dtype_casts(mill: gm.Mill, template: str, dtype: str, expected: list[Any], kind: str) -> None:
    frame = preview(mill, expr("out", template, dtype), seed=pd.DataFrame({"v": [1, 2, 3, 4]}), n=4)
    assert frame["out"].tolist() == expected
    assert frame["out"].dtype.kind == kind


def test_cast_types_survive_the_parquet_round_trip(mill: gm.Mill) -> None:
    cfg = (gm.ConfigBuilder()
           .add_column(name="v", column_type="sampler", sampler_type="uniform",
                       params={"low": 1, "high": 9, "integer": True})
           .add_column(**expr("as_int", "{{ v * 3 }}", "int"))
           .add_column(**expr("as_float", "{{ v }}.25", "float"))
           .add_column(**expr("as_bool", "{{ v > 4 }}", "bool"))
           .build())
    frame = mill.create(cfg, num_records=60).load_dataset()
    assert frame["as_int"].dtype == np.int64
    assert frame["as_float"].dtype == np.float64
    assert frame["as_bool"].dtype == np.bool_
    assert (frame["as_int"] == frame["v"] * 3).all()
    assert (frame["as_float"] == frame["v"] + 0.25).all()
    assert (frame["as_bool"] == (frame["v"] > 4)).all()


@pytest.mark.parametrize(("template", "dtype", "shown"), [
    ("n{{ v }}", "int", "'n1'"),
    ("{{ v }}.5", "int", "'1.5'"),  # truncating 1.5 to 1 would lose data silently
    ("{{ v }}x", "float", "'1x'"),
    ("maybe", "bool", "'maybe'"),
])
def test_failed_cast_names_the_column_and_value(mill: gm.Mill, template: str, dtype: str, shown: str) -> None:
    with pytest.raises(gm.GenerationError) as info:
        preview(mill, expr("casted", template, dtype), seed=pd.DataFrame({"v": [1, 2]}), n=2)
    message = str(info.value)
    assert "'casted'" in message
    assert shown in message
    assert dtype in message


@pytest.mark.parametrize("template", [
    "{{ ''.__class__ }}",
    "{{ v.__class__ }}",
    "{{ v.__class__.__mro__ }}",
    "{{ s.__len__ }}",
    "{{ v.real.__class__ }}",
    "{{ (s.__class__ ~ '') | upper }}",
])
def test_sandbox_blocks_dunder_access_on_every_path(mill: gm.Mill, template: str) -> None:
    with pytest.raises(gm.GenerationError) as info:
        preview(mill, expr("sneaky", template), seed=pd.DataFrame({"v": [1], "s": ["a"]}), n=1)
    assert "'sneaky'" in str(info.value)
    assert "unsafe" in str(info.value)


def test_sandbox_blocks_mutation(mill: gm.Mill) -> None:
    with pytest.raises(gm.GenerationError, match="unsafe"):
        preview(mill, expr("m", "{{ l.append(1) }}"), seed=pd.DataFrame({"l": [[1]]}), n=1)


@pytest.mark.parametrize(("template", "error"), [
    ("{{ 1 // (v - 70) }}", "ZeroDivisionError"),
    ("{{ v + 'a' if v == 70 else v }}", "TypeError"),
    ("{{ v.nope if v == 70 else v }}", "has no attribute 'nope'"),
])
def test_template_errors_name_the_column_and_dataset_row(mill: gm.Mill, template: str, error: str) -> None:
    # Row 70 lies in the second batch (batch_size 50): the row number must be dataset-wide.
    with pytest.raises(gm.GenerationError) as info:
        preview(mill, expr("broken", template), seed=pd.DataFrame({"v": range(100)}), n=100)
    message = str(info.value)
    assert "'broken'" in message
    assert "row 70" in message
    assert error in message


def test_unknown_filter_is_a_config_error_at_build_time() -> None:
    with pytest.raises(gm.ConfigError, match="no_such_filter"):
        gm.ConfigBuilder().add_column(**expr("x", "{{ 1 | no_such_filter }}"))


def test_jinja_globals_are_not_columns(mill: gm.Mill) -> None:
    frame = preview(mill, expr("r", "{{ range(v) | join(',') }}"), seed=pd.DataFrame({"v": [0, 3]}), n=2)
    assert frame["r"].tolist() == ["", "0,1,2"]

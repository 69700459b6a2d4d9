"""Sampler columns: config validation, dtypes, distributions, determinism, conditions, person, uuid."""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from gristmill.config.samplers import SAMPLER_PARAMS, SamplerColumn, parse_condition
from gristmill.errors import ConfigError
from gristmill.sampling import PERSON_FIELDS, sample_columns, validate_sampler_columns

N = 20_000
HAS_SCIPY = importlib.util.find_spec("scipy") is not None
# Drawing from a scipy distribution needs the scipy extra; validating a config never does.
needs_scipy = pytest.mark.skipif(not HAS_SCIPY, reason="needs scipy (pip install 'gristmill[scipy]')")


def with_scipy(*values: Any) -> Any:
    return pytest.param(*values, marks=needs_scipy)


def col(name: str, sampler_type: str, conditional: dict[str, Any] | None = None,
        **params: Any) -> SamplerColumn:
    return SamplerColumn(name=name, sampler_type=sampler_type, params=params,
                         conditional_params=conditional or {})


def run(*columns: SamplerColumn, n: int = N, seed: int = 1, batch: int = 0,
        context: dict[str, Any] | None = None) -> dict[str, Any]:
    return sample_columns(columns, num_rows=n, run_seed=seed, batch_index=batch, context=context)


CATEGORY = col("category", "category", values=["books", "toys", "food"], weights=[0.5, 0.3, 0.2])


# ------------------------------------------------------------------------------------------- dtypes

@pytest.mark.parametrize(("sampler_type", "params", "kind"), [
    ("uuid", {}, "O"),
    ("category", {"values": ["a", "b"]}, "O"),
    ("category", {"values": [1, 2, 3]}, "i"),
    ("category", {"values": [1, 2.5]}, "f"),
    ("uniform", {"low": 0, "high": 1}, "f"),
    ("uniform", {"low": 0, "high": 10, "integer": True}, "i"),
    ("gaussian", {"mean": 0, "stddev": 1}, "f"),
    ("bernoulli", {"p": 0.3}, "b"),
    ("bernoulli_mixture", {"p": 0.3, "dist_name": "lognormal", "dist_params": {"mean": 1}}, "f"),
    ("binomial", {"n": 10, "p": 0.3}, "i"),
    ("poisson", {"mean": 4}, "i"),
    with_scipy("scipy", {"dist_name": "beta", "dist_params": {"a": 2, "b": 5}}, "f"),
    with_scipy("scipy", {"dist_name": "poisson", "dist_params": {"mu": 3}}, "i"),
    ("datetime", {"start": "2024-01-01", "end": "2024-02-01"}, "M"),
])
def test_shape_and_dtype(sampler_type: str, params: dict[str, Any], kind: str) -> None:
    values = run(col("x", sampler_type, **params), n=1000)["x"]
    assert isinstance(values, np.ndarray)
    assert values.shape == (1000,)
    assert values.dtype.kind == kind
    if kind in "if":
        assert values.dtype.itemsize == 8
    if kind == "M":
        assert values.dtype == np.dtype("datetime64[s]")


def test_every_registered_sampler_has_a_draw_function() -> None:
    from gristmill.sampling import DRAW_FUNCTIONS

    assert set(SAMPLER_PARAMS) == set(DRAW_FUNCTIONS)


def test_zero_rows() -> None:
    out = run(CATEGORY, col("price", "uniform", {"category == 'books'": {"low": 5}}, low=1, high=9), n=0)
    assert len(out["category"]) == 0 and len(out["price"]) == 0


# ------------------------------------------------------------------------------------------- distributions

def test_uniform_bounds_mean_and_rounding() -> None:
    values = run(col("x", "uniform", low=10, high=20, decimal_places=2))["x"]
    assert values.min() >= 10 and values.max() <= 20
    assert abs(values.mean() - 15) < 0.1
    np.testing.assert_array_equal(values, np.round(values, 2))


def test_uniform_integer_covers_both_ends() -> None:
    values = run(col("x", "uniform", low=1, high=6, integer=True))["x"]
    assert set(np.unique(values)) == {1, 2, 3, 4, 5, 6}


@pytest.mark.parametrize(("sampler_type", "params", "mean", "tolerance"), [
    ("gaussian", {"mean": 50, "stddev": 10}, 50, 0.3),
    ("bernoulli", {"p": 0.3}, 0.3, 0.015),
    ("binomial", {"n": 20, "p": 0.25}, 5, 0.1),
    ("poisson", {"mean": 4}, 4, 0.1),
    with_scipy("scipy", {"dist_name": "beta", "dist_params": {"a": 2, "b": 6}}, 0.25, 0.01),
    ("bernoulli_mixture", {"p": 0.4, "dist_name": "normal", "dist_params": {"loc": 10, "scale": 1}}, 4, 0.15),
    with_scipy("bernoulli_mixture", {"p": 0.4, "dist_name": "expon", "dist_params": {"scale": 5}}, 2, 0.15),
])
def test_distribution_means(sampler_type: str, params: dict[str, Any], mean: float, tolerance: float) -> None:
    values = run(col("x", sampler_type, **params))["x"]
    assert abs(values.mean() - mean) < tolerance


def test_gaussian_stddev() -> None:
    values = run(col("x", "gaussian", mean=0, stddev=3, decimal_places=1))["x"]
    assert abs(values.std() - 3) < 0.1
    np.testing.assert_array_equal(values, np.round(values, 1))


def test_bernoulli_mixture_zero_share() -> None:
    values = run(col("x", "bernoulli_mixture", p=0.25, dist_name="lognormal", dist_params={"mean": 0}))["x"]
    assert abs((values == 0).mean() - 0.75) < 0.015


def test_category_frequencies_follow_weights() -> None:
    values = run(CATEGORY)["category"]
    assert all(isinstance(v, str) for v in values[:100])
    for value, weight in [("books", 0.5), ("toys", 0.3), ("food", 0.2)]:
        assert abs((values == value).mean() - weight) < 0.015


def test_category_without_weights_is_uniform() -> None:
    values = run(col("x", "category", values=["a", "b", "c", "d"]))["x"]
    for value in "abcd":
        assert abs((values == value).mean() - 0.25) < 0.015


def test_datetime_range_and_units() -> None:
    out = run(col("day", "datetime", start="2024-01-01", end="2024-01-31"),
              col("month", "datetime", start="2020-01-15", end="2021-12-31", unit="M"),
              col("second", "datetime", start="2024-01-01T00:00:00", end="2024-01-01T00:00:59", unit="s"))
    days = out["day"]
    assert days.min() >= np.datetime64("2024-01-01") and days.max() <= np.datetime64("2024-01-31")
    assert (days == days.astype("datetime64[D]")).all()
    assert len(np.unique(days)) == 31
    months = out["month"]
    assert (months == months.astype("datetime64[M]")).all()
    assert len(np.unique(out["second"])) == 60


def test_timedelta_within_range_of_reference() -> None:
    out = run(col("start", "datetime", start="2024-01-01", end="2024-12-31", unit="h"),
              col("end", "timedelta", dt_min=2, dt_max=10, unit="h", reference_column_name="start"))
    hours = (out["end"] - out["start"]).astype("timedelta64[h]").astype(np.int64)
    assert hours.min() == 2 and hours.max() == 10


def test_timedelta_reference_from_context() -> None:
    seed_dates = np.array(["2024-05-01"] * 100, dtype="datetime64[D]")
    column = col("due", "timedelta", dt_min=-3, dt_max=3, reference_column_name="ordered")
    out = run(column, n=100, context={"ordered": seed_dates, "unrelated": ["x"] * 100})
    days = (out["due"] - seed_dates.astype("datetime64[s]")).astype("timedelta64[D]").astype(np.int64)
    assert days.min() >= -3 and days.max() <= 3


def test_subcategory_membership() -> None:
    options = {"books": ["novel", "poetry"], "toys": ["lego"], "food": ["bread", "cheese", "jam"]}
    out = run(CATEGORY, col("sub", "subcategory", category="category", values=options))
    for parent, child in zip(out["category"][:2000], out["sub"][:2000], strict=True):
        assert child in options[parent]
    assert set(out["sub"]) == {v for vs in options.values() for v in vs}


@pytest.mark.parametrize(("values", "options"), [
    ([1.0, 2.0], {"1.0": ["low"], "2.0": ["high"]}),
    ([1.0, 2.0], {1: ["low"], 2: ["high"]}),  # YAML ``1:`` keys for float parents
    ([1, 2], {1: ["low"], 2.0: ["high"]}),
    ([1, 2.5], {1: ["low"], 2.5: ["high"]}),  # ints and floats mix: the column is float
    ([True, False], {True: ["low"], False: ["high"]}),  # YAML ``true:`` keys
    ([True, False], {"true": ["low"], "FALSE": ["high"]}),
])
def test_subcategory_keys_match_parent_values(values: list[Any], options: dict[Any, list[str]]) -> None:
    parent = col("level", "category", values=values)
    child = col("label", "subcategory", category="level", values=options)
    assert all(isinstance(key, str) for key in child.params.values)  # type: ignore[attr-defined]
    validate_sampler_columns([parent, child])
    out = run(parent, child, n=500)
    np.testing.assert_array_equal(out["label"], np.where(out["level"] == values[0], "low", "high").astype(object))


def test_subcategory_keys_from_yaml() -> None:
    import gristmill as gm

    config = gm.DatasetConfig.from_yaml("""
columns:
  - {name: level, column_type: sampler, sampler_type: category, params: {values: [1.0, 2.0]}}
  - name: label
    column_type: sampler
    sampler_type: subcategory
    params: {category: level, values: {1.0: [low], 2.0: [high]}}
""")
    columns = [c for c in config.columns if isinstance(c, SamplerColumn)]
    assert list(columns[1].params.values) == ["1.0", "2.0"]  # type: ignore[attr-defined]
    out = run(*columns, n=200)
    assert set(out["label"]) == {"low", "high"}


def test_subcategory_of_numbers_has_a_numeric_dtype() -> None:
    out = run(CATEGORY, col("shelf", "subcategory", category="category",
                            values={"books": [1, 2], "toys": [3], "food": [4.5]}), n=500)
    assert out["shelf"].dtype == np.float64
    assert set(np.unique(out["shelf"])) <= {1.0, 2.0, 3.0, 4.5}


def test_subcategory_of_numeric_category() -> None:
    out = run(col("level", "category", values=[1, 2]),
              col("label", "subcategory", category="level", values={"1": ["low"], "2": ["high"]}), n=500)
    np.testing.assert_array_equal(out["label"], np.where(out["level"] == 1, "low", "high").astype(object))


# ------------------------------------------------------------------------------------------- determinism

ALL_TYPES = [
    CATEGORY,
    col("price", "uniform", {"category == 'books'": {"low": 5, "high": 30}}, low=1, high=100,
        decimal_places=2),
    col("id", "uuid"),
    col("when", "datetime", start="2020-01-01", end="2024-12-31", unit="s"),
    col("later", "timedelta", dt_min=0, dt_max=30, reference_column_name="when"),
    *([col("beta", "scipy", dist_name="beta", dist_params={"a": 2, "b": 2})] if HAS_SCIPY else []),
    col("person", "person"),
]


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, pa.Array):
        return bool(a.equals(b))
    return bool(np.array_equal(a, b))


def test_same_seed_and_batch_is_identical() -> None:
    first, second = run(*ALL_TYPES, n=2000), run(*ALL_TYPES, n=2000)
    assert all(_equal(first[name], second[name]) for name in first)


@pytest.mark.parametrize("change", [{"batch": 1}, {"seed": 2}])
def test_other_batch_or_seed_differs(change: dict[str, int]) -> None:
    first, other = run(*ALL_TYPES, n=2000), run(*ALL_TYPES, n=2000, **change)
    assert not any(_equal(first[name], other[name]) for name in first)


def test_column_values_do_not_depend_on_other_columns() -> None:
    alone = run(col("score", "gaussian", mean=0, stddev=1))["score"]
    together = run(CATEGORY, col("score", "gaussian", mean=0, stddev=1), col("id", "uuid"))["score"]
    np.testing.assert_array_equal(alone, together)


def test_adding_a_sampler_column_keeps_the_existing_ones() -> None:
    # Each column draws from its own stream (run seed, batch, column name), so extending a config
    # with a column, even one that reads existing columns, leaves their values as they were.
    before = run(*ALL_TYPES, n=2000, batch=3)
    extra = [col("aaa", "uniform", {"category == 'toys'": {"low": 5}}, low=0, high=10),
             col("shelf", "subcategory", category="category", values={"books": ["a"], "toys": ["b"], "food": ["c"]}),
             col("zz", "person", locale="ja_JP")]
    after = run(*extra, *ALL_TYPES, n=2000, batch=3)
    assert all(_equal(before[name], after[name]) for name in before)


def test_adding_a_sampler_column_keeps_preview_values(tmp_path: Any) -> None:
    import gristmill as gm

    def config(extra: bool) -> gm.DatasetConfig:
        builder = gm.ConfigBuilder()
        for column in ALL_TYPES:
            builder.add_column(column)
        if extra:
            builder.add_column(name="new", column_type="sampler", sampler_type="gaussian",
                               params={"mean": 0, "stddev": 1})
        return builder.build()

    with gm.Mill(tmp_path, run_config=gm.RunConfig(seed=11, show_progress=False)) as mill:
        before, after = mill.preview(config(False), 50), mill.preview(config(True), 50)
    assert "new" in after.columns
    for name in before.columns:
        assert before[name].astype(str).tolist() == after[name].astype(str).tolist(), name


# ------------------------------------------------------------------------------------------- bad params

@pytest.mark.parametrize(("sampler_type", "params", "message"), [
    ("uniform", {"low": 5, "high": 1}, "low (5.0) must not exceed high"),
    ("uniform", {"low": 1.2, "high": 1.8, "integer": True}, "no integer"),
    ("uniform", {"low": 1}, "high"),
    ("uniform", {"low": 1, "high": 2, "decimal_places": -1}, "decimal_places"),
    ("category", {"values": []}, "values"),
    ("category", {"values": ["a", "b"], "weights": [1]}, "weights has 1 entries"),
    ("category", {"values": ["a", "b"], "weights": [1, -1]}, "non-negative"),
    ("subcategory", {"category": "c", "values": {"a": []}}, "empty subcategory"),
    ("gaussian", {"mean": 0, "stddev": 0}, "stddev"),
    ("bernoulli", {"p": 1.5}, "p"),
    ("binomial", {"n": -1, "p": 0.5}, "n"),
    ("binomial", {"n": 3, "p": -0.1}, "p"),
    ("poisson", {"mean": -2}, "mean"),
    ("scipy", {"dist_name": "not_a_dist"}, "unknown scipy.stats distribution 'not_a_dist'"),
    ("scipy", {"dist_name": "norm", "dist_params": {"bogus": 1}}, "rejects dist_params"),
    ("bernoulli_mixture", {"p": 0.5, "dist_name": "normal", "dist_params": {"scale": -1}},
     "rejects dist_params"),
    ("datetime", {"start": "2024-02-01", "end": "2024-01-01"}, "must not be after end"),
    ("datetime", {"start": "yesterday", "end": "2024-01-01"}, "ISO 8601"),
    ("datetime", {"start": "2024-01-01", "end": "2024-01-02", "unit": "W"}, "unit"),
    ("timedelta", {"dt_min": 5, "dt_max": 1, "reference_column_name": "d"}, "dt_min (5) must not exceed"),
    ("person", {"locale": "xx_XX"}, "unknown Faker locale"),
    ("person", {"age_range": [30, 20]}, "age_range"),
    ("person", {"sex": "Other"}, "sex"),
    ("uuid", {"length": 8}, "length"),
    # Non-finite and absurd params: config errors, not OverflowError/ValueError mid-run.
    ("uniform", {"low": 0, "high": float("inf")}, "finite number"),
    ("uniform", {"low": float("nan"), "high": 1}, "finite number"),
    ("uniform", {"low": -1e308, "high": 1e308}, "too large for a float"),
    ("uniform", {"low": 0, "high": 1e30, "integer": True}, "within int64"),
    ("uniform", {"low": -1e30, "high": 0, "integer": True}, "within int64"),
    ("uniform", {"low": 0, "high": 1, "decimal_places": 16}, "decimal_places"),
    ("gaussian", {"mean": float("nan"), "stddev": 1}, "finite number"),
    ("gaussian", {"mean": 0, "stddev": float("inf")}, "finite number"),
    ("gaussian", {"mean": 0, "stddev": 1, "decimal_places": 400}, "decimal_places"),
    ("bernoulli", {"p": float("nan")}, "finite number"),
    ("binomial", {"n": 10**30, "p": 0.5}, "n"),
    ("poisson", {"mean": 1e30}, "less than or equal to 1000000000000000000"),
    ("poisson", {"mean": float("inf")}, "finite number"),
    ("category", {"values": [1, 2], "weights": [1, float("nan")]}, "finite number"),
    ("category", {"values": [1, 2], "weights": [1, float("inf")]}, "finite number"),
    ("category", {"values": [1, 2], "weights": [1e308, 1e308]}, "positive, finite sum"),
    ("category", {"values": [1, float("nan")]}, "finite number"),
    ("category", {"values": [1, "1"]}, "values mix numbers and strs"),
    ("category", {"values": [True, 1]}, "values mix bools and numbers"),
    ("subcategory", {"category": "c", "values": {"a": [1, "x"]}}, "subcategory values mix"),
    ("subcategory", {"category": "c", "values": {1: ["x"], "1": ["y"]}}, "the key '1' twice"),
    ("scipy", {"dist_name": "norm", "dist_params": {"loc": float("inf")}}, "finite number"),
    ("scipy", {"dist_name": "beta", "dist_params": {"a": 2, "b": 2}, "decimal_places": 16}, "decimal_places"),
    ("bernoulli_mixture", {"p": 0.5, "dist_name": "normal", "dist_params": {"loc": float("nan")}},
     "finite number"),
    ("timedelta", {"dt_min": 0, "dt_max": 10**12, "reference_column_name": "d"}, "within 10,000 years"),
    ("timedelta", {"dt_min": -(10**30), "dt_max": 0, "unit": "s", "reference_column_name": "d"},
     "within 10,000 years"),
    ("person", {"age_range": [0, 500]}, "max <= 120"),
    ("person", {"reference_date": "yesterday"}, "reference_date must be an ISO 8601 date"),
    ("person", {"reference_date": "2025-02-30"}, "reference_date must be an ISO 8601 date"),
    ("person", {"reference_date": "0100-01-01"}, "too early"),
])
def test_bad_params_fail_at_config_time(sampler_type: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        SamplerColumn(name="x", sampler_type=sampler_type, params=params)


def test_absurd_params_are_config_errors_in_a_dataset_config() -> None:
    import gristmill as gm

    for params in [{"mean": 1e30}, {"mean": float("nan")}]:
        with pytest.raises(ConfigError, match=r"columns\[0\]\.params\.mean"):
            gm.ConfigBuilder().add_column(name="x", column_type="sampler", sampler_type="poisson",
                                          params=params).build()


@pytest.mark.parametrize(("sampler_type", "params"), [
    ("uniform", {"low": -(2**62), "high": 2**62, "integer": True}),
    ("binomial", {"n": 2**62, "p": 0.5}),
    ("poisson", {"mean": 1e18}),
    ("uniform", {"low": 0, "high": 1, "decimal_places": 15}),
    ("person", {"age_range": [0, 120], "reference_date": "1900-06-30"}),
    ("timedelta", {"dt_min": -(10**5), "dt_max": 10**5, "reference_column_name": "d"}),
])
def test_params_at_the_limits_draw(sampler_type: str, params: dict[str, Any]) -> None:
    context = {"d": np.array(["2024-01-01"] * 100, dtype="datetime64[s]")}
    values = run(col("x", sampler_type, **params), n=100, context=context)["x"]
    assert len(values) == 100


def test_person_reference_date_is_normalised() -> None:
    column = col("p", "person", reference_date="20240229")
    assert column.params.reference_date == "2024-02-29"  # type: ignore[attr-defined]
    people = run(column, n=200)["p"]
    assert max(people.field("birth_date").to_pylist()).isoformat() <= "2024-02-29"


def test_mixed_kinds_across_conditions_are_config_errors() -> None:
    with pytest.raises(ValidationError, match="gives str values but params gives number values"):
        col("size", "category", {"category == 'books'": {"values": ["S"]}}, values=[1, 2])


def test_unknown_sampler_type_lists_known_ones() -> None:
    with pytest.raises(ValidationError, match="unknown sampler_type 'gauss'.*gaussian.*uniform"):
        SamplerColumn(name="x", sampler_type="gauss", params={})


def test_bad_conditional_override_names_condition() -> None:
    with pytest.raises(ValidationError, match=r"conditional_params\[\"c == 'a'\"\].*low"):
        col("x", "uniform", {"c == 'a'": {"low": 50}}, low=1, high=10)


# ------------------------------------------------------------------------------------------- conditions

def test_conditional_params_apply_to_matching_rows() -> None:
    price = col("price", "uniform", {"category == 'books'": {"low": 5, "high": 30}}, low=1, high=100,
                decimal_places=2)
    out = run(CATEGORY, price)
    books = out["category"] == "books"
    assert out["price"][books].min() >= 5 and out["price"][books].max() <= 30
    assert out["price"][~books].max() > 90
    np.testing.assert_array_equal(out["price"], np.round(out["price"], 2))  # override keeps decimal_places


def test_conditions_in_and_not_equal_first_match_wins() -> None:
    size = col("size", "category", {"category in ['books', 'toys']": {"values": ["S"]},
                                    "category != 'toys'": {"values": ["M"]}}, values=["L"])
    out = run(CATEGORY, size)
    expected = np.where(np.isin(out["category"], ["books", "toys"]), "S", "M")
    np.testing.assert_array_equal(out["size"].astype(str), expected)


def test_condition_on_context_column() -> None:
    tier = np.array(["gold", "basic"] * 50, dtype=object)
    column = col("discount", "uniform", {"tier == 'gold'": {"low": 20, "high": 30}}, low=0, high=5)
    out = run(column, n=100, context={"tier": tier})
    assert out["discount"][tier == "gold"].min() >= 20 and out["discount"][tier == "basic"].max() <= 5


def test_conditional_person_sex() -> None:
    person = col("person", "person", {"category == 'toys'": {"sex": "Female"}}, sex="Male")
    out = run(CATEGORY, person, n=3000)
    sexes = np.array(out["person"].field("sex").to_pylist())
    np.testing.assert_array_equal(sexes == "Female", out["category"] == "toys")


@pytest.mark.parametrize(("text", "column", "operator", "value"), [
    ("category == 'books'", "category", "==", "books"),
    ("n != 3", "n", "!=", 3),
    ("flag == True", "flag", "==", True),
    ("city in ['a', 'b']", "city", "in", ("a", "b")),
    ("city not in ('a',)", "city", "not in", ("a",)),
])
def test_parse_condition(text: str, column: str, operator: str, value: Any) -> None:
    condition = parse_condition(text)
    assert (condition.column, condition.operator, condition.value) == (column, operator, value)


@pytest.mark.parametrize("text", ["category = 'books'", "category == books", "category in 'books'", "== 3"])
def test_bad_conditions(text: str) -> None:
    with pytest.raises(ValueError, match="condition"):
        parse_condition(text)


def test_required_columns() -> None:
    assert col("s", "subcategory", category="c", values={"a": ["x"]}).required_columns() == {"c"}
    assert col("t", "timedelta", dt_min=0, dt_max=1, reference_column_name="d").required_columns() == {"d"}
    assert col("p", "uniform", {"tier == 'a'": {}}, low=0, high=1).required_columns() == {"tier"}


def test_fingerprint_keeps_the_order_of_conditions() -> None:
    # The first matching condition wins, so reordering conditions changes the data; the payload
    # keeps them as an ordered list (canonical JSON would sort a mapping's keys).
    conditions = {"category == 'books'": {"low": 10, "high": 20}, "category in ['books', 'toys']": {"low": 50}}
    first = col("x", "uniform", conditions, low=0, high=100)
    reordered = col("x", "uniform", dict(reversed(conditions.items())), low=0, high=100)
    out_first, out_reordered = run(CATEGORY, first, n=500), run(CATEGORY, reordered, n=500)
    assert not np.array_equal(out_first["x"], out_reordered["x"])
    assert first.fingerprint_payload() != reordered.fingerprint_payload()
    payload = first.fingerprint_payload()["conditional_params"]
    assert [text for text, _ in payload] == list(conditions)
    assert payload[0][1] == {"low": 10.0, "high": 20.0, "decimal_places": None, "integer": False}


def test_config_round_trip() -> None:
    for column in ALL_TYPES:
        again = SamplerColumn.model_validate(column.model_dump(mode="json"))
        assert again == column
        assert again.fingerprint_payload() == column.fingerprint_payload()
    assert ALL_TYPES[1].fingerprint_payload()["params"]["decimal_places"] == 2


# ------------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize(("columns", "message"), [
    ([col("s", "subcategory", category="c", values={"a": ["x"]})], "reads column 'c'"),
    ([col("c", "uniform", low=0, high=1), col("s", "subcategory", category="c", values={"a": ["x"]})],
     "must be a category sampler"),
    ([CATEGORY, col("s", "subcategory", category="category", values={"books": ["x"]})], "['food', 'toys']"),
    ([col("a", "uniform", {"b == 1": {}}, low=0, high=1), col("b", "uniform", {"a == 1": {}}, low=0, high=1)],
     "cycle"),
    ([col("a", "uuid"), col("a", "uuid")], "two sampler columns are named 'a'"),
    ([col("u", "uuid"), col("t", "timedelta", dt_min=0, dt_max=1, reference_column_name="u")],
     "not a datetime one"),
    ([col("p", "person"), col("x", "uniform", {"p == 1": {}}, low=0, high=1)], "person column"),
    ([col("level", "category", values=[1.0, 2.0]),
      col("s", "subcategory", category="level", values={"1.0": ["x"], "3": ["y"]})],
     "subcategory column 's': no subcategories for values ['2.0'] of 'level'"),
    ([col("level", "category", {"category == 'toys'": {"values": [1, 2, 3]}}, values=[1, 2]), CATEGORY,
      col("s", "subcategory", category="level", values={"1": ["x"], "2": ["y"]})], "values ['3'] of 'level'"),
    ([CATEGORY, col("x", "uniform", {"category == 'book'": {"low": 5}}, low=0, high=10)],
     "sampler column 'x': condition on 'category' compares with ['book']"),
    ([CATEGORY, col("x", "uniform", {"category not in ['books', 'tyos']": {"low": 5}}, low=0, high=10)],
     "compares with ['tyos']"),
])
def test_validate_sampler_columns(columns: list[SamplerColumn], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_sampler_columns(columns)


def test_validate_accepts_known_columns() -> None:
    validate_sampler_columns([col("x", "uniform", {"seed_col == 'a'": {}}, low=0, high=1)],
                             known_columns={"seed_col"})


def _engine_call(columns: list[SamplerColumn], constraints: list[Any]) -> None:
    # As engine.batches.check_columns may call it: seed columns, and generated names too.
    seed_columns = ["seed_a"]
    generated = [c.name for c in columns] + ["label"]
    validate_sampler_columns(columns, constraints, known_columns=set(seed_columns) | set(generated))


def test_validate_with_the_engine_call() -> None:
    from gristmill.config.samplers import ColumnInequality, ScalarInequality

    price = col("price", "uniform", low=0, high=10)
    _engine_call([CATEGORY, price], [ColumnInequality(target_column="price", operator="<", rhs_column="seed_a")])
    with pytest.raises(ConfigError, match="target_column 'cost' is not a sampler column"):
        _engine_call([price], [ScalarInequality(target_column="cost", operator=">", rhs=1)])
    with pytest.raises(ConfigError, match="rhs_column 'budget' is not a sampler or seed column"):
        _engine_call([price], [ColumnInequality(target_column="price", operator="<", rhs_column="budget")])
    with pytest.raises(ConfigError, match=r"subcategory column 'sub': no subcategories for values \['food'\]"):
        _engine_call([CATEGORY, col("sub", "subcategory", category="category",
                                    values={"books": ["a"], "toys": ["b"]})], [])


@pytest.mark.parametrize(("add", "message"), [
    (lambda b: b.add_column(name="sub", column_type="sampler", sampler_type="subcategory",
                            params={"category": "cat", "values": {"a": ["x"]}}),
     "subcategory column 'sub': no subcategories for values ['b'] of 'cat'"),
    (lambda b: b.add_constraint(constraint_type="scalar_inequality", target_column="zz", operator="<", rhs=1),
     "target_column 'zz' is not a sampler column"),
    (lambda b: b.add_constraint(constraint_type="column_inequality", target_column="x", operator="<",
                                rhs_column="label"), "rhs_column 'label' is not a sampler or seed column"),
    (lambda b: b.add_column(name="y", column_type="sampler", sampler_type="uniform", params={"low": 0, "high": 1},
                            conditional_params={"cat == 'c'": {"low": 0.5}}), "compares with ['c']"),
])
def test_static_problems_fail_engine_checks(add: Any, message: str) -> None:
    import gristmill as gm
    from gristmill.engine.batches import check_columns

    builder = (gm.ConfigBuilder()
               .add_column(name="cat", column_type="sampler", sampler_type="category", params={"values": ["a", "b"]})
               .add_column(name="x", column_type="sampler", sampler_type="uniform", params={"low": 0, "high": 1})
               .add_column(name="label", column_type="expression", expr="{{ cat }}"))
    config = add(builder).build()
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_columns(config, ["seed_a"])


def test_validate_reports_a_missing_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    column = col("x", "scipy", dist_name="beta", dist_params={"a": 2, "b": 2})
    validate_sampler_columns([col("y", "bernoulli_mixture", p=0.5, dist_name="normal")])
    monkeypatch.setitem(__import__("sys").modules, "scipy", None)
    monkeypatch.setitem(__import__("sys").modules, "scipy.stats", None)
    with pytest.raises(ConfigError, match=r"sampler column 'x': the scipy distribution 'beta' needs scipy"):
        validate_sampler_columns([column])
    validate_sampler_columns([col("y", "bernoulli_mixture", p=0.5, dist_name="normal")])  # numpy: fine


# ------------------------------------------------------------------------------------------- uuid

def test_uuid_unique_and_v4_format() -> None:
    values = run(col("id", "uuid"), n=100_000)["id"]
    assert len(set(values)) == 100_000
    pattern = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    assert all(pattern.match(v) for v in values[:5000])


def test_uuid_short_upper_prefix() -> None:
    values = run(col("id", "uuid", short_form=True, uppercase=True, prefix="user-"), n=100_000)["id"]
    assert len(set(values)) == 100_000
    assert all(re.fullmatch(r"user-[0-9A-F]{12}", v) for v in values[:5000])


# ------------------------------------------------------------------------------------------- person

def test_person_fields_plausible() -> None:
    people = run(col("person", "person", age_range=[20, 40]), n=100_000)["person"]
    assert isinstance(people, pa.StructArray)
    assert [people.type.field(i).name for i in range(people.type.num_fields)] == list(PERSON_FIELDS)
    assert len(people) == 100_000
    ages = people.field("age").to_numpy()
    assert ages.min() >= 20 and ages.max() <= 40
    rows = people.slice(0, 2000).to_pylist()
    for row in rows:
        assert row["first_name"] and row["last_name"] and row["city"]
        assert row["sex"] in ("Male", "Female")
        assert re.fullmatch(r"[a-z0-9]+\.[a-z0-9]+\d*@[a-z0-9.-]+", row["email_address"])
        assert re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", row["phone_number"])
        assert re.fullmatch(r"\d{5}", row["zipcode"]) and len(row["state"]) == 2
        years = (2025 - row["birth_date"].year) - ((row["birth_date"].month, row["birth_date"].day) > (1, 1))
        assert years == row["age"]
    assert 0.45 < np.mean([row["sex"] == "Male" for row in rows]) < 0.55
    assert len({row["first_name"] for row in rows}) > 300


def test_person_filters_and_locale() -> None:
    people = run(col("p", "person", locale="de_DE", sex="Female", city=["Berlin", "Hamburg"]), n=500)["p"]
    assert set(people.field("sex").to_pylist()) == {"Female"}
    assert set(people.field("city").to_pylist()) == {"Berlin", "Hamburg"}
    assert all(email.endswith(".de") or "@" in email for email in people.field("email_address").to_pylist())


@pytest.mark.parametrize("locale", ["ja_JP", "zh_CN", "ar_AA", "hi_IN"])
def test_person_emails_of_non_latin_locales_are_diverse(locale: str) -> None:
    people = run(col("p", "person", locale=locale, sex="Female", age_range=[30, 30]), n=20_000)["p"]
    emails = people.field("email_address").to_pylist()
    assert len(set(emails)) / len(emails) > 0.99
    assert all(re.fullmatch(r"[a-z][a-z0-9]{7}@[a-z0-9.-]+", email) for email in emails[:2000])


def test_person_emails_of_latin_locales_come_from_names() -> None:
    from gristmill.sampling.person import email_key, person_pools

    for locale in ["en_US", "de_DE", "fr_FR"]:
        pools = person_pools(locale)
        assert not pools.first_key_missing.any() and not pools.last_key_missing.any()
    people = run(col("p", "person", locale="de_DE"), n=2000)["p"].to_pylist()
    for row in people:
        assert row["email_address"].startswith(f"{email_key(row['first_name'])}.{email_key(row['last_name'])}")


def test_person_is_a_struct_column_in_parquet(tmp_path: Any) -> None:
    out = run(col("person", "person"), col("score", "gaussian", mean=0, stddev=1), n=100)
    table = pa.table({"person": out["person"], "score": out["score"]})
    pq.write_table(table, tmp_path / "batch.parquet")
    back = pq.read_table(tmp_path / "batch.parquet")
    assert pa.types.is_struct(back.schema.field("person").type)
    assert back.column("person").to_pylist()[0]["first_name"] == out["person"][0]["first_name"].as_py()


# ------------------------------------------------------------------------------------------- scipy is optional

def _without_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in __import__("sys").modules if m == "scipy" or m.startswith("scipy.")]:
        monkeypatch.delitem(__import__("sys").modules, name)
    monkeypatch.setitem(__import__("sys").modules, "scipy", None)
    monkeypatch.setitem(__import__("sys").modules, "scipy.stats", None)


@pytest.mark.parametrize("blocked", [False, True])
def test_config_validity_does_not_depend_on_scipy(monkeypatch: pytest.MonkeyPatch, blocked: bool) -> None:
    if blocked:
        _without_scipy(monkeypatch)
    col("x", "scipy", dist_name="beta", dist_params={"a": 2, "b": 2})
    col("y", "bernoulli_mixture", p=0.5, dist_name="expon", dist_params={"scale": 2})
    for params, message in [({"dist_name": "not_a_dist"}, "unknown scipy.stats distribution"),
                            ({"dist_name": "norm", "dist_params": {"bogus": 1}}, "unknown parameter(s) ['bogus']"),
                            ({"dist_name": "beta", "dist_params": {"a": 2}}, "missing shape parameter(s) ['b']")]:
        with pytest.raises(ValidationError, match=re.escape(message)):
            col("x", "scipy", **params)


def test_running_a_scipy_sampler_without_scipy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    column = col("x", "scipy", dist_name="beta", dist_params={"a": 2, "b": 2})
    _without_scipy(monkeypatch)
    with pytest.raises(ConfigError, match=re.escape("pip install 'gristmill[scipy]'")):
        run(column, n=10)


def test_scipy_parameter_values_are_checked_before_the_run() -> None:
    pytest.importorskip("scipy")
    column = col("x", "scipy", dist_name="beta", dist_params={"a": -1, "b": 2})  # valid config: names only
    with pytest.raises(ConfigError, match=r"sampler column 'x': scipy distribution 'beta' rejects dist_params"):
        validate_sampler_columns([column])


def test_every_sampler_type_has_a_draw_function() -> None:
    from gristmill.sampling import DRAW_FUNCTIONS

    assert set(SAMPLER_PARAMS) == set(DRAW_FUNCTIONS)


def test_public_names_stay_importable_from_config_samplers() -> None:
    from gristmill.config import samplers

    for name in samplers.__all__:
        assert getattr(samplers, name) is not None

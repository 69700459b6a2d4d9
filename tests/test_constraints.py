"""Constraints: config models, static checks and rejection sampling."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from gristmill.config.samplers import (
    ColumnInequality,
    Constraint,
    SamplerColumn,
    ScalarInequality,
    parse_constraint,
)
from gristmill.errors import ConfigError, ConstraintError
from gristmill.sampling import MAX_REJECTION_ROUNDS, sample_columns

N = 10_000


def col(name: str, sampler_type: str, **params: Any) -> SamplerColumn:
    return SamplerColumn(name=name, sampler_type=sampler_type, params=params)


def run(columns: list[SamplerColumn], constraints: list[Any], *, n: int = N, batch: int = 0,
        context: dict[str, Any] | None = None) -> dict[str, Any]:
    return sample_columns(columns, constraints, num_rows=n, run_seed=3, batch_index=batch, context=context)


PRICE = col("price", "uniform", low=1, high=100, decimal_places=2)


# ------------------------------------------------------------------------------------------- models

def test_constraint_union_parses_by_discriminator() -> None:
    adapter = TypeAdapter(list[Constraint])
    parsed = adapter.validate_python([
        {"constraint_type": "scalar_inequality", "target_column": "a", "operator": "gt", "rhs": 1},
        {"constraint_type": "column_inequality", "target_column": "a", "operator": "<=", "rhs_column": "b"},
    ])
    assert isinstance(parsed[0], ScalarInequality) and parsed[0].operator == ">"
    assert isinstance(parsed[1], ColumnInequality)
    assert adapter.validate_python(adapter.dump_python(parsed, mode="json")) == parsed


def test_parse_constraint_and_errors() -> None:
    assert parse_constraint({"constraint_type": "scalar_inequality", "target_column": "a", "operator": "<",
                             "rhs": 2}).describe() == "a < 2"
    with pytest.raises(ConfigError, match="unknown constraint_type 'range'"):
        parse_constraint({"constraint_type": "range"})
    with pytest.raises(ValidationError, match="operator"):
        ScalarInequality(target_column="a", operator="==", rhs=1)
    with pytest.raises(ValidationError, match="rhs_column"):
        ColumnInequality.model_validate({"target_column": "a", "operator": "<", "rhs": 1})


# ------------------------------------------------------------------------------------------- rejection

def test_scalar_inequality_satisfied() -> None:
    out = run([PRICE], [ScalarInequality(target_column="price", operator=">", rhs=50)])
    assert out["price"].min() > 50 and out["price"].max() <= 100
    np.testing.assert_array_equal(out["price"], np.round(out["price"], 2))


def test_rows_that_already_satisfy_are_untouched() -> None:
    plain = run([PRICE], [])["price"]
    constrained = run([PRICE], [ScalarInequality(target_column="price", operator="<=", rhs=80)])["price"]
    kept = plain <= 80
    np.testing.assert_array_equal(constrained[kept], plain[kept])
    assert not np.array_equal(constrained[~kept], plain[~kept])


def test_column_inequality_between_samplers() -> None:
    columns = [col("low", "uniform", low=0, high=10), col("high", "uniform", low=5, high=15)]
    out = run(columns, [ColumnInequality(target_column="high", operator=">=", rhs_column="low")])
    assert (out["high"] >= out["low"]).all()


def test_column_inequality_against_context_column() -> None:
    budget = np.linspace(20, 80, N)
    out = run([PRICE], [ColumnInequality(target_column="price", operator="<", rhs_column="budget")],
              context={"budget": budget})
    assert (out["price"] < budget).all()


def test_datetime_column_inequality() -> None:
    columns = [col("start", "datetime", start="2024-01-01", end="2024-01-31"),
               col("end", "datetime", start="2024-01-01", end="2024-02-29")]
    out = run(columns, [ColumnInequality(target_column="end", operator=">", rhs_column="start")])
    assert (out["end"] > out["start"]).all()


def test_column_inequality_over_the_same_range_redraws_both_sides() -> None:
    # Redrawing only 'e' cannot fix a row whose 's' is the last day of the range.
    columns = [col("s", "datetime", start="2020-01-01", end="2020-12-31"),
               col("e", "datetime", start="2020-01-01", end="2020-12-31")]
    out = run(columns, [ColumnInequality(target_column="e", operator=">", rhs_column="s")], n=100_000)
    assert (out["e"] > out["s"]).all()
    assert len(out["s"]) == 100_000


def test_redrawing_the_right_hand_side_keeps_satisfied_rows() -> None:
    columns = [col("low", "uniform", low=0, high=10), col("high", "uniform", low=0, high=10),
               col("tag", "category", values=["a", "b"])]
    plain = run(columns, [])
    out = run(columns, [ColumnInequality(target_column="high", operator=">", rhs_column="low")])
    kept = plain["high"] > plain["low"]
    assert 0.4 < kept.mean() < 0.6
    for name in ("low", "high"):
        np.testing.assert_array_equal(out[name][kept], plain[name][kept])
    assert not np.array_equal(out["low"][~kept], plain["low"][~kept])  # the right-hand side moved too
    np.testing.assert_array_equal(out["tag"], plain["tag"])  # columns outside the constraint are untouched
    assert (out["high"] > out["low"]).all()


def test_dependants_of_the_right_hand_side_are_redrawn() -> None:
    columns = [col("start", "datetime", start="2020-01-01", end="2020-12-31"),
               col("due", "timedelta", dt_min=1, dt_max=3, reference_column_name="start"),
               col("end", "datetime", start="2020-01-01", end="2020-12-31")]
    out = run(columns, [ColumnInequality(target_column="end", operator=">", rhs_column="start")])
    assert (out["end"] > out["start"]).all()
    days = (out["due"] - out["start"]).astype("timedelta64[D]").astype(np.int64)
    assert days.min() >= 1 and days.max() <= 3


def test_dependent_columns_are_redrawn_with_their_parent() -> None:
    columns = [col("level", "category", values=[1, 2, 3]),
               col("label", "subcategory", category="level",
                   values={"1": ["one"], "2": ["two"], "3": ["three"]})]
    out = run(columns, [ScalarInequality(target_column="level", operator=">=", rhs=2)])
    assert out["level"].min() >= 2
    names = {2: "two", 3: "three"}
    assert all(names[level] == label for level, label in zip(out["level"], out["label"], strict=True))


def test_constraints_are_deterministic_per_batch() -> None:
    constraint = [ScalarInequality(target_column="price", operator=">", rhs=90)]
    first, again = run([PRICE], constraint), run([PRICE], constraint)
    other = run([PRICE], constraint, batch=1)
    np.testing.assert_array_equal(first["price"], again["price"])
    assert not np.array_equal(first["price"], other["price"])


def test_unsatisfiable_constraint_raises() -> None:
    constraint = ScalarInequality(target_column="price", operator=">", rhs=150)
    with pytest.raises(ConstraintError) as caught:
        run([PRICE], [constraint], n=100)
    message = str(caught.value)
    assert "'price > 150' (100 of 100 rows)" in message
    assert f"after {MAX_REJECTION_ROUNDS} rejection-sampling rounds" in message
    assert "Relax the constraint" in message


def test_rare_constraint_converges() -> None:
    # 1% of draws pass: one candidate per row would leave 82% of rows failing after 20 rounds;
    # doubling the candidates each round satisfies them all.
    column = col("x", "uniform", low=0, high=100)
    out = run([column], [ScalarInequality(target_column="x", operator=">", rhs=99)])
    assert out["x"].min() > 99


def test_nearly_impossible_constraint_fails_with_count() -> None:
    # About 3 in a million draws pass: most of the 1000 rows still fail after the last round.
    gaussian = col("score", "gaussian", mean=0, stddev=1)
    with pytest.raises(ConstraintError, match=r"'score > 4.5' \(\d+ of 1000 rows\)"):
        run([gaussian], [ScalarInequality(target_column="score", operator=">", rhs=4.5)], n=1000)


# ------------------------------------------------------------------------------------------- static checks

@pytest.mark.parametrize(("columns", "constraint", "message"), [
    ([PRICE], ScalarInequality(target_column="cost", operator=">", rhs=1), "'cost' is not a sampler column"),
    ([PRICE], ColumnInequality(target_column="price", operator=">", rhs_column="cost"),
     "rhs_column 'cost' is not a sampler or seed column"),
    ([col("p", "person")], ScalarInequality(target_column="p", operator=">", rhs=1),
     "person values have no order"),
    ([col("d", "datetime", start="2024-01-01", end="2024-02-01")],
     ScalarInequality(target_column="d", operator=">", rhs=1), "'d' holds datetimes, which cannot be compared"),
    ([col("c", "category", values=["a", "b"])], ScalarInequality(target_column="c", operator=">", rhs=1),
     "'c' holds strings, which cannot be compared with a number"),
    ([col("d", "datetime", start="2024-01-01", end="2024-02-01"), PRICE],
     ColumnInequality(target_column="price", operator=">", rhs_column="d"),
     "'price' holds numbers but 'd' holds datetimes"),
    ([col("u", "uuid"), PRICE], ColumnInequality(target_column="price", operator=">", rhs_column="u"),
     "rhs_column 'u' is a uuid column"),
])
def test_bad_constraints_raise_config_error(columns: list[SamplerColumn], constraint: Any,
                                            message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(columns, [constraint], n=10)

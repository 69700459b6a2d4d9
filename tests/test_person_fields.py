"""Person records with the reference tool's fields, ``convert_to`` and comparison conditions."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

import gristmill as gm
from gristmill.config.samplers import PERSON_FIELDS, PersonParams, SamplerColumn, parse_condition
from gristmill.sampling import sample_columns
from gristmill.sampling.person import draw_person


def _sampler(name: str, kind: str, params: dict[str, object], **extra: object) -> SamplerColumn:
    return SamplerColumn(name=name, sampler_type=kind, params=params, **extra)


# -------------------------------------------------------------------------------------------- person

def test_original_fields_keep_the_values_of_earlier_versions() -> None:
    # Pinned from the version before the reference fields: appending fields must not move a value,
    # nor what the same stream draws next (a conditional group's rows come after).
    rng = np.random.default_rng(7)
    rows = draw_person(PersonParams(), 4, rng, {}).to_pylist()
    assert [(r["first_name"], r["last_name"], r["city"], r["email_address"], r["phone_number"]) for r in rows] == [
        ("Kelly", "Johnson", "Gallowaytown", "kelly.johnson70@hotmail.com", "(551) 976-8234"),
        ("Tiffany", "Hubbard", "North Kimberlyfort", "tiffany.hubbard62@yahoo.com", "(229) 572-6292"),
        ("Lisa", "Wade", "Delgadotown", "lisa.wade@yahoo.com", "(312) 846-4413"),
        ("Colton", "Watson", "Jesseberg", "colton.watson98@yahoo.com", "(607) 933-5141")]
    assert rows[0]["birth_date"] == date(1993, 9, 27)
    assert rng.random() == 0.01179402554250586


def test_reference_fields_are_consistent() -> None:
    rows = draw_person(PersonParams(age_range=[10, 40]), 400, np.random.default_rng(1), {}).to_pylist()
    assert list(rows[0]) == list(PERSON_FIELDS)
    assert len({r["uuid"] for r in rows}) == 400
    for row in rows:
        assert row["locale"] == "en_US" and row["country"] == "United States"
        assert row["street_address"] == f"{row['street_number']} {row['street_name']}"
        assert row["postcode"] == row["zipcode"]
        college = row["education_level"] in ("bachelors", "graduate", "doctorate")
        assert (row["bachelors_field"] != "no_degree") == college
        if row["age"] < 18:
            assert (row["marital_status"], row["education_level"]) == ("never_married", "secondary_education")
        assert row["occupation"]
    adults = [r for r in rows if r["age"] >= 18]
    assert len({r["marital_status"] for r in adults}) == 5
    assert len({r["education_level"] for r in adults}) == 6


def test_address_follows_the_locale() -> None:
    row = draw_person(PersonParams(locale="de_DE"), 1, np.random.default_rng(3), {}).to_pylist()[0]
    assert row["street_address"] == f"{row['street_name']} {row['street_number']}"
    assert (row["locale"], row["country"]) == ("de_DE", "Germany")


def test_templates_read_the_new_fields_through_a_run(tmp_path: Path) -> None:
    cfg = (gm.ConfigBuilder()
           .add_column(name="who", column_type="sampler", sampler_type="person", params={"locale": "en_GB"})
           .add_column(name="where", column_type="expression", expr="{{ who.street_address }}, {{ who.city }}")
           .add_column(name="job", column_type="expression", expr="{{ who.occupation }}")
           .build())
    with gm.Mill(tmp_path, run_config=gm.RunConfig(batch_size=10, show_progress=False)) as mill:
        df = mill.create(cfg, num_records=25).load_dataset()
    assert len(df) == 25
    for who, where, job in zip(df["who"], df["where"], df["job"], strict=True):
        assert where == f"{who['street_address']}, {who['city']}" and job == who["occupation"]
        assert who["country"] == "United Kingdom"


def test_person_fingerprint_names_its_fields() -> None:
    # The struct's shape is part of the column's identity: a dataset stored with the ten original
    # fields is not resumed with 21 (two shapes in one dataset).
    person = _sampler("who", "person", {})
    assert person.fingerprint_payload()["person_fields"] == list(PERSON_FIELDS)
    assert "person_fields" not in _sampler("n", "uniform", {"low": 0, "high": 1}).fingerprint_payload()
    before = {"column_type": "969f119ed5324f21", "conditional_params": "4f53cda18c2baa0c",
              "drop": "fcbcf165908dd18a", "name": "46a3ae93aa7a8b98", "params": "8799edd6d215d368",
              "sampler_type": "88bb7a83001f7857"}  # a uniform column before convert_to existed
    cfg = gm.ConfigBuilder().add_column(name="n", column_type="sampler", sampler_type="uniform",
                                        params={"low": 0, "high": 1}).build()
    assert cfg.fingerprint_components()["columns"]["n"] == before


# -------------------------------------------------------------------------------------------- convert_to

def test_convert_to_numbers_and_text() -> None:
    columns = [
        _sampler("a", "uniform", {"low": 0, "high": 10}, convert_to="int"),
        _sampler("b", "poisson", {"mean": 3}, convert_to="float"),
        _sampler("c", "uniform", {"low": 1, "high": 3, "integer": True}, convert_to="str"),
        _sampler("d", "category", {"values": ["1", "2.5"]}, convert_to="float"),
    ]
    out = sample_columns(columns, num_rows=200, run_seed=1, batch_index=0)
    raw = sample_columns([_sampler("a", "uniform", {"low": 0, "high": 10})], num_rows=200, run_seed=1,
                         batch_index=0)["a"]
    assert out["a"].dtype == np.int64 and (out["a"] == np.trunc(raw)).all()
    assert out["b"].dtype == np.float64
    assert set(out["c"]) == {"1", "2", "3"}
    assert set(out["d"]) == {1.0, 2.5}


def test_convert_to_strftime_applies_after_timedelta_reads_the_column() -> None:
    columns = [
        _sampler("start", "datetime", {"start": "2024-03-01", "end": "2024-03-01"}, convert_to="%d/%m/%Y"),
        _sampler("end", "timedelta", {"dt_min": 2, "dt_max": 2, "reference_column_name": "start"},
                 convert_to="str"),
    ]
    out = sample_columns(columns, num_rows=3, run_seed=1, batch_index=0)
    assert list(out["start"]) == ["01/03/2024"] * 3
    assert list(out["end"]) == ["2024-03-03T00:00:00"] * 3


@pytest.mark.parametrize(("kind", "params", "target", "message"), [
    ("person", {}, "str", "does not apply to a person sampler"),
    ("datetime", {"start": "2024-01-01", "end": "2024-02-01"}, "int", "strftime format"),
    ("uniform", {"low": 0, "high": 1}, "%Y", "must be 'int', 'float' or 'str'"),
    ("uuid", {}, "int", "must be 'str'"),
    ("category", {"values": ["a", "b"]}, "int", "are not numbers"),
])
def test_convert_to_mistakes_are_config_errors(kind: str, params: dict[str, object], target: str,
                                                message: str) -> None:
    with pytest.raises(gm.ConfigError, match=message):
        _sampler("x", kind, params, convert_to=target)


# -------------------------------------------------------------------------------------------- comparisons

@pytest.mark.parametrize(("condition", "expected"), [
    ("age > 21", [False, False, True, True]),
    ("age >= 21", [False, True, True, True]),
    ("age < 21", [True, False, False, False]),
    ("age <= 21", [True, True, False, False]),
    ("age != 21", [True, False, True, True]),
    ("age == 21", [False, True, False, False]),
    ("age>40", [False, False, False, True]),
])
def test_comparison_conditions_choose_the_params(condition: str, expected: list[bool]) -> None:
    columns = [_sampler("flag", "category", {"values": ["base"]}, conditional_params={condition: {"values": ["hit"]}})]
    ages = np.array([18, 21, 30, 65])
    out = sample_columns(columns, num_rows=4, run_seed=1, batch_index=0, context={"age": ages})
    assert [value == "hit" for value in out["flag"]] == expected


def test_first_matching_comparison_wins_over_sampled_ages() -> None:
    columns = [
        _sampler("age", "uniform", {"low": 10, "high": 90, "integer": True}),
        _sampler("group", "category", {"values": ["adult"]},
                 conditional_params={"age >= 65": {"values": ["senior"]}, "age < 18": {"values": ["minor"]}}),
    ]
    out = sample_columns(columns, num_rows=500, run_seed=3, batch_index=0)
    expected = np.where(out["age"] >= 65, "senior", np.where(out["age"] < 18, "minor", "adult"))
    assert list(out["group"]) == list(expected)


def test_datetime_columns_compare_with_iso_dates() -> None:
    columns = [
        _sampler("day", "datetime", {"start": "2024-01-01", "end": "2024-12-31"}),
        _sampler("half", "category", {"values": ["H1"]},
                 conditional_params={"day >= '2024-07-01'": {"values": ["H2"]}}),
    ]
    out = sample_columns(columns, num_rows=300, run_seed=2, batch_index=0)
    second = out["day"] >= np.datetime64("2024-07-01")
    assert list(out["half"]) == ["H2" if s else "H1" for s in second]


@pytest.mark.parametrize(("source", "condition", "message"), [
    ({"sampler_type": "category", "params": {"values": ["a", "b"]}}, "src > 2", "have no order"),
    ({"sampler_type": "uniform", "params": {"low": 0, "high": 1}}, "src > '2024-01-01'", "compare it with a number"),
    ({"sampler_type": "datetime", "params": {"start": "2024-01-01", "end": "2024-02-01"}}, "src > 3",
     "with an ISO date"),
])
def test_comparisons_of_the_wrong_kind_are_config_errors(source: dict[str, object], condition: str,
                                                          message: str) -> None:
    cfg = (gm.ConfigBuilder().add_column(name="src", column_type="sampler", **source)
           .add_column(name="x", column_type="sampler", sampler_type="category", params={"values": ["a"]},
                       conditional_params={condition: {"values": ["b"]}})
           .build())
    columns = [c for c in cfg.columns if isinstance(c, SamplerColumn)]
    with pytest.raises(gm.ConfigError, match=message):
        sample_columns(columns, num_rows=2, run_seed=1, batch_index=0)


def test_comparison_needs_a_number_or_a_date() -> None:
    assert parse_condition("age > 21.5").operator == ">"
    with pytest.raises(ValueError, match="compares with a number"):
        parse_condition("age > True")
    with pytest.raises(ValueError, match="compares with a number"):
        parse_condition("age > [1]")

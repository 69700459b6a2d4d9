"""Config fuzz: any config dict either validates and previews, or raises a gristmill error.

Hypothesis builds dataset config dicts, valid and invalid mixed: sampler / expression /
custom-by-name columns with random params, bad names, unknown references, processors,
constraints, seeds pointing at a real or a missing file, NaN / inf numbers and wrong types.
``DatasetConfig.from_dict`` then ``Mill.preview(num_records=3)`` must succeed or raise:

- ``ConfigError`` (and its subclasses ``SeedDatasetError``, ``ConstraintError``): the config is
  wrong, whether found by validation or when a batch meets it;
- ``GenerationError``: the config is well-formed but a column fails on the data it gets (a
  custom function returning the wrong shape, a template dividing by zero). The error tree
  defines it for exactly this, so it is an honest answer to a fuzzed config too.

Anything else (``TypeError``, ``KeyError``, a pyarrow or numpy error...) is a bug; a found one
stays below as an ``@example`` marked ``xfail(strict=True)`` until it is fixed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gristmill as gm
from gristmill.testing import FunctionModel

SEED_PLACEHOLDER = "<seed-file>"
ACCEPTED = (gm.ConfigError, gm.GenerationError)

# ---- custom functions the configs name ('test_config_fuzz:<name>') -----------------------------


def fuzz_row(row: dict[str, Any]) -> str:
    """Row mode: a string from the row's keys (never raises by itself)."""
    return "-".join(sorted(str(k) for k in row))


def fuzz_batch(frame: pd.DataFrame) -> list[int]:
    """Batch mode: one int per row."""
    return [len(frame.columns)] * len(frame)


def fuzz_pair(row: dict[str, Any]) -> dict[str, Any]:
    """Row mode with ``writes``: two columns."""
    return {"p": 1, "q": "two"}


# ---- strategies ------------------------------------------------------------------------------

NAMES = ["a", "b", "c", "n", "s1", "p", "q"]
BAD_NAMES = ["", "bad name", "1abc", "a.b", "loop", "__errors", "x" * 300, "é"]
name_st = st.one_of(st.sampled_from(NAMES), st.sampled_from(NAMES), st.sampled_from(BAD_NAMES))

weird_number = st.sampled_from([math.nan, math.inf, -math.inf, 0, -1, 1e308, -0.0, 10**20])
number = st.one_of(st.integers(-5, 100), st.floats(-10, 100, allow_nan=False), weird_number)
scalar = st.one_of(number, st.booleans(), st.none(), st.text(max_size=5), st.sampled_from(NAMES))
value = st.one_of(scalar, st.lists(scalar, max_size=4), st.dictionaries(st.sampled_from(NAMES), scalar, max_size=3))

SAMPLER_TYPES = ["uuid", "category", "subcategory", "uniform", "gaussian", "bernoulli", "bernoulli_mixture",
                 "binomial", "poisson", "scipy", "datetime", "timedelta", "person", "nope"]
PARAM_NAMES = ["low", "high", "integer", "decimal_places", "values", "weights", "category", "mean", "stddev", "p",
               "n", "dist_name", "dist_params", "start", "end", "unit", "dt_min", "dt_max",
               "reference_column_name", "locale", "sex", "age_range", "prefix", "short_form", "bogus"]
VALID_PARAMS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "uniform": st.fixed_dictionaries({"low": number, "high": number}, optional={"integer": st.booleans()}),
    "category": st.fixed_dictionaries({"values": st.lists(scalar, max_size=4)},
                                      optional={"weights": st.lists(number, max_size=4)}),
    "subcategory": st.fixed_dictionaries({"category": name_st, "values": st.dictionaries(
        st.text(max_size=3), st.lists(scalar, max_size=3), max_size=3)}),
    "gaussian": st.fixed_dictionaries({"mean": number, "stddev": number}),
    "bernoulli": st.fixed_dictionaries({"p": number}),
    "binomial": st.fixed_dictionaries({"n": number, "p": number}),
    "poisson": st.fixed_dictionaries({"mean": number}),
    "datetime": st.fixed_dictionaries({"start": st.sampled_from(["2020-01-01", "2021-06-30", "nonsense", ""]),
                                       "end": st.sampled_from(["2020-01-01", "2022-01-01", "1999-01-01"])},
                                      optional={"unit": st.sampled_from(["Y", "M", "D", "h", "m", "s", "x"])}),
    "timedelta": st.fixed_dictionaries({"dt_min": number, "dt_max": number, "reference_column_name": name_st},
                                       optional={"unit": st.sampled_from(["D", "h", "m", "s", "Y"])}),
    "uuid": st.fixed_dictionaries({}, optional={"short_form": st.booleans(), "prefix": st.text(max_size=3)}),
}


@st.composite
def sampler_column(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(SAMPLER_TYPES))
    if kind in VALID_PARAMS and draw(st.booleans()):
        params: Any = draw(VALID_PARAMS[kind])
    else:
        params = draw(st.one_of(st.dictionaries(st.sampled_from(PARAM_NAMES), value, max_size=4), value))
    return {"name": draw(name_st), "column_type": "sampler", "sampler_type": kind, "params": params}


TEMPLATES = ["{{ a }}", "{{ a }} and {{ b }}", "{{ a + b }}", "{{ n * 2 }}", "{{ a | upper }}", "{{ missing }}",
             "{% for %}", "{{ a / 0 }}", "{{ a.b.c }}", "{{ ''.__class__.__mro__ }}", "{{ s1 }}", "plain",
             "{{ range(10**9) | list | length }}", "{{ 'x' * 10**9 }}", "{{ p }}{{ q }}", "{{ n | int }}"]


@st.composite
def expression_column(draw: st.DrawFn) -> dict[str, Any]:
    column: dict[str, Any] = {"name": draw(name_st), "column_type": "expression",
                              "expr": draw(st.one_of(st.sampled_from(TEMPLATES), st.text(max_size=12)))}
    if draw(st.booleans()):
        column["dtype"] = draw(st.sampled_from(["str", "int", "float", "bool", "complex"]))
    return column


FUNCTIONS = ["test_config_fuzz:fuzz_row", "test_config_fuzz:fuzz_batch", "test_config_fuzz:fuzz_pair",
             "test_config_fuzz:missing", "no_such_module_xyz:f", "builtins:len", "math:sqrt", "no-colon"]


@st.composite
def custom_column(draw: st.DrawFn) -> dict[str, Any]:
    column: dict[str, Any] = {"name": draw(name_st), "column_type": "custom",
                              "function": draw(st.one_of(st.sampled_from(FUNCTIONS), scalar))}
    optional = {"mode": st.sampled_from(["row", "batch", "vector"]), "reads": st.lists(name_st, max_size=3),
                "writes": st.lists(name_st, max_size=2), "version": st.one_of(st.text(max_size=3), number)}
    for key, strategy in optional.items():
        if draw(st.booleans()):
            column[key] = draw(strategy)
    return column


llm_column = st.fixed_dictionaries({"name": name_st, "column_type": st.just("llm_text"),
                                    "prompt": st.sampled_from(TEMPLATES)},
                                   optional={"model_alias": st.sampled_from(["default", "nope"])})
broken_column = st.one_of(scalar, st.lists(scalar, max_size=2),
                          st.fixed_dictionaries({"name": name_st, "column_type": st.sampled_from(["nope", "", "llm"])},
                                                optional={"drop": value}))
column_st = st.one_of(sampler_column(), sampler_column(), expression_column(), custom_column(), llm_column,
                      broken_column)

constraint_st = st.one_of(
    st.fixed_dictionaries({"constraint_type": st.just("scalar_inequality"), "target_column": name_st,
                           "operator": st.sampled_from(["<", "<=", ">", ">=", "lt", "==", 3]), "rhs": number}),
    st.fixed_dictionaries({"constraint_type": st.just("column_inequality"), "target_column": name_st,
                           "operator": st.sampled_from(["<", ">=", "gt"]), "rhs_column": name_st}),
    st.fixed_dictionaries({"constraint_type": st.sampled_from(["nope", None])}, optional={"rhs": value}),
)
processor_st = st.one_of(
    st.fixed_dictionaries({"name": st.sampled_from(["drop", "", "..", "a b"]),
                           "processor_type": st.just("drop_columns"),
                           "column_names": st.lists(st.one_of(name_st, st.just("s*")), max_size=3)}),
    st.fixed_dictionaries({"name": st.sampled_from(["chat", "x"]), "processor_type": st.just("schema_transform"),
                           "template": st.one_of(st.dictionaries(st.sampled_from(["m", "k"]),
                                                                 st.one_of(st.sampled_from(TEMPLATES), scalar,
                                                                           st.lists(st.sampled_from(TEMPLATES),
                                                                                    max_size=2)),
                                                                 max_size=2), scalar)}),
    st.fixed_dictionaries({"name": name_st, "processor_type": st.sampled_from(["nope", 5])}),
)
selection_st = st.one_of(
    st.none(),
    st.fixed_dictionaries({"selection_type": st.just("index_range"), "start": st.integers(-2, 12),
                           "end": st.integers(-1, 12)}),
    st.fixed_dictionaries({"selection_type": st.just("partition_block"), "index": st.integers(-1, 6),
                           "num_partitions": st.integers(0, 6)}),
)
seed_st = st.one_of(
    st.fixed_dictionaries({"source": st.sampled_from([SEED_PLACEHOLDER, SEED_PLACEHOLDER, "/no/such/seed.parquet",
                                                      "/no/such/*.csv", "", "seed.unknown_suffix"])},
                          optional={"sampling_strategy": st.sampled_from(["ordered", "shuffle", "random", "nope"]),
                                    "selection_strategy": selection_st}),
    scalar,
)


GOOD_SAMPLERS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "uniform": st.fixed_dictionaries({"low": st.integers(0, 5), "high": st.integers(6, 50)},
                                     optional={"integer": st.booleans()}),
    "category": st.fixed_dictionaries({"values": st.lists(st.text("abc", min_size=1, max_size=3),
                                                          min_size=1, max_size=3)}),
    "gaussian": st.fixed_dictionaries({"mean": st.floats(-5, 5), "stddev": st.floats(0.1, 3)}),
    "bernoulli": st.fixed_dictionaries({"p": st.floats(0, 1)}),
    "poisson": st.fixed_dictionaries({"mean": st.floats(0.5, 10)}),
    "uuid": st.fixed_dictionaries({}, optional={"short_form": st.booleans()}),
    "datetime": st.just({"start": "2020-01-01", "end": "2021-01-01"}),
}


def _ref(name: str) -> str:
    return "{{ " + name + " }}"


@st.composite
def good_column(draw: st.DrawFn, name: str, earlier: list[str]) -> dict[str, Any]:
    """A column that should work: samplers with sane params, templates and custom code over earlier columns."""
    kind = draw(st.sampled_from(["sampler", "sampler", "expression", "custom"]) if earlier else st.just("sampler"))
    if kind == "sampler":
        sampler = draw(st.sampled_from(sorted(GOOD_SAMPLERS)))
        return {"name": name, "column_type": "sampler", "sampler_type": sampler,
                "params": draw(GOOD_SAMPLERS[sampler])}
    reads = draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=2, unique=True))
    if kind == "expression":
        return {"name": name, "column_type": "expression", "expr": " / ".join(_ref(r) for r in reads)}
    mode = draw(st.sampled_from(["row", "batch"]))
    return {"name": name, "column_type": "custom", "mode": mode, "reads": reads,
            "function": f"test_config_fuzz:fuzz_{mode}"}


@st.composite
def good_config(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=4, unique=True))
    columns = [draw(good_column(name, names[:i])) for i, name in enumerate(names)]
    config: dict[str, Any] = {"columns": columns}
    numeric = [c["name"] for c in columns if c.get("sampler_type") in ("uniform", "gaussian", "poisson")]
    use_constraint: bool = draw(st.booleans())
    if numeric and use_constraint:
        config["constraints"] = [{"constraint_type": "scalar_inequality", "target_column": draw(st.sampled_from(
            numeric)), "operator": draw(st.sampled_from(["<", ">="])), "rhs": draw(st.integers(-1, 60))}]
    if len(names) > 1 and draw(st.booleans()):
        config["processors"] = [draw(st.sampled_from([
            {"name": "drop", "processor_type": "drop_columns", "column_names": [names[0]]},
            {"name": "chat", "processor_type": "schema_transform", "template": {"m": _ref(names[-1])}}]))]
    if draw(st.booleans()):
        config["seed"] = {"source": SEED_PLACEHOLDER}
    return config


@st.composite
def mutated(draw: st.DrawFn, config: dict[str, Any]) -> Any:
    """One damage to a good config: a random column, field, constraint, processor or seed."""
    columns = config["columns"]
    where = draw(st.integers(0, len(columns) - 1))
    choice = draw(st.integers(0, 7))
    if choice in (1, 2) and not isinstance(columns[where], dict):
        choice = 6
    if choice == 0:
        columns[where] = draw(column_st)
    elif choice == 1:
        columns[where] = {**columns[where], draw(st.sampled_from(["name", "drop", "params", "expr", "reads",
                                                                  "function", "mode", "extra"])): draw(value)}
    elif choice == 2 and isinstance(columns[where].get("params"), dict):
        params = columns[where]["params"]
        params[draw(st.sampled_from([*params, "bogus"]) if params else st.just("bogus"))] = draw(weird_number)
    elif choice == 3:
        earlier = config.get("constraints")
        config["constraints"] = [*(earlier if isinstance(earlier, list) else []), draw(constraint_st)]
    elif choice == 4:
        config["processors"] = [*config.get("processors", []), draw(processor_st)]
    elif choice == 5:
        config["seed"] = draw(seed_st)
    elif choice == 6:
        columns.append(draw(column_st))
    else:
        config[draw(st.sampled_from(["extra_field", "columns", "models", "constraints"]))] = draw(value)
    return config


@st.composite
def config_dict(draw: st.DrawFn) -> Any:
    """About a third untouched good configs, the rest with one to three mutations, a few not a dict."""
    if draw(st.integers(0, 29)) == 0:
        return draw(value)
    config = draw(good_config())
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        config = draw(mutated(config))
        if not isinstance(config.get("columns"), list) or not config["columns"]:
            break
    return config


# ---- the property ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-seed") / "seed.parquet"
    pd.DataFrame({"s1": ["x", "y", "z", "w"], "n": [1, 2, 3, 4]}).to_parquet(path)
    return path


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-artifacts")


def fuzz_mill(artifacts: Path) -> gm.Mill:
    """A Mill whose 'default' alias is answered in-process (never the embedded local model)."""
    fm = FunctionModel(lambda request: "an answer")
    return gm.Mill(artifacts, model_providers=[fm.provider()], model_configs=[fm.model_config()],
                   clients={fm.name: fm}, run_config=gm.RunConfig(show_progress=False, seed=1))


def _with_seed(config: Any, seed_file: Path) -> Any:
    if isinstance(config, dict) and isinstance(config.get("seed"), dict) \
            and config["seed"].get("source") == SEED_PLACEHOLDER:
        return {**config, "seed": {**config["seed"], "source": str(seed_file)}}
    return config


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=config_dict())
def test_any_config_previews_or_raises_a_gristmill_error(config: Any, seed_file: Path, artifacts: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))  # 'test_config_fuzz:...' imports
    config = _with_seed(config, seed_file)
    try:
        cfg = gm.DatasetConfig.from_dict(config)
        with fuzz_mill(artifacts) as mill:
            frame = mill.preview(cfg, num_records=3)
    except ACCEPTED:
        return
    assert isinstance(frame, pd.DataFrame) and len(frame) == 3

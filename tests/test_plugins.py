"""Plugins: a real package on ``sys.path`` with a ``*.dist-info/entry_points.txt`` in the
``gristmill.plugins`` group adds a column type, a processor and a seed reader; errors name the
entry point, the type and the fix."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import gristmill as gm
from gristmill.config import registry as registry_module
from gristmill.config.columns import ColumnConfig, parse_column
from gristmill.config.registry import Registry, get_registry
from gristmill.engine.batches import check_columns
from gristmill.errors import ConfigError, SeedDatasetError

PLUGIN_CONFIG = """\
from typing import Literal

from pydantic import Field

from gristmill.config.columns import ColumnConfig
from gristmill.config.processors import ProcessorConfig


class ShoutColumn(ColumnConfig):
    \"\"\"Upper-cases another column and adds '!'.\"\"\"

    column_type: Literal["shout"] = "shout"
    source: str = Field(description="Column to shout.")

    def required_columns(self) -> set[str]:
        return {self.source}


class ReverseProcessor(ProcessorConfig):
    \"\"\"Reverses the text of one column in the main table.\"\"\"

    processor_type: Literal["reverse_text"] = "reverse_text"
    column: str = Field(description="Column to reverse.")

    def required_columns(self) -> set[str]:
        return {self.column}


def register(registry):
    # Implementations by reference: parsing a config never imports the engine side.
    registry.add_column_type(ShoutColumn, generator="gm_demo_plugin.engine:ShoutGenerator")
    registry.add_processor_type(ReverseProcessor, implementation="gm_demo_plugin.engine:ReverseText")
    registry.add_seed_reader("tsv", suffixes=(".tsv",), read="gm_demo_plugin.engine:read_tsv")
"""

PLUGIN_ENGINE = """\
import pyarrow as pa
import pyarrow.csv as pacsv

from gristmill.engine.processors import ProcessorOutput


class ShoutGenerator:
    def __init__(self, column, context):
        self.column = column

    async def generate(self, frame):
        return {self.column.name: [str(v).upper() + "!" for v in frame.pylist(self.column.source)]}


class ReverseText:
    def __init__(self, config):
        self.config = config

    def apply(self, table):
        name = self.config.column
        values = pa.array([v[::-1] for v in table.column(name).to_pylist()])
        return ProcessorOutput(table=table.set_column(table.column_names.index(name), name, values))


def read_tsv(path):
    return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter="\\t"))
"""

YAML_CONFIG = """\
seed:
  source: people.tsv
columns:
  - {name: loud, column_type: shout, source: name}
  - {name: n, column_type: sampler, sampler_type: uniform, params: {low: 1, high: 3, integer: true}}
processors:
  - {name: rev, processor_type: reverse_text, column: city}
"""


def write_plugin(site: Path, entry_points: str, modules: dict[str, str]) -> None:
    """A distribution installed the way pip leaves one: a package and its dist-info."""
    dist_info = site / "gm_demo_plugin-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: gm-demo-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(entry_points)
    package = site / "gm_demo_plugin"
    package.mkdir()
    for name, source in modules.items():
        (package / f"{name}.py").write_text(source)


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """Each test gets its own registry (built-ins load again) and forgets the plugin's modules."""
    fresh = Registry()
    monkeypatch.setattr(registry_module, "_REGISTRY", fresh)
    yield fresh
    for name in [m for m in sys.modules if m.split(".")[0] == "gm_demo_plugin"]:
        del sys.modules[name]


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return path


def install_demo(site: Path, *, config: str = PLUGIN_CONFIG, engine: str = PLUGIN_ENGINE) -> None:
    write_plugin(site, "[gristmill.plugins]\ndemo = gm_demo_plugin:register\n",
                 {"__init__": config, "engine": engine})


def test_a_plugin_adds_a_column_type_a_processor_and_a_seed_reader(site: Path, tmp_path: Path) -> None:
    install_demo(site)
    data = tmp_path / "data"
    data.mkdir()
    (data / "people.tsv").write_text("name\tcity\nada\tlondon\nalan\twilmslow\n")
    (data / "config.yaml").write_text(YAML_CONFIG)

    config = gm.DatasetConfig.from_yaml(data / "config.yaml")
    with gm.Mill(tmp_path / "artifacts", run_config=gm.RunConfig(show_progress=False)) as mill:
        results = mill.create(config, num_records=4, dataset_name="demo")

    files = sorted((tmp_path / "artifacts" / "demo" / "parquet-files").glob("*.parquet"))
    table = pq.read_table(files[0]) if len(files) == 1 else None
    assert table is not None
    assert table.column_names == ["name", "city", "loud", "n"]
    assert table.column("loud").to_pylist() == ["ADA!", "ALAN!", "ADA!", "ALAN!"]
    assert table.column("city").to_pylist() == ["nodnol", "wolsmliw", "nodnol", "wolsmliw"]
    assert set(table.column("n").to_pylist()) <= {1, 2, 3}
    assert results.count_records() == 4


def test_config_json_round_trips_a_plugin_column(site: Path) -> None:
    install_demo(site)
    config = gm.DatasetConfig.from_dict({"columns": [{"name": "a", "column_type": "shout", "source": "b"}]})
    again = gm.DatasetConfig.from_json(config.to_json())
    assert again.to_dict() == config.to_dict()
    assert type(again.columns[0]).__name__ == "ShoutColumn"


def test_plugins_load_lazily_and_once(site: Path, fresh_registry: Registry) -> None:
    install_demo(site)
    gm.DatasetConfig.from_dict({"columns": [{"name": "a", "column_type": "expression", "expr": "1"}]})
    assert "gm_demo_plugin" not in sys.modules  # built-in types never need the plugins
    parse_column({"name": "a", "column_type": "shout", "source": "b"})  # a miss loads them
    assert "gm_demo_plugin" in sys.modules
    assert "gm_demo_plugin.engine" not in sys.modules  # the generator is imported only by a run
    fresh_registry.load_plugins()  # a second load is a no-op, not a duplicate registration


def test_import_gristmill_loads_no_plugin(site: Path) -> None:
    install_demo(site)
    import subprocess

    code = "import gristmill, sys; print('gm_demo_plugin' in sys.modules)"
    env = {"PYTHONPATH": f"{site}:{Path(gm.__file__).parents[1]}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_broken_plugin_warns_naming_its_entry_point(site: Path) -> None:
    write_plugin(site, "[gristmill.plugins]\nbroken = gm_demo_plugin:register\n",
                 {"__init__": "raise ImportError('no module named gm_missing_dependency')\n"})
    with pytest.warns(RuntimeWarning, match=r"plugin 'broken = gm_demo_plugin:register'.*gm_missing_dependency"):
        with pytest.raises(ConfigError, match=r"unknown column_type 'shout'; known types: .*expression"):
            parse_column({"name": "a", "column_type": "shout", "source": "b"})
    # Unrelated work goes on.
    gm.DatasetConfig.from_dict({"columns": [{"name": "a", "column_type": "expression", "expr": "1"}]})


def test_a_column_type_without_generator_is_a_config_error(site: Path) -> None:
    install_demo(site, config=PLUGIN_CONFIG.replace(', generator="gm_demo_plugin.engine:ShoutGenerator"', ""))
    config = gm.DatasetConfig.from_dict({"columns": [{"name": "a", "column_type": "shout", "source": "b"}]})
    with pytest.raises(ConfigError, match=r"column type 'shout' \(ShoutColumn, registered by plugin "
                                          r"'demo = gm_demo_plugin:register'\) has no generator; register it"):
        check_columns(config, ["b"])


def test_a_missing_generator_is_a_config_error(site: Path) -> None:
    install_demo(site, engine="# the generator was renamed away\n")
    config = gm.DatasetConfig.from_dict({"columns": [{"name": "a", "column_type": "shout", "source": "b"}]})
    with pytest.raises(ConfigError, match=r"generator 'gm_demo_plugin.engine:ShoutGenerator' of column type "
                                          r"'shout' .* cannot be imported"):
        check_columns(config, ["b"])


def test_a_processor_without_implementation_is_a_config_error(site: Path) -> None:
    install_demo(site, config=PLUGIN_CONFIG.replace(', implementation="gm_demo_plugin.engine:ReverseText"', ""))
    config = gm.DatasetConfig.from_dict({"columns": [{"name": "city", "column_type": "expression", "expr": "x"}],
                                         "processors": [{"name": "r", "processor_type": "reverse_text",
                                                         "column": "city"}]})
    with pytest.raises(ConfigError, match=r"processor type 'reverse_text' .* has no implementation"):
        check_columns(config)


def test_unknown_types_list_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown column_type 'nope'; known types: .*sampler"):
        parse_column({"name": "a", "column_type": "nope"})
    with pytest.raises(ConfigError, match=r"processors\[0\].*unknown processor_type 'nope'.*schema_transform"):
        gm.DatasetConfig.from_dict({"processors": [{"name": "p", "processor_type": "nope"}]})


def test_a_seed_file_without_reader_names_the_known_suffixes(tmp_path: Path) -> None:
    from gristmill.engine.seeds import load_seed_table

    (tmp_path / "rows.tsv").write_text("a\tb\n1\t2\n")
    config = gm.ConfigBuilder().with_seed_dataset(str(tmp_path / "rows.tsv")).build()
    assert config.seed is not None
    with pytest.raises(SeedDatasetError, match=r"unsupported extension; use one of .*\.csv.*\.parquet"):
        load_seed_table(config.seed)


def test_registering_a_name_twice_is_an_error() -> None:
    from typing import Literal

    class Other(ColumnConfig):
        column_type: Literal["expression"] = "expression"

    with pytest.raises(ConfigError, match=r"column type 'expression' is registered twice"):
        get_registry().column_type("expression")  # built-ins first
        get_registry().add_column_type(Other)


def test_a_model_without_a_discriminator_default_is_an_error() -> None:
    class NoDefault(ColumnConfig):
        pass

    with pytest.raises(ConfigError, match=r"NoDefault.column_type needs a string default"):
        get_registry().add_column_type(NoDefault)


def test_register_column_type_decorator_pairs_model_and_generator() -> None:
    from typing import Literal

    from gristmill.config import register_column_type
    from gristmill.engine.generators import generator_factory

    def factory(column: ColumnConfig, context: object) -> object:
        raise AssertionError("not called here")

    @register_column_type(generator=factory)
    class Echo(ColumnConfig):
        column_type: Literal["echo"] = "echo"

    assert parse_column({"name": "e", "column_type": "echo"}).__class__ is Echo
    assert generator_factory("echo") is factory


def test_plugin_types_appear_in_the_json_schema(site: Path) -> None:
    from gristmill.config.schema import dataset_config_json_schema

    install_demo(site)
    schema = dataset_config_json_schema()
    assert "shout" in schema["properties"]["columns"]["items"]["discriminator"]["mapping"]
    assert "reverse_text" in schema["properties"]["processors"]["items"]["discriminator"]["mapping"]


def test_docs_example_names_real_methods() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    for method in ("add_column_type", "add_processor_type", "add_seed_reader"):
        assert method in text and hasattr(Registry, method)
    assert "[gristmill.plugins]" in text


def test_a_model_of_the_wrong_base_is_refused() -> None:
    from typing import Literal

    from gristmill.config.base import ConfigModel

    class NotAColumn(ConfigModel):
        column_type: Literal["odd"] = "odd"

    with pytest.raises(ConfigError, match=r"NotAColumn must subclass gristmill ColumnConfig"):
        get_registry().add_column_type(NotAColumn)

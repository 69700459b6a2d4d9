"""The public API (``gristmill.__all__``) and the import layering of DESIGN.md, checked with ``ast``."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

import gristmill as gm

PACKAGE = Path(gm.__file__).resolve().parent
ROOT = PACKAGE.parents[1]

EXPECTED_ALL = [
    "ArtifactError",
    "ColumnInequality",
    "CompositeWorkflow",
    "ConfigBuilder",
    "ConfigError",
    "ConstraintError",
    "CustomColumn",
    "DatasetConfig",
    "DatasetResults",
    "DropColumnsProcessor",
    "ExpressionColumn",
    "GenerationError",
    "GristmillError",
    "IndexRange",
    "InferenceParameters",
    "LLMCodeColumn",
    "LLMJudgeColumn",
    "LLMStructuredColumn",
    "LLMTextColumn",
    "LockedError",
    "Mill",
    "ModelAuthError",
    "ModelConfig",
    "ModelError",
    "ModelProvider",
    "ModelRateLimitError",
    "ModelResponseError",
    "ModelUnreachableError",
    "PartitionBlock",
    "ResumeError",
    "ResumeMode",
    "RunConfig",
    "SamplerColumn",
    "SamplingStrategy",
    "ScalarInequality",
    "SchemaTransformProcessor",
    "Score",
    "SeedConfig",
    "SeedDatasetError",
    "SkippedStageResult",
    "StageAction",
    "WorkflowError",
    "WorkflowPlan",
    "WorkflowResults",
    "__version__",
    "allow_directory",
    "allow_modules",
    "dataset_config_json_schema",
    "load_workflow",
]


def test_all_is_the_expected_sorted_list() -> None:
    # Adding or removing a public name is a decision: update this list with it.
    assert gm.__all__ == EXPECTED_ALL
    assert EXPECTED_ALL == sorted(EXPECTED_ALL)


def test_every_public_name_resolves() -> None:
    for name in gm.__all__:
        assert getattr(gm, name) is not None, name


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from gristmill import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(gm.__all__)


def test_errors_share_one_base_and_follow_the_drawn_tree() -> None:
    for name in gm.__all__:
        obj = getattr(gm, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, gm.GristmillError), name
    assert issubclass(gm.SeedDatasetError, gm.ConfigError)
    assert issubclass(gm.ConstraintError, gm.ConfigError)
    assert issubclass(gm.ResumeError, gm.ArtifactError)
    assert issubclass(gm.LockedError, gm.ArtifactError)
    assert issubclass(gm.ModelRateLimitError, gm.ModelError)


def test_version_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert gm.__version__ == project["version"]


# ------------------------------------------------------------------------------------------- layering

ALL_LAYERS = {"version", "lazy", "config", "sampling", "llm", "engine", "storage", "workflow", "analysis",
              "mill", "reference_docs",
              "results", "cli", "testing", "errors", "<api>"}

# Layer -> the layers it may import (DESIGN.md "Layout"). Every layer may import itself and
# ``errors``; ``<api>`` is the top-level ``gristmill`` package (its public names).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "version": set(),
    "lazy": set(),
    "config": set(),
    "sampling": {"config"},
    "llm": {"config"},
    "storage": {"config"},
    "analysis": {"config", "storage"},
    "engine": {"config", "sampling", "llm", "storage"},
    # results.py is not in DESIGN.md's table: it reads what storage wrote (and analysis reports),
    # and both Mill.create and workflow stages hand it out, so it sits below both.
    "results": {"config", "storage", "analysis", "report"},
    "workflow": {"config", "sampling", "llm", "engine", "storage", "results", "report"},
    "mill": {"config", "sampling", "llm", "engine", "storage", "workflow", "analysis", "results"},
    # The HTML report reads what a dataset or workflow run left on disk (report/); the results
    # classes hand it out (results.report()), so it sits below them.
    "report": {"config", "storage"},
    # Converts the reference tool's configs into ours (convert.py).
    "convert": {"config"},
    # Generates docs/reference/ from the config models' field descriptions.
    "reference_docs": {"config", "results", "workflow"},
    "cli": {"<api>"},
    "testing": ALL_LAYERS,
    "<api>": {"config", "mill", "results", "workflow", "analysis"},
}


def layer_of(module: str) -> str:
    """'gristmill.engine.seeds' -> 'engine'; 'gristmill' -> '<api>'."""
    parts = module.split(".")
    if parts == ["gristmill"]:
        return "<api>"
    return parts[1].removesuffix(".py")


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def type_checking_nodes(tree: ast.AST) -> set[ast.AST]:
    """Nodes under ``if TYPE_CHECKING:``: annotations only, no import at run time."""
    skipped: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(ast.walk(child))
    return skipped


def imported_modules(path: Path, *, runtime_only: bool = False) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) for every gristmill import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    skipped = type_checking_nodes(tree) if runtime_only else set()
    found = []
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names if alias.name.split(".")[0] == "gristmill"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module.split(".")[0] == "gristmill":
                found.append((node.lineno, module, [alias.name for alias in node.names]))
    return found


def source_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if ".mypy_cache" not in p.parts)


def layering_violations() -> set[tuple[str, str]]:
    """(file, imported module) for every run-time import that breaks the table."""
    problems = set()
    for path in source_files():
        source = layer_of(module_name(path))
        allowed = ALLOWED[source]
        for _, module, _ in imported_modules(path, runtime_only=True):
            target = layer_of(module)
            if target in {source, "errors", "version", "lazy"} or target in allowed:
                continue
            # The CLI may use the public API: the top-level package and the documented
            # ``__all__`` of a layer's package (``gristmill.workflow``), never its submodules.
            if source == "cli" and module in PUBLIC_PACKAGES:
                continue
            problems.add((path.relative_to(PACKAGE).as_posix(), module))
    return problems


# Violations present when this test was written, each reported to its owner. Fixing one means
# deleting its line here; a new one fails the test.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()
PUBLIC_PACKAGES = {"gristmill.workflow", "gristmill.llm", "gristmill.report", "gristmill.convert"}


def private_name_imports() -> list[str]:
    problems = []
    for path in source_files():
        source = module_name(path)
        for line, module, names in imported_modules(path):
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private and module != source:
                problems.append(f"{path.relative_to(ROOT)}:{line}: imports {private} from {module}")
    return problems


def test_every_module_is_in_a_known_layer() -> None:
    unknown = {layer_of(module_name(p)) for p in source_files()} - set(ALLOWED)
    assert not unknown


def test_imports_flow_downward_only() -> None:
    found = layering_violations()
    assert found - KNOWN_VIOLATIONS == set(), "new upward imports"
    assert KNOWN_VIOLATIONS - found == set(), "fixed: delete these from KNOWN_VIOLATIONS"


def test_modules_do_not_import_each_others_private_names() -> None:
    assert private_name_imports() == []


@pytest.mark.parametrize(("module", "layer"), [
    ("gristmill", "<api>"),
    ("gristmill.config.columns", "config"),
    ("gristmill.engine.generators.custom", "engine"),
    ("gristmill.mill", "mill"),
])
def test_layer_of(module: str, layer: str) -> None:
    assert layer_of(module) == layer


def test_checker_sees_the_imports_of_a_module() -> None:
    imports = imported_modules(PACKAGE / "engine" / "dataset_run.py")
    modules = {module for _, module, _ in imports}
    assert "gristmill.storage.atomic" in modules
    assert "gristmill.config.dataset" in modules


def import_graph() -> dict[str, set[str]]:
    """Module -> gristmill modules it imports anywhere: function-level and ``if TYPE_CHECKING:``
    imports included, since they are how a cycle hides."""
    modules = {module_name(p): p for p in source_files()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for _, module, names in imported_modules(path):
            # ``from gristmill.engine import services`` imports the submodule ``services``.
            subs = {f"{module}.{n}" for n in names if f"{module}.{n}" in modules}
            targets |= subs or {module}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles() -> None:
    assert import_cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

"""The map in docs/architecture.md, checked: dependencies point inward and module imports form no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("clamp2_engine",)
# the outer packages (the repository's top-level ingest/, train/ and exporters/ hold a README pointing in)
OUTER = ("clamp2_engine.ingest", "clamp2_engine.train", "clamp2_engine.exporters")
OUTER_LAYERS = ("clamp2_engine.cli", "clamp2_engine.serve", "clamp2_engine.integrations", *OUTER)


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports(path: Path, module: str, top_level_only: bool, known: set[str] | None = None) -> set[str]:
    """Project modules imported by ``path`` (``top_level_only``: at import time, not inside functions or
    ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            subs = {f"{base}.{a.name}" for a in node.names}
            if known is not None and subs <= known:
                found |= subs  # `from package import submodule`: the package itself is not what is used
            else:
                found |= {base, *subs}
    return {m for m in found if m.split(".")[0] in (*PACKAGES, "ingest", "train", "exporters")}


def test_the_core_imports_none_of_the_outer_packages():
    """clamp2_engine outside cli/ and serve/ (the outer layers) never imports ingest, train or exporters
    (not even lazily)."""
    bad = [
        (name, imported)
        for name, path in modules().items()
        if not name.startswith(OUTER_LAYERS)
        for imported in imports(path, name, top_level_only=False)
        if imported.startswith(OUTER)
    ]
    assert bad == []


@pytest.mark.parametrize("top_level_only", [True, False], ids=["module-level", "function-level too"])
def test_imports_have_no_cycle(top_level_only):
    """No import circle, not even one hidden in a function-level import."""
    mods = modules()
    graph = {
        name: {
            m
            for m in imports(path, name, top_level_only=top_level_only, known=set(mods))
            if m in mods and m != name
        }
        for name, path in mods.items()
    }
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_serve_uses_nothing_of_the_cli():
    """serve is wired with the library alone (its loader, its errors), so a model failure inside a request
    never becomes a CLI error."""
    bad = [
        (name, imported)
        for name, path in modules().items()
        if name.startswith("clamp2_engine.serve")
        for imported in imports(path, name, top_level_only=False)
        if imported.startswith("clamp2_engine.cli")
    ]
    assert bad == []
    wiring = (ROOT / "clamp2_engine" / "cli" / "serve.py").read_text(encoding="utf-8")
    assert "open_tower" not in wiring
    assert "open_model" not in wiring


def test_no_function_is_over_100_lines():
    long = [
        (str(path.relative_to(ROOT)), node.name, node.end_lineno - node.lineno + 1)
        for path in modules().values()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 100
    ]
    assert long == []


def all_imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (absolute names)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module or "")
    return found


def source_files() -> list[Path]:
    return [p for d in (*PACKAGES, "benchmarks", "examples") for p in sorted((ROOT / d).rglob("*.py"))]


def test_each_qdrant_library_is_imported_by_one_store_module():
    """qdrant_edge only in the embedded engine's modules (store/edge.py, its shards and conversions) and
    store/lexical.py (for its BM25 embedder, which makes the lexical vectors of both engines),
    qdrant_client only in store/server.py (tests aside)."""
    edge = ("edge.py", "edge_shards.py", "edge_convert.py", "lexical.py")
    owners = {
        "qdrant_edge": tuple(f"clamp2_engine/store/{f}" for f in edge),
        # and the example of a service that uses qdrant-client without clamp2-engine
        "qdrant_client": ("clamp2_engine/store/server.py", "examples/qdrant_service.py"),
    }
    bad = [
        (str(path.relative_to(ROOT)), lib)
        for path in source_files()
        for lib, owner in owners.items()
        if any(m.split(".")[0] == lib for m in all_imports(path))
        and path.relative_to(ROOT).as_posix() not in owner
    ]
    assert bad == []


NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}  # public, underscored to avoid field clashes


def test_no_private_attribute_of_a_dependency_is_touched():
    """No ``x._name`` on an object from another library: only public APIs (the store's above all).
    Attributes of the project's own objects (``self._x``) and dunders are fine."""
    bad = []
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                not isinstance(node, ast.Attribute)
                or not node.attr.startswith("_")
                or node.attr.startswith("__")
            ):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls") or node.attr in NAMEDTUPLE_API:
                continue
            bad.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert bad == []


def test_the_outer_packages_are_imported_by_their_installed_names():
    """Never ``import ingest`` (the repository's pointer folder): only ``clamp2_engine.ingest``, the installed name,
    so that nothing of a generic name lands in site-packages or is imported twice."""
    bad = [
        (str(path.relative_to(ROOT)), m)
        for path in [*source_files(), *sorted((ROOT / "tests").rglob("*.py"))]
        for m in all_imports(path)
        if m.split(".")[0] in ("ingest", "train", "exporters")
    ]
    assert bad == []


def test_only_clamp2_engine_is_installed():
    import tomllib

    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["clamp2_engine*"]
    for folder in ("ingest", "train", "exporters"):  # shown at the top, pointing in; no second copy
        assert not (ROOT / folder).is_symlink()
        assert (ROOT / "clamp2_engine" / folder / "__init__.py").is_file()
        assert sorted(p.name for p in (ROOT / folder).iterdir()) == ["README.md"]


# The layers, innermost first: a module imports (even lazily, inside a function) nothing of a layer
# outside its own. The outer layers (ingest, train, exporters, cli, serve) are checked above.
LAYERS = (
    ("clamp2_engine.types", "clamp2_engine.errors", "clamp2_engine.paths", "clamp2_engine.identity",
     "clamp2_engine.jsonl", "clamp2_engine.runlog", "clamp2_engine.workers"),
    ("clamp2_engine.music", "clamp2_engine.models", "clamp2_engine.checkpoints", "clamp2_engine.store"),
    ("clamp2_engine.runtime",),
    ("clamp2_engine.encoder",),
    ("clamp2_engine.loading",),
    ("clamp2_engine.pretrained", "clamp2_engine.embed", "clamp2_engine.evaluate", "clamp2_engine.probe"),
    ("clamp2_engine.search",),
)  # fmt: skip


def layer_of(module: str) -> int | None:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def test_every_core_module_has_a_layer():
    unplaced = [
        name
        for name in modules()
        if name != "clamp2_engine"
        and not name.startswith((*OUTER_LAYERS, "clamp2_engine.__main__"))
        and layer_of(name) is None
    ]
    assert unplaced == []


def test_no_import_points_outward():
    """Not even a function-level import climbs a layer (the loader builds the Encoder; runtime does not)."""
    mods = modules()
    bad = [
        (name, imported)
        for name, path in mods.items()
        if (own := layer_of(name)) is not None
        for imported in imports(path, name, top_level_only=False, known=set(mods))
        if (theirs := layer_of(imported)) is not None and theirs > own
    ]
    assert bad == []


def test_no_module_is_over_450_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > 450}
    assert long == {}


def test_the_store_stores_and_the_search_wing_ranks():
    """No fusion, MMR or explanation of empty results in store/: those are the search wing's."""
    ranking = {
        "weighted_rrf",
        "best_score",
        "rrf_page",
        "explain_empty",
        "recommend",
        "hybrid",
        "nearest",
        "find",
    }
    defined = [
        (name, node.name)
        for name, path in modules().items()
        if name.startswith("clamp2_engine.store")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in ranking
    ]
    assert defined == []


def test_searching_imports_nothing_of_ingest():
    """serve, the search wing and `cli/search.py` take music code from the music wing, not from ingest."""
    bad = [
        (name, imported)
        for name, path in modules().items()
        if name.startswith(("clamp2_engine.serve", "clamp2_engine.search", "clamp2_engine.cli.search"))
        for imported in imports(path, name, top_level_only=False)
        if imported.startswith("clamp2_engine.ingest")
    ]
    assert bad == []


def test_every_test_module_holds_a_test_and_imports_no_other():
    tests = sorted((ROOT / "tests").glob("test_*.py"))
    empty = [
        p.name
        for p in tests
        if not any(
            isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
            for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        )
    ]
    crossing = [
        (p.name, m)
        for p in tests
        for m in all_imports(p)
        if m.split(".")[-1].startswith("test_") or m.startswith("tests.test_")
    ]
    assert (empty, crossing) == ([], [])


def _defined_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def test_every_name_a_benchmark_takes_from_another_exists():
    """Benchmarks share helpers (vectors, payloads, queries); a rewrite of one must not break another."""
    missing = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("benchmarks."):
                source = ROOT / (node.module.replace(".", "/") + ".py")
                defined = _defined_names(source)
                missing += [(path.name, node.module, a.name) for a in node.names if a.name not in defined]
    assert missing == []

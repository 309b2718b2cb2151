"""The package's shape: phases as packages, no import cycle, private names kept at home.

Read from the source with ``ast`` (nothing is imported), so an import inside a function counts
as much as one at the top of a module.
"""

import ast
import graphlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "tgmatl"
PHASES = ("survey", "embedding", "method", "training", "evaluation")
MAX_TOP_LEVEL_MODULES = 10


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> list[tuple[str, list[str]]]:
    """``(module, names)`` for every tgmatl import in the file, at any depth of the tree."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == "tgmatl"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "tgmatl":
                continue
            names = [a.name for a in node.names]
            # `from pkg import submodule` depends on the submodule itself
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
            rest = [n for n in names if f"{base}.{n}" not in known]
            found += [(s, []) for s in subs]
            if rest or not subs:
                found.append((base, rest))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: {m for m, _ in _imports(name, path, known) if m != name}
            for name, path in modules.items()}


def test_no_import_cycle():
    graph = _graph()
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_cycle_check_finds_a_cycle(tmp_path):
    """The check itself: a cycle through an import inside a function is reported."""
    graph = {"tgmatl.a": {"tgmatl.b"}, "tgmatl.b": set()}
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("import tgmatl.b\n")
    b.write_text("def f():\n    from tgmatl import a\n")
    graph["tgmatl.b"] = {m for m, _ in _imports("tgmatl.b", b, {"tgmatl.a", "tgmatl.b"})}
    assert graph["tgmatl.b"] == {"tgmatl.a"}
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(graph).prepare()


def test_top_level_modules_are_few():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"{len(top)} top-level modules: {top}"


def test_every_phase_is_a_package_that_states_its_contract():
    for phase in PHASES:
        init = PACKAGE / phase / "__init__.py"
        assert init.is_file(), f"src/tgmatl/{phase}/ is not a package"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        # the contract: what the phase takes and what it gives (files)
        assert "Takes" in doc and "Gives" in doc, f"{init}: docstring without Takes/Gives"
        assert "stage" in doc, f"{init}: docstring names no stage"


def test_private_names_stay_in_their_module():
    modules = _modules()
    known = set(modules)
    crossing = [f"{name} imports {n} from {m}"
                for name, path in modules.items()
                for m, names in _imports(name, path, known)
                for n in names if n.startswith("_") and not n.endswith("__") and m != name]
    assert not crossing, crossing

"""The module map of docs/architecture.md#module-map, enforced: imports run one way.

Every import of every library module counts, including function-local ones. The test fails on
an import cycle between vipdl modules, on an edge that goes up the layer order, and on the
explicitly forbidden edges (evaluation stays pure numpy; models, data and post-processing do not
depend on what is built on them; nothing imports configs/ or scripts/).

Functions stay short enough to read: a body (docstring excluded) longer than MAX_FUNCTION_LINES
lines needs a docstring that says why it is long.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lower layers never import higher ones (docs/architecture.md#module-map).
LAYERS = [
    ("vipdl.keys", "vipdl.formats", "vipdl.evaluation"),
    ("vipdl.data",),
    (
        "vipdl.models", "vipdl.postprocess", "vipdl.video_io", "vipdl.visualize", "vipdl.optim",
        "vipdl.parallel", "vipdl.losses", "vipdl.checkpointing", "vipdl.predictor_cache",
    ),
    ("vipdl.from_config", "vipdl.export_runtime"),
    ("vipdl.inference",),
    ("vipdl.video_evaluation", "vipdl.convert", "vipdl.export", "vipdl.editing"),
    ("vipdl.trainer",),
    ("vipdl.cli",),
]
# A longer function body (docstring excluded) needs the word "long" in its docstring, in a
# sentence that says why (e.g. "Long because ...").
MAX_FUNCTION_LINES = 80
FORBIDDEN = {
    "vipdl.evaluation": ("vipdl.models", "vipdl.data", "vipdl.trainer", "jax", "flax", "optax"),
    "vipdl.models": ("vipdl.data", "vipdl.trainer"),
    "vipdl.postprocess": ("vipdl.trainer", "vipdl.data"),
    # What `VideoPredictor.from_export` loads: no model code, no checkpoint, no TensorFlow.
    "vipdl.export_runtime": (
        "vipdl.models", "vipdl.from_config", "vipdl.checkpointing", "vipdl.trainer", "flax",
        "tensorflow",
    ),
    # What a warm `VideoPredictor.from_checkpoint` reads: no Flax, no Orbax, no model code.
    "vipdl.predictor_cache": (
        "vipdl.models", "vipdl.from_config", "vipdl.checkpointing", "flax", "orbax",
    ),
    "vipdl": ("configs", "scripts"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in the file (absolute names)."""
    package = _module_name(path) if path.is_relative_to(ROOT) else "vipdl.example"
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(prefix + ([base] if base else []))
            out.add(base)
            # `from vipdl import models` imports the module vipdl.models.
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in (ROOT / "vipdl").rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _raw_imports() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in (ROOT / "vipdl").rglob("*.py")}


def _layer(module: str) -> int | None:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_every_module_has_a_layer():
    missing = [m for m in _graph() if m != "vipdl" and _layer(m) is None]
    assert not missing, f"add these modules to LAYERS and docs/architecture.md: {missing}"


def test_imports_go_down_the_layers():
    wrong = []
    for module, deps in _graph().items():
        for dep in deps:
            if dep == "vipdl" or _layer(module) is None:
                continue
            if _layer(dep) > _layer(module):
                wrong.append(f"{module} -> {dep}")
    assert not wrong, "imports that go up the module map:\n" + "\n".join(sorted(wrong))


def test_forbidden_edges():
    wrong = []
    for module, imports in _raw_imports().items():
        for owner, banned in FORBIDDEN.items():
            if not _within(module, owner):
                continue
            for name in imports:
                if any(_within(name, b) for b in banned):
                    wrong.append(f"{module} -> {name}")
    assert not wrong, "forbidden imports:\n" + "\n".join(sorted(set(wrong)))


def test_no_import_cycles():
    graph = _graph()
    # Package __init__ files re-export their children; an edge into a package means its
    # __init__, which is where a cycle would show.
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep == "vipdl" or (node.startswith(dep + ".") and dep in graph):
                continue  # a module importing its own package's __init__ (e.g. for re-exports)
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("source", ["import vipdl.trainer", "from vipdl import trainer"])
def test_the_parser_sees_imports(source, tmp_path):
    path = tmp_path / "m.py"
    path.write_text(f"def f():\n    {source}\n")
    assert "vipdl.trainer" in _imports(path)


def _long_functions(path: Path) -> list[str]:
    """`file:function:lines` of each function in `path` whose body, docstring excluded, has more
    than MAX_FUNCTION_LINES lines and whose docstring does not say why ("long")."""
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(node)
        body = node.body[1:] if doc is not None and len(node.body) > 1 else node.body
        lines = node.end_lineno - body[0].lineno + 1
        if lines > MAX_FUNCTION_LINES and "long" not in (doc or "").lower():
            out.append(f"{name}:{node.name}:{lines}")
    return out


def test_long_functions_say_why():
    found = [f for p in sorted((ROOT / "vipdl").rglob("*.py")) for f in _long_functions(p)]
    assert not found, (
        f"functions longer than {MAX_FUNCTION_LINES} lines (body, docstring excluded): split "
        "them, or say in the docstring why it is long:\n" + "\n".join(found))


def test_function_length_counts_the_body_without_the_docstring(tmp_path):
    def function(name: str, doc: str, body_lines: int, indent: str = "") -> str:
        docstring = f'{indent}    """{doc}\n\n{indent}    More.\n{indent}    """\n'
        body = "".join(f"{indent}    x = {i}\n" for i in range(body_lines))
        return f"{indent}def {name}():\n" + docstring + body

    path = tmp_path / "m.py"
    path.write_text(
        function("fits", "Short.", MAX_FUNCTION_LINES)
        + function("too_long", "Short.", MAX_FUNCTION_LINES + 1)
        + function("says_why", "Long because it must be.", MAX_FUNCTION_LINES + 1)
        + "class C:\n" + function("method", "Short.", MAX_FUNCTION_LINES + 5, indent="    ")
    )
    assert _long_functions(path) == [f"{path}:too_long:{MAX_FUNCTION_LINES + 1}",
                                     f"{path}:method:{MAX_FUNCTION_LINES + 5}"]

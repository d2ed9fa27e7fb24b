"""House rules checked on the source (ast, nothing imported): no import circle inside cxr_keras, at
module or function level, and no function over 100 lines."""
import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

PACKAGE = "cxr_keras"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
MAX_FUNCTION_LINES = 100


def module_files() -> Dict[str, Path]:
    """Dotted module name → file, for every module of the package (``__init__`` = the package)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def resolve_relative(module: str, is_package: bool, level: int, name: Optional[str]) -> str:
    """The absolute module of ``from <level dots><name> import ...`` written in ``module``."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(module: str, path: Path, modules: Set[str]) -> Set[str]:
    """Package modules ``module`` imports anywhere in its file (module level, functions, classes).

    ``import a.b`` → a.b; ``from a import b`` → a.b when b is a module, else a; relative forms resolved.
    (The parent packages Python initialises on the way are not edges: a package's ``__init__`` may
    re-export its modules.)
    """
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (resolve_relative(module, is_package, node.level, node.module) if node.level
                    else node.module)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != module}


def import_graph() -> Dict[str, Set[str]]:
    files = module_files()
    return {m: imports_of(m, p, set(files)) for m, p in files.items()}


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import circle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: Dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b  # noqa\n")
    (pkg / "sub" / "b.py").write_text("from .. import a\n")
    (pkg / "sub" / "c.py").write_text("class C:\n    def m(self):\n        import pkg.a\n        from .b import x\n")
    modules = {"pkg", "pkg.sub", "pkg.a", "pkg.sub.b", "pkg.sub.c"}
    graph = {m: imports_of(m, p, modules) for m, p in (
        ("pkg.a", pkg / "a.py"), ("pkg.sub.b", pkg / "sub" / "b.py"), ("pkg.sub.c", pkg / "sub" / "c.py"),
        ("pkg.sub", pkg / "sub" / "__init__.py"))}
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.a"}
    assert graph["pkg.sub.c"] == {"pkg.a", "pkg.sub.b"}
    assert find_cycle(graph) in (["pkg.a", "pkg.sub.b", "pkg.a"], ["pkg.sub.b", "pkg.a", "pkg.sub.b"])
    assert find_cycle({"x": {"y"}, "y": set()}) is None
    assert resolve_relative("pkg.sub", True, 1, "c") == "pkg.sub.c"
    assert resolve_relative("pkg.sub.b", False, 2, None) == "pkg"


def test_no_import_circle_inside_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " → ".join(cycle)


def test_no_function_over_100_lines():
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 100 lines:\n" + "\n".join(long)

"""The package's layers, read from its import statements: backends depend only downward, stages reach the
backends only through trtflow.engines, the formats layer is the only one that knows c-model names, and
there is no import cycle between modules."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "workflow" / "scripts" / "trtflow"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """trtflow modules imported by `path` (relative imports resolved; `from . import x` counts as x)."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("trtflow")}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if not target.startswith("trtflow"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).is_file() else target)
    return found


GRAPH = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_backends_are_siblings_reached_only_through_engines():
    for module, targets in GRAPH.items():
        for target in targets:
            if target.startswith("trtflow.backends.") and not module.startswith("trtflow.backends."):
                assert module == "trtflow.engines", f"{module} imports {target}: go through trtflow.engines"
            for one, other in (("torch", "trtllm"), ("trtllm", "torch")):
                if module.startswith(f"trtflow.backends.{one}"):
                    assert not target.startswith(f"trtflow.backends.{other}"), f"{module} imports {target}"


def test_lower_layers_never_import_upper_ones():
    upper = ("trtflow.stages", "trtflow.backends", "trtflow.engines", "trtflow.dag")
    lower = ("trtflow.formats", "trtflow.infra", "trtflow.evaluation", "trtflow.tp", "trtflow.flags",
             "trtflow.generation", "trtflow.gpt2", "trtflow.paths", "trtflow.config", "trtflow.errors")
    for module, targets in GRAPH.items():
        if module.startswith(lower):
            bad = sorted(t for t in targets if t.startswith(upper))
            assert not bad, f"{module} imports {bad}"


def test_no_import_cycles():
    def visit(module: str, trail: list[str]) -> None:
        for target in sorted(GRAPH.get(module, ())):
            assert target not in trail, " -> ".join([*trail, target])
            if target in GRAPH:
                visit(target, [*trail, target])

    for module in GRAPH:
        visit(module, [module])


def test_only_the_tp_table_cuts_tensors_and_checks_degrees():
    """Everyone else asks trtflow.tp how a tensor splits and whether a degree divides the heads."""
    for path in PACKAGE.rglob("*.py"):
        if path.name != "tp.py":
            text = path.read_text()
            for pattern in (".chunk(", "torch.split(", "np.split(", "% tp", "heads %"):
                assert pattern not in text, f"{path} contains {pattern!r}: use trtflow.tp"

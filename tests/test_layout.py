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


TORCH_BACKEND = PACKAGE / "backends" / "torch"


def jit_functions(path: Path) -> list[ast.FunctionDef]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)
            and any(ast.unparse(d).endswith("triton.jit") for d in node.decorator_list)]


def test_the_torch_backend_reads_in_small_modules_and_small_kernels():
    """No module of the torch backend over 400 lines; no Triton kernel or helper over 20 parameters."""
    for path in TORCH_BACKEND.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 400, f"{path.relative_to(PACKAGE)}: {lines} lines"
        for function in jit_functions(path):
            count = len(function.args.args)
            assert count <= 20, f"{path.relative_to(PACKAGE)}:{function.name} takes {count} parameters"
    assert jit_functions(TORCH_BACKEND / "kernels" / "linear.py"), "the kernels moved: update this test"


def test_the_torch_backend_reads_weights_by_field_not_by_name():
    """Only weights.GPT2Weights.from_engine (and the build that writes the names) knows the engine file's names:
    the model, the decoder and the kernels read `layer.qkv`, never `w["layers.0.qkv.weight"]`."""
    for path in TORCH_BACKEND.rglob("*.py"):
        text = path.read_text()
        for pattern in ("self.w[", "model.w[", ".w.get(", '+ "qkv', 'f"layers.{'):
            if path.name not in ("weights.py", "build.py", "weight_only.py"):
                assert pattern not in text, f"{path.relative_to(PACKAGE)} contains {pattern!r}"


def test_the_kernels_package_has_its_layers():
    """launch ← split, fold ← operands ← linear; launch ← attention; those ← row ← step; tuning needs only the linear's
    pieces (it is handed the step); nothing in the package imports the CUDA-graph decoder or the generator that use
    it."""
    allowed = {"launch": set(), "fold": set(), "split": {"launch"}, "operands": {"launch", "fold"},
               "attention": {"launch"}, "linear": {"launch", "fold", "operands", "split"},
               "tuning": {"launch", "linear", "operands", "split"}, "row": {"launch", "linear", "attention"},
               "step": {"launch", "linear", "operands", "attention", "fold", "row", "tuning"},
               "__init__": {"launch", "linear", "operands", "attention", "fold", "step", "tuning"}}
    kernels = "trtflow.backends.torch.kernels"
    for name, may in allowed.items():
        module = kernels if name == "__init__" else f"{kernels}.{name}"
        inside = {t.removeprefix(kernels + ".") for t in GRAPH[module] if t.startswith(kernels + ".")}
        assert inside <= may, f"{module} imports {sorted(inside - may)}"
        outside = {t for t in GRAPH[module] if not t.startswith(kernels)}
        assert not outside & {"trtflow.backends.torch.graphs", "trtflow.backends.torch.generator",
                              "trtflow.backends.torch.build"}, (module, outside)

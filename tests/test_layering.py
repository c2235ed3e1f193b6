"""The package's layers, checked on its source: imports go one way, down LAYERS; nn/ knows
nothing of the rest; only the CLI imports typer or prints."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "nlclf"

# Top to bottom: a module may import its own layer and the layers above it, never below.
LAYERS = ["errors", "digest", "runtime", "parallel", "cluster", "text", "vocab", "nn", "features.weighting", "config", "features",
          "data", "metrics", "calibration", "significance", "model", "explain", "training", "rundir", "checkpoint",
          "report", "plots", "compress", "pipeline", "evaluate", "predict", "inspection", "search", "api", "sklearn",
          "serve", "cli", "__main__"]


def dotted(path: Path) -> str:
    """nlclf/features/bag.py -> features.bag; nlclf/nn/__init__.py -> nn."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer_of(name: str) -> str:
    for prefix in ("features.weighting", "features", "nn"):
        if name == prefix or name.startswith(prefix + "."):
            return prefix
    return name.split(".")[0]


def imports(path: Path) -> list:
    """The nlclf modules ``path`` imports, as dotted names, and whether it imports typer / prints."""
    name = dotted(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out, typer, prints = [], False, False
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                mods = [node.module or ""]
                if (node.module or "").startswith("nlclf"):
                    out += [m.removeprefix("nlclf").lstrip(".") or a.name for m in mods for a in node.names]
            else:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                prefix = ".".join(base + ([node.module] if node.module else []))
                for a in node.names:                        # `from . import x`: a module, or a name of one
                    sub = f"{prefix}.{a.name}" if prefix else a.name
                    out.append(sub if is_module(sub) else prefix)
                mods = []
            typer |= any(m.split(".")[0] == "typer" for m in mods)
        elif isinstance(node, ast.Import):
            typer |= any(a.name.split(".")[0] == "typer" for a in node.names)
            out += [a.name.removeprefix("nlclf.") for a in node.names if a.name.startswith("nlclf.")]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            prints = True
    return [o for o in out if o], typer, prints


def modules() -> list:
    return sorted(ROOT.rglob("*.py"))


def test_every_module_has_a_layer():
    missing = sorted({layer_of(dotted(p)) for p in modules()} - set(LAYERS) - {""})
    assert not missing, f"modules outside LAYERS: {missing}"


def test_imports_go_one_way_and_nn_knows_only_nn():
    for path in modules():
        me = dotted(path)
        if not me:                                          # nlclf/__init__.py: the version only
            continue
        mine = LAYERS.index(layer_of(me))
        targets, typer, prints = imports(path)
        for t in targets:
            theirs = layer_of(t)
            assert theirs in LAYERS, f"{me} imports {t}, which has no layer"
            assert LAYERS.index(theirs) <= mine, f"{me} (layer {layer_of(me)}) imports {t} (layer {theirs}), below it"
            if layer_of(me) == "nn":
                assert theirs == "nn", f"{me} imports {t}: nn/ may import only nn/"
        assert not typer or layer_of(me) == "cli", f"{me} imports typer"
        assert not prints or layer_of(me) in ("cli", "__main__"), f"{me} prints: only the CLI prints"


def test_the_checker_sees_relative_imports():
    """The test above would pass on a package it cannot read: check what it reads."""
    targets, _, _ = imports(ROOT / "features" / "bag.py")
    assert {"text", "features.weighting", "features.base"} <= set(targets)
    targets, _, _ = imports(ROOT / "nn" / "mlp.py")
    assert {"nn.activations", "nn.layers", "nn.losses"} <= set(targets)
    targets, _, _ = imports(ROOT / "pipeline.py")
    assert {"checkpoint", "data", "config"} <= set(targets)


# --- the README's layout section: generated from the tree, in layer order ----------------------

README = ROOT.parent / "README.md"
OTHER = [("configs/", "configs of the demo, XOR and the benchmark sets; best/: the tuned ones; spaces/: search spaces"),
         ("data/", "the sets written for the project: demo/ (four topics) and xor/ (the notes' XOR)"),
         ("tests/", "fast tier (make test-fast): math, features, formats, config, checkpoints; slow: CLI, processes"),
         ("bench/", "benchmarks: make bench-accuracy, make bench-speed; identity.py: same config, same model"),
         ("docs/", "benchmark and performance tables, pictures")]


def summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    first = doc.split("\n\n")[0].replace("\n", " ")
    sentence = first.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= 88 else sentence[:85].rsplit(" ", 1)[0].rstrip(" ->,:") + " ..."


def layout() -> str:
    """The layout block: every module of nlclf in layer order, with its docstring's first sentence."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    mods = [p for p in modules() if dotted(p)]
    mods.sort(key=lambda p: (rank[layer_of(dotted(p))], p.name != "__init__.py", dotted(p)))
    lines = ["nlclf/" + " " * 22 + "(a module imports only the ones above it: tests/test_layering.py)"]
    group = None                                            # the package whose members are listed below it
    for p in mods:
        rel = p.relative_to(ROOT)
        if p.name == "__init__.py":
            group = rel.parent
            lines.append(f"  {str(rel.parent) + '/':<26}{summary(p)}")
        elif len(rel.parts) > 1 and rel.parent == group:
            lines.append(f"    {rel.name:<24}{summary(p)}")
        else:
            group = None
            lines.append(f"  {str(rel):<26}{summary(p)}")
    lines += [f"{name:<28}{what}" for name, what in OTHER]
    return "\n".join(lines)


def readme_section() -> str:
    text = README.read_text()
    start = text.index("## Layout")
    block = text.index("```", start)
    return text[block + 4:text.index("```", block + 3)].rstrip("\n")


def test_the_readme_layout_is_the_tree():
    """Regenerate with: python tests/test_layering.py --write-readme"""
    assert readme_section() == layout(), "README's layout is stale: python tests/test_layering.py --write-readme"


if __name__ == "__main__" and "--write-readme" in sys.argv:
    text = README.read_text()
    start = text.index("## Layout")
    block = text.index("```", start)
    end = text.index("```", block + 3)
    README.write_text(text[:block + 4] + layout() + "\n" + text[end:])

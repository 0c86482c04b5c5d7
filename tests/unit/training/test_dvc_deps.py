"""dvc.yaml's promise: each stage's `deps` list every first-party Python file the stage can run,
and nothing else, so a code change re-runs exactly the stages it can affect (a missing entry
lets `dvc repro` report "up to date" while the model is stale; a stale one re-runs for nothing).

The closure is computed statically from the stage's `python -m training.<stage>` module: every
import, including those inside functions, followed through every first-party package, plus
the package `__init__.py` files an import runs, plus sibling `.py` files a module names in a
string literal (training.registry hands mlflow_pyfunc.py to MLflow by path).
"""

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DVC_STAGES: dict[str, dict] = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _module_file(root: Path, module: str) -> Path | None:
    """The first-party file `module` names under `root`, or None (third party, attribute)."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file() and (root / module.split(".")[0] / "__init__.py").is_file():
            return candidate
    return None


def _imported_names(root: Path, path: Path, tree: ast.AST) -> set[str]:
    """Dotted names of everything `path` imports, wherever in the file the import sits."""
    package = list(path.relative_to(root).parts[:-1])  # where `from . import x` starts
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            anchor = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*anchor, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _files_imported_by(root: Path, path: Path) -> set[Path]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[Path] = set()
    for name in _imported_names(root, path, tree):
        parts = name.split(".")
        # `import a.b.c` runs a/__init__.py and a/b/__init__.py before a/b/c.py.
        for end in range(1, len(parts) + 1):
            file = _module_file(root, ".".join(parts[:end]))
            if file is not None:
                found.add(file)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            sibling = path.parent / node.value
            if node.value.endswith(".py") and "/" not in node.value and sibling.is_file():
                found.add(sibling)
    return found


def first_party_closure(root: Path, module: str) -> set[str]:
    """Repository-relative POSIX paths of every first-party file `python -m module` can run."""
    start = _module_file(root, module)
    assert start is not None, f"{module} is not a first-party module under {root}"
    parts = module.split(".")
    # `python -m a.b` runs a/__init__.py first.
    packages = (_module_file(root, ".".join(parts[:end])) for end in range(1, len(parts)))
    todo = {start, *(p for p in packages if p is not None)}
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        seen.add(path)
        todo |= _files_imported_by(root, path) - seen
    return {p.relative_to(root).as_posix() for p in seen}


def stage_module(cmd: str) -> str:
    match = re.fullmatch(r"python -m ([\w.]+)", cmd.strip())
    assert match, f"a stage runs `python -m MODULE`, not {cmd!r}"
    return match.group(1)


@pytest.mark.parametrize("stage", sorted(DVC_STAGES))
def test_each_stage_lists_exactly_the_first_party_code_it_runs(stage: str) -> None:
    spec = DVC_STAGES[stage]
    runs = first_party_closure(ROOT, stage_module(spec["cmd"]))
    listed = {dep for dep in spec["deps"] if dep.endswith(".py")}
    missing, stale = sorted(runs - listed), sorted(listed - runs)
    assert not missing and not stale, f"dvc.yaml, stage {stage}: add {missing}, remove {stale}"


def test_the_closure_follows_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    # The checker itself, on a made-up repository: were it blind to a kind of import, the
    # stage test above would pass while dvc.yaml lies.
    files = {
        "pkg/__init__.py": "",
        "pkg/stage.py": "import json\n\ndef main():\n    from pkg import helper\n",
        "pkg/helper.py": "from .sub.deep import x\nCODE = 'loaded_by_path.py'\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/deep.py": "x = 1\n",
        "pkg/loaded_by_path.py": "",
        "pkg/unused.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    assert first_party_closure(tmp_path, "pkg.stage") == set(files) - {"pkg/unused.py"}

"""The folder rule behind "the gateway never imports torch".

`common/ml/` is the torch side; everything else in `common/`, and all of `gateway/` and
`client/`, is torch-free: it runs in the gateway image, which has neither torch nor mlflow.
The worker's main process (Celery app, tasks, health check, reload) is torch-free too, so no
torch or CUDA state is forked into its pool; each child loads the model itself.

Two checks, one per kind of mistake: a static one that also sees imports hidden inside
functions, and an import-time one that sees what a module pulls in through its dependencies.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TORCH_FREE_PACKAGES = ("common", "gateway", "client")
TORCH_SIDE = ("torch", "torchvision", "common.ml")
# The worker modules its main process imports before forking its pool.
WORKER_MAIN_PROCESS = ("worker.celery_app", "worker.tasks", "worker.healthcheck", "worker.reload")


def _torch_free_files() -> list[Path]:
    files = [p for pkg in TORCH_FREE_PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    # `client/__main__.py` runs the CLI when imported; it imports nothing but client.cli.
    return sorted(
        p for p in files if not p.is_relative_to(ROOT / "common" / "ml") and p.name != "__main__.py"
    )


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _is_torch_side(module: str) -> bool:
    return any(module == side or module.startswith(side + ".") for side in TORCH_SIDE)


def test_no_torch_free_module_imports_torch_or_common_ml_even_inside_a_function() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(filter(_is_torch_side, _imported_modules(path)))
        for path in _torch_free_files()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


PROBE = """
import importlib, json, sys
for module in sys.argv[1:]:
    importlib.import_module(module)
    heavy = [m for m in ("torch", "mlflow") if m in sys.modules]
    if heavy:
        print(json.dumps([module, heavy]))
        break
else:
    print(json.dumps(None))
"""


def test_importing_the_gateway_client_and_worker_main_process_pulls_in_no_torch_or_mlflow() -> None:
    modules = [_module_name(p) for p in _torch_free_files()] + list(WORKER_MAIN_PROCESS)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # The first module that pulled in a heavy package, with what it pulled in; null if none.
    assert json.loads(result.stdout) is None, result.stdout

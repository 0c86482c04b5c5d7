#!/usr/bin/env bash
# Gathers what bench/gpu.sh needs on a GPU machine that can fetch nothing, in .gpu/ (ignored
# by git: .git/info/exclude), about 45 MiB: the Python packages the stack needs beyond that
# machine's image (its Python is 3.12, with torch, numpy and Pillow), Debian's redis-server
# with its libraries, the served checkpoint, 256 Kaggle photos and the commit measured.
# Run it after `make up` (the champion must exist) on a clean tree:
#     bash bench/gpu_prepare.sh
# then, through the device tool, with carry [".gpu"]:  bash bench/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
CARRY=.gpu
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf "$CARRY" && mkdir -p "$CARRY"/whl "$CARRY"/redis/lib "$CARRY"/photos "$CARRY"/model

# The gateway's and worker's packages not in that image, at this project's pins
# (requirements/gateway.txt); pip resolves nothing there, so each dependency is named.
PINS=$($PY -m pip list --format=freeze 2>/dev/null | grep -i -E "^($(tr '\n' '|' <<'NAMES' | sed 's/|$//'
amqp
annotated-doc
annotated-types
anyio
billiard
celery
click
click-didyoumean
click-plugins
click-repl
fastapi
h11
httptools
idna
kombu
opentelemetry-api
packaging
pillow
prometheus_client
prompt_toolkit
pydantic
pydantic_core
pydantic-settings
python-dateutil
python-dotenv
python-multipart
redis
six
starlette
typing_extensions
typing-inspection
tzlocal
uvicorn
vine
wcwidth
NAMES
))==")
PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
# shellcheck disable=SC2086
$PY -m pip download -q --no-deps "${PLATFORM[@]}" -d "$CARRY"/whl $PINS
# The set is whole: it resolves with nothing but itself.
# shellcheck disable=SC2086
$PY -m pip install -q --dry-run --no-index --find-links "$CARRY"/whl "${PLATFORM[@]}" \
  --target "$(mktemp -d)" $PINS

# redis-server (Debian's binary dispatches on its name) and the libraries it links.
cp "$(readlink -f "$(command -v redis-server)")" "$CARRY"/redis/redis-server.bin
ldd "$CARRY"/redis/redis-server.bin | awk '/=>/ {print $3}' \
  | grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s)\.so' | xargs -I{} cp -L {} "$CARRY"/redis/lib/
cat > "$CARRY"/redis/redis-server <<'SH'
#!/bin/bash
here="$(cd "$(dirname "$0")" && pwd)"
LD_LIBRARY_PATH="$here/lib" exec -a redis-server "$here/redis-server.bin" "$@"
SH
chmod +x "$CARRY"/redis/redis-server

# The champion's checkpoint, as a worker would download it.
$PY - "$CARRY"/model/checkpoint.pt <<'PYTHON'
import shutil, sys
from common.ml.loading import resolve_registry_checkpoint
from common.settings import get_settings
settings = get_settings()
path, name, version = resolve_registry_checkpoint(settings.model_uri, settings.mlflow_tracking_uri)
shutil.copy(path, sys.argv[1])
print(f"model {name} v{version}: {path}")
PYTHON

# 128 cats and 128 dogs, named as in the Kaggle set.
KAGGLE=../shared/data/kaggle-dogs-vs-cats/train
for n in $(seq 0 127); do cp "$KAGGLE/cat.$n.jpg" "$KAGGLE/dog.$n.jpg" "$CARRY"/photos/; done

git diff --quiet HEAD -- || echo "warning: tracked files differ from HEAD: the result says -dirty" >&2
git rev-parse HEAD > "$CARRY"/commit
du -sh "$CARRY"

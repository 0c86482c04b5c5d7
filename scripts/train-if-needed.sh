#!/usr/bin/env bash
# Train and register a model unless the registry already has a champion.
#   DATA=PATH  train on a local folder instead of downloading from Kaggle
#   RETRAIN=1  train even when a champion exists
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

champion=$(python -m training.champion 2>/dev/null || true)
if [[ -n "$champion" && "${RETRAIN:-0}" != "1" ]]; then
  echo "catdog: champion already registered ($champion); skipping training (RETRAIN=1 forces it)"
  exit 0
fi

if [[ -n "${DATA:-}" ]]; then
  if [[ ! -d "$DATA" ]]; then
    echo "catdog: DATA=$DATA is not a folder" >&2
    exit 2
  fi
  echo "catdog: training on local folder $DATA (params.yaml data.source is set to it)"
  python -m training.params set data.source "$DATA"
  dvc repro
else
  echo "catdog: training on the Kaggle source in params.yaml (set DATA=PATH for a local folder)"
  dvc repro
fi
python -m training.champion >/dev/null || {
  echo "catdog: training finished but no champion is registered; see metrics/promotion.json" >&2
  exit 1
}

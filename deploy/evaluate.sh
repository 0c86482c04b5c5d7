#!/usr/bin/env bash
# Post-deployment evaluation gate on the VM: deploy/evaluate.sh SHA
#
# Runs `python -m client evaluate-deployment --url http://gateway:8000 --data /eval-data
# --min-accuracy $EVAL_MIN_ACCURACY` in a one-off container of the release's worker image
# (compose service `evaluate`, profile `tools`): the labelled photos in EVAL_DATA_DIR go
# through the live API as a job, the report is logged to MLflow, and the exit status is
# non-zero below the threshold, which fails the pipeline and triggers the rollback.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sha="${1:-}"
valid_sha "$sha" || die "usage: evaluate.sh SHA"
read -r running version <<<"$(read_state current)"
[ "$running" = "$sha" ] || die "release $sha is not the one running"

require_eval_photos
log "evaluating release $sha on $(eval_data_dir)"
compose "$sha" "$version" --profile tools run --rm --no-deps evaluate
log "evaluation passed"

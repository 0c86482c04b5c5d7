#!/usr/bin/env bash
# Which model version a release will carry: deploy/resolve-model.sh [ALIAS]
#
# Prints the registry version number the alias (default: champion) names now, resolved once
# by CI before the gate and passed to deploy.sh, so the release records models:/catdog/N and
# an alias that moves later changes nothing that runs. Exits 3, saying so, when there is no
# champion yet (the first deploy): register one first (README.md, section Deployment).
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ -f "$ENV_FILE" ] || die "no env file at $ENV_FILE"
resolve_alias "${1:-champion}"

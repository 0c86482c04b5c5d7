# shellcheck shell=bash
# The container engine the harness drives. Sourced by tests/containers/run.sh.
#
# ENGINE=docker where a Docker engine answers (CircleCI's machine executor): nothing to set
# up, the real third-party images are pulled. Otherwise ENGINE=podman, a Docker-compatible
# engine on a machine without Docker: Debian's podman as root, its Docker API on a socket,
# and Debian's docker-compose (v1) against it. Every step is idempotent, so a second run
# reuses what the first one installed and built.
#
# What this machine kind needs, tried by hand first (../shared/CONTAINERS.md): runc (crun
# fails on hybrid cgroups), default ulimits below the sandbox's hard limits, the CNI network
# backend with the dnsname plugin (containers reach each other by service name), and
# healthchecks run by the harness itself (podman schedules them with systemd, and there is
# none here).

ENGINE_PACKAGES=(podman runc containernetworking-plugins golang-github-containernetworking-plugin-dnsname
  debootstrap uidmap fuse-overlayfs slirp4netns docker-compose)
ENGINE_SOCKET="${ENGINE_SOCKET:-/run/podman/podman.sock}"
if [ -z "${ENGINE:-}" ]; then
  if docker info --format '{{.ServerVersion}}' 2>/dev/null | grep -q '^[0-9]'; then ENGINE=docker; else ENGINE=podman; fi
fi

# engine_up: the engine answering, `docker` and `docker compose` working on PATH.
engine_up() {
  [ "$ENGINE" = docker ] && return
  engine_install
  engine_start
  engine_docker_shim
  engine_base_image
  engine_healthchecks_start
}

engine_down() {
  [ "$ENGINE" = docker ] && return
  engine_healthchecks_stop
  engine_stop
}

engine_install() {
  local missing=() pkg
  for pkg in "${ENGINE_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} with apt"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
  fi
  # The engine's configuration is written only where none exists: a machine whose
  # administrator configured podman keeps that configuration.
  if [ ! -f /etc/containers/containers.conf ]; then
    cat >/etc/containers/containers.conf <<'CONF'
# Written by catdog's tests/containers/engine.sh (see ../shared/CONTAINERS.md).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
[network]
network_backend = "cni"
CONF
  fi
}

# engine_start: the Docker API on $ENGINE_SOCKET, served by `podman system service`; its pid
# goes to $WORK/engine.pid so engine_stop ends exactly it.
engine_start() {
  if curl -fsS --unix-socket "$ENGINE_SOCKET" http://d/_ping >/dev/null 2>&1; then
    say "container engine already answers on $ENGINE_SOCKET"
    return
  fi
  mkdir -p "$(dirname "$ENGINE_SOCKET")"
  podman system service --time=0 "unix://$ENGINE_SOCKET" >"$WORK/engine.log" 2>&1 &
  echo $! >"$WORK/engine.pid"
  for _ in $(seq 1 50); do
    curl -fsS --unix-socket "$ENGINE_SOCKET" http://d/_ping >/dev/null 2>&1 && return
    sleep 0.2
  done
  die "podman system service did not answer on $ENGINE_SOCKET (see $WORK/engine.log)"
}

engine_stop() {
  if [ -f "$WORK/engine.pid" ]; then
    kill "$(cat "$WORK/engine.pid")" 2>/dev/null || true
    rm -f "$WORK/engine.pid"
  fi
}

# A `docker` on PATH for the real deploy scripts: `docker compose ...` is docker-compose v1
# on the podman socket, anything else is podman. Nothing after this hop is simulated.
engine_docker_shim() {
  mkdir -p "$WORK/bin"
  cat >"$WORK/bin/docker" <<'SHIM'
#!/usr/bin/env bash
if [ "${1:-}" = compose ]; then
  shift
  exec docker-compose "$@"
fi
exec podman "$@"
SHIM
  chmod +x "$WORK/bin/docker"
  export PATH="$WORK/bin:$PATH" DOCKER_HOST="unix://$ENGINE_SOCKET"
}

# Healthchecks, run by the harness every few seconds (podman has no systemd to run them).
# `depends_on: condition: service_healthy` then works as it does under Docker.
engine_healthchecks_start() {
  engine_healthchecks_stop
  (
    while :; do
      for name in $(podman ps --filter health=starting --filter health=healthy --filter health=unhealthy \
        --format '{{.Names}}' 2>/dev/null); do
        podman healthcheck run "$name" >/dev/null 2>&1 &
      done
      wait
      sleep 2
    done
  ) &
  echo $! >"$WORK/healthchecks.pid"
}

engine_healthchecks_stop() {
  if [ -f "$WORK/healthchecks.pid" ]; then
    kill "$(cat "$WORK/healthchecks.pid")" 2>/dev/null || true
    rm -f "$WORK/healthchecks.pid"
  fi
}

# A Debian bookworm base (Python 3.11) made with debootstrap, since no registry can be
# pulled from: localhost/catdog-base:bookworm. The Dockerfiles take it as PYTHON_IMAGE.
BASE_IMAGE="localhost/catdog-base:bookworm"
engine_base_image() {
  if podman image exists "$BASE_IMAGE"; then
    return
  fi
  say "making $BASE_IMAGE with debootstrap (about 2 minutes)"
  local rootfs="$WORK/rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,curl \
    bookworm "$rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 ||
    die "debootstrap failed (see $WORK/debootstrap.log)"
  # Debian marks its Python externally managed; images install into their own venvs.
  cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/" 2>/dev/null || true
  rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
  tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

#!/usr/bin/env bash
# One-time set-up of a fresh Debian 12 or Ubuntu 22.04/24.04 VM for catdog. Idempotent: run
# it again after an OS upgrade or to add the GPU runtime.
#
#   sudo bash vm-setup.sh DEPLOY_USER DOCKERHUB_NAMESPACE        # CPU VM
#   sudo GPU=1 bash vm-setup.sh DEPLOY_USER DOCKERHUB_NAMESPACE  # VM with an NVIDIA GPU
#
# 1. Docker Engine and the compose plugin from Docker's apt repository.
# 2. DEPLOY_USER (the user CI logs in as) may run docker.
# 3. /opt/catdog: releases/, eval-data/, and .env made from .env.example (next to this
#    script's folder) with freshly generated secrets, mode 600. Existing files are kept.
# 4. GPU=1: the NVIDIA Container Toolkit (the NVIDIA driver must already be installed, as on
#    GCP's GPU images), and COMPOSE_PROFILES=gpu in .env.
# 5. A self-signed TLS certificate for the proxy (deploy/tls.sh; replace it with Let's
#    Encrypt's once DNS points here), and cron lines: certificate renewal and a nightly
#    backup (deploy/backup.sh), both as DEPLOY_USER.
# 6. The MLflow server of the stack, started from this checkout's docker-compose.yml, so the
#    first champion can be registered (through an SSH tunnel) before the first deploy. Later
#    deploys find it running with the same definition and leave it alone.
# Run it from a copy of the repository's docker-compose.yml, .env.example and deploy/
# (README.md, section Deployment ships them with tar over `gcloud compute ssh`).
#
# Firewall: open only 22 (SSH), 80 and 443 (the proxy) in the cloud firewall (README.md, section Deployment has
# the gcloud rule). Docker's published ports bypass ufw/iptables rules on the VM itself, which
# is why compose publishes MLflow and Prometheus on 127.0.0.1 only and nothing else but the
# proxy: reach those through `gcloud compute ssh VM -- -L 5000:127.0.0.1:5000`.
set -euo pipefail

log() { echo "vm-setup: $*"; }

install_docker() {
  if docker compose version >/dev/null 2>&1; then
    log "Docker and the compose plugin are installed"
    return
  fi
  log "installing Docker Engine and the compose plugin"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends ca-certificates curl gnupg
  install -m 0755 -d /etc/apt/keyrings
  curl -fsSL "https://download.docker.com/linux/$ID/gpg" -o /etc/apt/keyrings/docker.asc
  chmod a+r /etc/apt/keyrings/docker.asc
  echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc]" \
    "https://download.docker.com/linux/$ID $VERSION_CODENAME stable" \
    >/etc/apt/sources.list.d/docker.list
  apt-get update -qq
  apt-get install -y -qq docker-ce docker-ce-cli containerd.io docker-buildx-plugin \
    docker-compose-plugin
}

configure_docker() {
  # live-restore: containers keep running while the Docker daemon restarts or upgrades.
  if [ ! -f /etc/docker/daemon.json ]; then
    mkdir -p /etc/docker
    printf '{\n  "live-restore": true\n}\n' >/etc/docker/daemon.json
    systemctl restart docker
  fi
  systemctl enable --now docker >/dev/null
  # Membership of the docker group is root-equivalent: give it to the deploy user only.
  usermod -aG docker "$deploy_user"
  log "$deploy_user may run docker (takes effect at its next login)"
}

install_gpu_runtime() {
  command -v nvidia-smi >/dev/null 2>&1 || {
    echo "GPU=1 but nvidia-smi is missing: install the NVIDIA driver first" >&2
    exit 1
  }
  if ! command -v nvidia-ctk >/dev/null 2>&1; then
    log "installing the NVIDIA Container Toolkit"
    curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey |
      gpg --dearmor --yes -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
    curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list |
      sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#' \
        >/etc/apt/sources.list.d/nvidia-container-toolkit.list
    apt-get update -qq
    apt-get install -y -qq nvidia-container-toolkit
  fi
  nvidia-ctk runtime configure --runtime=docker >/dev/null
  systemctl restart docker
}

set_env() {
  # set_env NAME VALUE: replace the NAME= line of the env file.
  sed -i "s|^$1=.*|$1=$2|" "$root/.env"
}

make_deploy_root() {
  install -d -o "$deploy_user" -g "$deploy_user" -m 0750 "$root" "$root/releases"
  # Readable by the evaluation container's non-root user; the photos are not secret.
  install -d -o "$deploy_user" -g "$deploy_user" -m 0755 "$root/eval-data" "$root/smoke" "$root/acme"
  install -d -o "$deploy_user" -g 101 -m 0750 "$root/tls"
  if [ -f "$root/.env" ]; then
    log "$root/.env exists: kept as it is"
  else
    [ -f "$example" ] || {
      echo "no .env.example at $example: copy the repository's .env.example there" >&2
      exit 1
    }
    install -o "$deploy_user" -g "$deploy_user" -m 0600 "$example" "$root/.env"
    set_env DOCKERHUB_NAMESPACE "$namespace"
    set_env REDIS_PASSWORD "$(openssl rand -hex 24)"
    set_env CATDOG_CALLBACK_SECRET "$(openssl rand -hex 32)"
    set_env CATDOG_FLOWER_BASIC_AUTH "admin:$(openssl rand -hex 16)"
    set_env GRAFANA_ADMIN_PASSWORD "$(openssl rand -hex 16)"
    set_env EVAL_DATA_DIR "$root/eval-data"
    log "wrote $root/.env with new secrets (read them with: sudo cat $root/.env)"
  fi
  if [ "${GPU:-0}" = 1 ]; then set_env COMPOSE_PROFILES gpu; fi
}

set_up_tls_and_cron() {
  if [ ! -s "$root/tls/fullchain.pem" ]; then
    # TLS_NAME: the address CI reaches the VM at (DEPLOY_HOST), so the smoke test can verify it.
    DEPLOY_ROOT="$root" bash "$here/tls.sh" self-signed "${TLS_NAME:-$(hostname -f)}"
    chown -R "$deploy_user" "$root/tls"
  fi
  # The scripts of the release that runs, so a deploy updates what cron runs.
  local cron="/etc/cron.d/catdog"
  cat >"$cron" <<CRON
# catdog (deploy/vm-setup.sh): certificate renewal and a nightly backup.
SHELL=/bin/bash
17 3 * * * $deploy_user cd $root && bash releases/\$(cut -d' ' -f1 current)/deploy/tls.sh renew >>$root/cron.log 2>&1
41 2 * * * $deploy_user cd $root && bash releases/\$(cut -d' ' -f1 current)/deploy/backup.sh >>$root/cron.log 2>&1
CRON
  chmod 0644 "$cron"
  log "cron: $cron (TLS renewal, nightly backup to $root/backups)"
}

start_mlflow() {
  local compose_dir="$root/bootstrap"
  install -d -o "$deploy_user" -g "$deploy_user" "$compose_dir"
  install -o "$deploy_user" -g "$deploy_user" -m 0644 "$here/../docker-compose.yml" "$compose_dir/"
  log "starting MLflow (compose project catdog)"
  # No release exists yet: the images and model of one are named only to fill the file.
  IMAGE_TAG=none CATDOG_MODEL_URI=none docker compose --project-name catdog --env-file "$root/.env" \
    -f "$compose_dir/docker-compose.yml" up -d --wait mlflow
}

main() {
  deploy_user="${1:?usage: sudo bash vm-setup.sh DEPLOY_USER DOCKERHUB_NAMESPACE}"
  namespace="${2:?usage: sudo bash vm-setup.sh DEPLOY_USER DOCKERHUB_NAMESPACE}"
  [ "$(id -u)" -eq 0 ] || {
    echo "run as root: sudo bash $0 $*" >&2
    exit 1
  }
  id "$deploy_user" >/dev/null 2>&1 || {
    echo "no user $deploy_user on this VM (log in once with gcloud compute ssh to create it)" >&2
    exit 1
  }
  # shellcheck source=/dev/null
  . /etc/os-release
  case "$ID" in debian | ubuntu) ;; *)
    echo "unsupported OS: $ID (Debian or Ubuntu)" >&2
    exit 1
    ;;
  esac
  export DEBIAN_FRONTEND=noninteractive

  install_docker
  configure_docker
  if [ "${GPU:-0}" = 1 ]; then install_gpu_runtime; fi
  make_deploy_root
  set_up_tls_and_cron
  start_mlflow
  docker compose version
  log "done. Next (README.md, section Deployment): register a champion through a tunnel to MLflow, copy"
  log "labelled photos to $root/eval-data/ and a cat.jpg and dog.jpg to $root/smoke/, add the"
  log "CircleCI contexts, push to main."
}

root="${DEPLOY_ROOT:-/opt/catdog}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
example="$here/../.env.example"
# Run, unless sourced (tests source it to exercise make_deploy_root on a scratch folder).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi

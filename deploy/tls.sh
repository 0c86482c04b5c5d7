#!/usr/bin/env bash
# The proxy's TLS certificate, in $TLS_DIR (default /opt/catdog/tls): fullchain.pem and
# privkey.pem, which docker-compose.yml mounts into the proxy.
#
#   deploy/tls.sh self-signed [NAME]          a certificate of its own for NAME, the VM's
#                                             public address or host name (default: its host
#                                             name), valid 825 days: HTTPS works at once (CI
#                                             trusts it for the smoke test), browsers warn
#                                             until a real one replaces it
#   deploy/tls.sh letsencrypt DOMAIN EMAIL    a Let's Encrypt certificate for DOMAIN, obtained
#                                             with certbot's HTTP challenge through the running
#                                             proxy (port 80 must reach this VM), then the
#                                             proxy is restarted to serve it
#   deploy/tls.sh renew                       renews a Let's Encrypt certificate when it is due
#                                             (a daily cron line; vm-setup.sh installs one)
#
# The switch from self-signed to Let's Encrypt is `deploy/tls.sh letsencrypt ...` once the
# domain's DNS points at the VM; nothing else changes.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ -f "$ENV_FILE" ] || die "no env file at $ENV_FILE"
tls_dir="$(tls_dir)"
acme_dir="$(env_value ACME_WEBROOT "$DEPLOY_ROOT/acme")"
letsencrypt_dir="$DEPLOY_ROOT/letsencrypt"
CERTBOT_IMAGE="${CERTBOT_IMAGE:-certbot/certbot:v2.11.0}"
mkdir -p "$tls_dir" "$acme_dir"

# install_pair CERT KEY: into TLS_DIR, replacing the old pair by rename (the proxy never
# sees half a file). The key is readable by its owner and group 101, the proxy's user.
install_pair() {
  install -m 0644 "$1" "$tls_dir/fullchain.pem.new"
  install -m 0640 "$2" "$tls_dir/privkey.pem.new"
  chgrp 101 "$tls_dir/privkey.pem.new" 2>/dev/null || chmod 0644 "$tls_dir/privkey.pem.new"
  mv "$tls_dir/fullchain.pem.new" "$tls_dir/fullchain.pem"
  mv "$tls_dir/privkey.pem.new" "$tls_dir/privkey.pem"
}

restart_proxy() {
  local running sha version
  running="$(read_state current)"
  [ -n "$running" ] || return 0
  read -r sha version <<<"$running"
  compose "$sha" "$version" restart proxy >/dev/null
  log "proxy restarted with the new certificate"
}

certbot() {
  docker run --rm -v "$letsencrypt_dir:/etc/letsencrypt" -v "$acme_dir:/var/www/acme" \
    "$CERTBOT_IMAGE" "$@"
}

case "${1:-}" in
  self-signed)
    name="${2:-$(hostname -f 2>/dev/null || hostname)}"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    # NAME is what callers type: the VM's address (CI's DEPLOY_HOST) or a host name.
    if [[ "$name" =~ ^[0-9.]+$ ]]; then san="IP:$name"; else san="DNS:$name"; fi
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=$name" \
      -addext "subjectAltName=$san,DNS:localhost,IP:127.0.0.1" \
      -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
    install_pair "$tmp/cert.pem" "$tmp/key.pem"
    log "self-signed certificate for $name in $tls_dir"
    restart_proxy
    ;;
  letsencrypt)
    domain="${2:?usage: tls.sh letsencrypt DOMAIN EMAIL}"
    email="${3:?usage: tls.sh letsencrypt DOMAIN EMAIL}"
    certbot certonly --webroot -w /var/www/acme -d "$domain" --email "$email" \
      --agree-tos --non-interactive --keep-until-expiring
    install_pair "$letsencrypt_dir/live/$domain/fullchain.pem" "$letsencrypt_dir/live/$domain/privkey.pem"
    printf '%s\n' "$domain" >"$tls_dir/letsencrypt-domain"
    log "Let's Encrypt certificate for $domain in $tls_dir"
    restart_proxy
    ;;
  renew)
    [ -f "$tls_dir/letsencrypt-domain" ] || {
      log "no Let's Encrypt certificate here: nothing to renew"
      exit 0
    }
    domain="$(cat "$tls_dir/letsencrypt-domain")"
    certbot renew --webroot -w /var/www/acme --quiet
    if ! cmp -s "$letsencrypt_dir/live/$domain/fullchain.pem" "$tls_dir/fullchain.pem"; then
      install_pair "$letsencrypt_dir/live/$domain/fullchain.pem" "$letsencrypt_dir/live/$domain/privkey.pem"
      restart_proxy
    fi
    ;;
  *) die "usage: tls.sh self-signed [NAME] | letsencrypt DOMAIN EMAIL | renew" ;;
esac

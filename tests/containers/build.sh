# shellcheck shell=bash
# Builds the two project images from the real Dockerfiles (on the podman engine: on the
# local Debian base, with pip's local configuration, and the stand-ins for the third-party
# images that cannot be pulled). Sourced by tests/containers/run.sh.

# pip's own configuration on this machine (files and PIP_* variables), rewritten as one
# pip.conf for the build containers, plus the local folders it points at, mounted
# read-only: that is how a build reaches a local wheel mirror (torch 2.14.1 lies in one
# here; the PyTorch index cannot be reached).
pip_build_volumes() {
  local conf="$WORK/pip.conf" key value path
  local -A mounts=() seen=()
  echo "[global]" >"$conf"
  while IFS= read -r line; do
    key="${line%%=*}"
    value="${line#*=}"
    value="${value#\'}"
    value="${value%\'}"
    key="${key##*.}"
    # pip lists its variables first, and they win over its files: keep the first of each.
    [ -n "${seen[$key]:-}" ] && continue
    seen["$key"]=1
    echo "$key = $value" >>"$conf"
    for path in $value; do
      path="${path#file://}"
      [[ "$path" == /* && -e "$path" ]] && mounts["$(cut -d/ -f1-3 <<<"$path")"]=1
    done
  done < <(pip config list 2>/dev/null)
  BUILD_VOLUMES=(--volume "$conf:/etc/pip.conf:ro")
  for path in "${!mounts[@]}"; do
    BUILD_VOLUMES+=(--volume "$path:$path:ro")
  done
}

# build_image NAME DOCKERFILE [ARGS...]: podman build, timed; prints the seconds it took.
build_image() {
  local name="$1" dockerfile="$2" started=$SECONDS
  shift 2
  local -a build=(docker build --quiet)
  [ "$ENGINE" = podman ] && build=(podman build --quiet --format docker --network host "${BUILD_VOLUMES[@]}"
    --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE")
  "${build[@]}" -f "$dockerfile" -t "$name" "$@" "$REPO" >"$WORK/build-$(basename "$dockerfile").log" 2>&1 ||
    die "building $name from $dockerfile failed (see $WORK/build-$(basename "$dockerfile").log)"
  echo $((SECONDS - started))
}

image_size() { docker image inspect --format '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'; }

build_all() {
  local seconds
  local -a torch_source=()
  if [ "$ENGINE" = podman ]; then
    pip_build_volumes
    # This machine's pip holds the pinned torch; the PyTorch index cannot be reached.
    torch_source=(--build-arg TORCH_INDEX_URL=)
    for standin in redis nginx prometheus; do
      if ! podman image exists "localhost/catdog-standin-$standin:1"; then
        seconds="$(build_image "localhost/catdog-standin-$standin:1" "$HERE/images/Dockerfile.$standin")"
        say "built stand-in $standin in ${seconds}s"
      fi
    done
  fi
  seconds="$(build_image "$NAMESPACE/catdog-gateway:$TAG" "$REPO/Dockerfile.gateway")"
  say "IMAGE catdog-gateway: $(image_size "$NAMESPACE/catdog-gateway:$TAG"), built in ${seconds}s"
  seconds="$(build_image "$NAMESPACE/catdog-worker:$TAG" "$REPO/Dockerfile.worker" "${torch_source[@]}")"
  say "IMAGE catdog-worker: $(image_size "$NAMESPACE/catdog-worker:$TAG"), built in ${seconds}s"
  # Earlier builds of the same tags (a worker image is several GB).
  docker image prune -f >/dev/null
}

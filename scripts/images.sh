#!/usr/bin/env bash
# Build farside's container images with Debian's buildah (no Docker engine needed): the
# gateway, the pilot, JupyterHub for the chart (hub) and the hub's notebook profiles
# (notebook-cpu, notebook-ml, notebook-gpu), each from images/<name>/Containerfile, then
# smoke-run each one inside itself (images/smoke.py).
#
#   scripts/images.sh [IMAGE...]        build and smoke-run (default: all six)
#   scripts/images.sh build IMAGE...    the same
#   scripts/images.sh smoke IMAGE...    only smoke-run images already built
#   scripts/images.sh wheels            only (re)make the wheelhouse
#   scripts/images.sh names             print the image names this script builds
#
# Every image installs farside from a wheelhouse made from this checkout, pinned to the
# versions in .venv (pip freeze), so an image holds exactly what the tests ran against and
# its build needs no package index. The base image is a build argument: by default a
# Debian bookworm made here with debootstrap, holding the CPython .venv was made from
# (registries' images cannot be pulled on the test machines); FARSIDE_IMAGE_BASE=docker.io/library/python:3.11-slim-bookworm (the
# Containerfiles' own default) builds on a public image instead.
#
# Environment:
#   FARSIDE_IMAGE_PREFIX  name prefix (default localhost/farside); images are PREFIX/NAME:TAG
#   FARSIDE_IMAGE_TAG     tag (default: farside's version)
#   FARSIDE_IMAGE_BASE    base image (default: the debootstrapped localhost/farside/debian-base)
#   FARSIDE_GPU_PACKAGES  what notebook-gpu adds (default "": the CPU build; "jax[cuda12]"
#                         puts ~2 GB of CUDA wheels into the wheelhouse and the image)
#   FARSIDE_INFRA_DIR     where the base's root file system and the wheelhouse are kept
#                         (default /var/tmp/farside-infra/images)
# Storage: buildah's own (root: /var/lib/containers/storage), vfs driver, chroot isolation.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${FARSIDE_INFRA_DIR:-/var/tmp/farside-infra}/images
PY=$ROOT/.venv/bin/python
PREFIX=${FARSIDE_IMAGE_PREFIX:-localhost/farside}
ALL=(gateway pilot hub notebook-cpu notebook-ml notebook-gpu)
LOCAL_BASE=$PREFIX/debian-base:bookworm
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot

say() { echo "images.sh: $*" >&2; }
die() { say "$*"; exit 1; }

tag() {
  [ -n "${FARSIDE_IMAGE_TAG:-}" ] && { echo "$FARSIDE_IMAGE_TAG"; return; }
  "$PY" -c 'import farside_protocol; print(farside_protocol.__version__)'
}

install_tools() {
  command -v buildah >/dev/null && command -v debootstrap >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "buildah and debootstrap are missing; as root: apt-get install buildah debootstrap"
  say "installing buildah and debootstrap (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends buildah debootstrap >/dev/null
}

mirror() {  # the machine's own Debian mirror, as its apt sources name it
  local m
  m=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -m1 '/debian$' | awk '{print $2}' || true)
  [ -n "$m" ] || m=$(grep -hoE '^deb +[^ ]+/debian ' /etc/apt/sources.list 2>/dev/null |
    awk '{print $2}' | head -1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# the shared libraries CPython's own extension modules link against (ldd lib-dynload/*.so)
PYTHON_LIBS=libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,libreadline8,libncursesw6,libexpat1,libuuid1,zlib1g,libnsl2,libtirpc3,libgdbm6,ca-certificates

local_base() {  # Debian bookworm + the tests' own CPython at /usr/local, as image $LOCAL_BASE
  buildah inspect --type image "$LOCAL_BASE" >/dev/null 2>&1 && return 0
  local rootfs=$DIR/rootfs ctr mnt prefix version
  if [ ! -e "$rootfs/etc/debian_version" ] || [ ! -e "$rootfs/.farside-base" ]; then
    say "debootstrap bookworm (once, ~40 s)"
    rm -rf "$rootfs" && mkdir -p "$DIR"
    debootstrap --variant=minbase --include="$PYTHON_LIBS" \
      bookworm "$rootfs" "$(mirror)" >"$DIR/debootstrap.log" 2>&1 ||
      die "debootstrap failed; see $DIR/debootstrap.log"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    touch "$rootfs/.farside-base"
  fi
  # Debian's python3 is 3.11.2, older than some pinned wheels allow (soupsieve wants
  # 3.11.5+): copy the interpreter .venv was made from instead, without its site-packages,
  # into /usr/local, where python:3.11-slim keeps its own
  prefix=$("$PY" -c 'import sys; print(sys.base_prefix)')
  version=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  cp -a "$rootfs"/. "$mnt"/
  mkdir -p "$mnt/usr/local/bin" "$mnt/usr/local/lib"
  cp -a "$prefix/bin/python$version" "$mnt/usr/local/bin/"
  ln -sf "python$version" "$mnt/usr/local/bin/python3"
  ln -sf "python$version" "$mnt/usr/local/bin/python"
  cp -a "$prefix"/lib/libpython"$version"*.so* "$mnt/usr/local/lib/" 2>/dev/null || true
  tar -C "$prefix/lib" --exclude="python$version/site-packages" \
    --exclude="python$version/test" --exclude="python$version/idlelib" \
    --exclude="python$version/tkinter" --exclude="python$version/turtledemo" \
    --exclude="python$version/config-$version-*" -cf - "python$version" |
    tar -C "$mnt/usr/local/lib" -xf -
  mkdir -p "$mnt/usr/local/lib/python$version/site-packages"
  chroot "$mnt" /sbin/ldconfig
  chroot "$mnt" /usr/local/bin/python3 -c 'import ssl, sqlite3, ctypes, venv, ensurepip' ||
    die "the copied CPython does not work in the base image"
  buildah unmount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd python3 "$ctr"
  buildah commit -q "$ctr" "$LOCAL_BASE" >/dev/null
  buildah rm "$ctr" >/dev/null
}

wheels() {  # farside and its dependencies as wheels, at the versions installed in .venv
  local house=$DIR/wheels extras="gateway,dask,hub,analysis,ml" constraints
  [ -x "$PY" ] || die "no $PY; run scripts/setup.sh first"
  mkdir -p "$house"
  rm -f "$house"/farside-*.whl  # always this checkout's own
  constraints=$(mktemp)
  "$ROOT/.venv/bin/pip" freeze --exclude-editable | grep -v '^farside' >"$constraints"
  say "wheelhouse: farside[$extras] ${FARSIDE_GPU_PACKAGES:-} -> $house"
  # shellcheck disable=SC2086  # FARSIDE_GPU_PACKAGES is a list of requirements
  "$ROOT/.venv/bin/pip" wheel -q --disable-pip-version-check --wheel-dir "$house" \
    -c "$constraints" "$ROOT[$extras]" ipykernel jupyterhub-kubespawner \
    ${FARSIDE_GPU_PACKAGES:-} 2>&1 |
    grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  rm -f "$constraints"
  ls "$house"/farside-*.whl >/dev/null 2>&1 || die "the wheelhouse has no farside wheel"
}

build_one() {  # build_one NAME
  local name=$1 t base args=()
  t=$(tag)
  base=${FARSIDE_IMAGE_BASE:-$LOCAL_BASE}
  case "$name" in
    gateway | pilot | hub | notebook-cpu) args+=(--build-arg "BASE=$base") ;;
    notebook-ml) args+=(--build-arg "NOTEBOOK=$PREFIX/notebook-cpu:$t") ;;
    notebook-gpu)
      args+=(--build-arg "NOTEBOOK=$PREFIX/notebook-ml:$t")
      args+=(--build-arg "GPU_PACKAGES=${FARSIDE_GPU_PACKAGES:-}") ;;
    *) die "unknown image $name (known: ${ALL[*]})" ;;
  esac
  say "building $PREFIX/$name:$t"
  local t0=$SECONDS
  buildah bud -q --layers=false --pull=never "${args[@]}" \
    -f "$ROOT/images/$name/Containerfile" -t "$PREFIX/$name:$t" "$DIR/wheels" >/dev/null
  say "built $PREFIX/$name:$t in $((SECONDS - t0)) s"
}

smoke_one() {  # smoke_one NAME: run images/smoke.py inside the image
  local name=$1 ctr rc=0
  ctr=$(buildah from --pull=never "$PREFIX/$name:$(tag)")
  buildah run --isolation chroot -v "$ROOT/images/smoke.py:/tmp/farside-smoke.py:ro" \
    "$ctr" -- python /tmp/farside-smoke.py "$name" || rc=$?
  buildah rm "$ctr" >/dev/null
  [ "$rc" = 0 ] || die "smoke test of $name failed"
}

ordered() {  # the asked-for images, each after the one it is built FROM
  local want=("$@") name
  [ ${#want[@]} -gt 0 ] || want=("${ALL[@]}")
  for name in "${want[@]}"; do
    case " ${ALL[*]} " in *" $name "*) ;; *) die "unknown image $name (known: ${ALL[*]})" ;; esac
  done
  for name in "${ALL[@]}"; do
    case " ${want[*]} " in *" $name "*) echo "$name" ;; esac
  done
}

needs_parent() {  # a notebook image whose parent is not built yet gets its parent built too
  local name=$1 parent=""
  case "$name" in
    notebook-ml) parent=notebook-cpu ;;
    notebook-gpu) parent=notebook-ml ;;
  esac
  [ -n "$parent" ] || return 0
  buildah inspect --type image "$PREFIX/$parent:$(tag)" >/dev/null 2>&1 && return 0
  needs_parent "$parent"
  build_one "$parent"
}

cmd=${1:-build}
case "$cmd" in
  build | smoke | wheels | names) shift || true ;;
  *) cmd=build ;;
esac
case "$cmd" in
  names)
    for name in $(ordered "$@"); do echo "$PREFIX/$name:$(tag)"; done ;;
  wheels)
    wheels ;;
  smoke)
    for name in $(ordered "$@"); do smoke_one "$name"; done ;;
  build)
    install_tools
    local_base_needed=true
    [ -n "${FARSIDE_IMAGE_BASE:-}" ] && local_base_needed=false
    $local_base_needed && local_base
    wheels
    names=$(ordered "$@")
    for name in $names; do
      needs_parent "$name"
      build_one "$name"
      smoke_one "$name"
    done ;;
esac

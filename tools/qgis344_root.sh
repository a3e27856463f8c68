#!/usr/bin/env bash
# A Debian 13 root with QGIS 3.44 LTR (trixie-backports), built once per machine and reused, so the
# suite also runs on the QGIS, Python 3.13, GDAL 3.10, numpy 2 and torch 2.6 that analysts have today.
#
#   tools/qgis344_root.sh build            build the root if missing or if its recipe changed
#   tools/qgis344_root.sh test [ARGS...]   run `make test-host` (pytest ARGS) in the root on this checkout
#   tools/qgis344_root.sh shell [CMD...]   a command (default: bash) in the root, checkout at /src
#
# Needs root (debootstrap, chroot, mount). The root lives in $MMLC_ROOT_CACHE (default
# /var/cache/mmlc/trixie-qgis344), outside any checkout. Every mount is made inside a private mount
# namespace (unshare -m) and unmounted by a trap as well, so nothing stays mounted on the host, even
# when a command fails or is killed. The checkout is bind-mounted at /src; the Makefile inside sets up
# its own venv (/var/lib/mmlc/venv, --system-site-packages) the way it does on a Debian 13 host:
# Debian's python3-torch, pytest & co. from PyPI.
set -euo pipefail

CACHE=${MMLC_ROOT_CACHE:-/var/cache/mmlc/trixie-qgis344}
MIRROR=${MMLC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=trixie
BACKPORTS_PACKAGES="qgis python3-qgis qgis-providers python3-gdal gdal-bin"
STABLE_PACKAGES="python3-torch python3-safetensors xvfb xauth python3-venv python3-pip make ca-certificates"
# Bump when the way the root is made changes. A changed base (suite, mirror, version) rebuilds the root
# from scratch; a changed package list re-runs the (idempotent) apt step on the existing root.
RECIPE_VERSION=1
hash_of() { printf '%s' "$1" | sha256sum | cut -c1-16; }
BASE_HASH=$(hash_of "v$RECIPE_VERSION|$SUITE|$MIRROR")
PACKAGES_HASH=$(hash_of "$BASE_HASH|$BACKPORTS_PACKAGES|$STABLE_PACKAGES")
BASE_STAMP=.mmlc-root-base
PACKAGES_STAMP=.mmlc-root-packages
CHECKOUT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV_IN_ROOT=/var/lib/mmlc/venv

die() { echo "qgis344_root: $*" >&2; exit 1; }
log() { echo "qgis344_root: $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and mount)"

mounted_under() {  # prints the mount points at or below $1 (host namespace)
    local dir; dir=$(readlink -f "$1")
    awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts
}

safe_remove() {  # rm -rf a root, refusing if anything is mounted inside it (a bound /dev would be wiped)
    [ -e "$1" ] || return 0
    if [ -n "$(mounted_under "$1")" ]; then
        die "refusing to delete $1: still mounted there: $(mounted_under "$1" | tr '\n' ' ')"
    fi
    rm -rf --one-file-system "$1"
}

# --- inside the private mount namespace ---------------------------------------------------------
MOUNTED=()
unmount_all() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" 2>/dev/null || true
    done
    MOUNTED=()
}

mount_system() {  # /proc, /sys, /dev, /dev/pts, /dev/shm (and the checkout at /src when $2 is set)
    local root=$1 src=${2:-}
    trap unmount_all EXIT INT TERM
    mount -t proc proc "$root/proc" && MOUNTED+=("$root/proc")
    mount -t sysfs sysfs "$root/sys" && MOUNTED+=("$root/sys")
    mount --bind /dev "$root/dev" && MOUNTED+=("$root/dev")
    mount --bind /dev/pts "$root/dev/pts" && MOUNTED+=("$root/dev/pts")
    mkdir -p "$root/dev/shm"
    mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm" && MOUNTED+=("$root/dev/shm")
    if [ -n "$src" ]; then
        mkdir -p "$root/src"
        mount --bind "$src" "$root/src" && MOUNTED+=("$root/src")
    fi
}

in_root() {  # run a command chrooted into $1 with a clean environment
    local root=$1; shift
    chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
        PYTHONDONTWRITEBYTECODE=1 QT_QPA_PLATFORM=offscreen "$@"
}

copy_host_network_config() {  # DNS, host names, the host's CA bundle and pip configuration
    local root=$1
    cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    # the host's own name must resolve in the root too (torchrun's rendezvous advertises it)
    cp -L /etc/hosts "$root/etc/hosts" 2>/dev/null || true
    hostname >"$root/etc/hostname" 2>/dev/null || true
    mkdir -p "$root/usr/local/share/mmlc"
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        cp /etc/ssl/certs/ca-certificates.crt "$root/usr/local/share/mmlc/host-ca.crt"
    fi
    if [ -f /etc/pip.conf ]; then
        # the host's pip.conf names the host's bundle path; point it at the copy
        sed 's#/etc/ssl/certs/ca-certificates.crt#/usr/local/share/mmlc/host-ca.crt#' /etc/pip.conf >"$root/etc/pip.conf"
    elif [ -f "$root/usr/local/share/mmlc/host-ca.crt" ]; then
        printf '[global]\ncert = /usr/local/share/mmlc/host-ca.crt\n' >"$root/etc/pip.conf"
    fi
}

install_packages() {  # namespace-side half of build: apt inside the fresh root
    local root=$1
    mount_system "$root"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -f "$root/etc/apt/sources.list"
    copy_host_network_config "$root"
    # no daemons start inside the root
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod +x "$root/usr/sbin/policy-rc.d"
    in_root "$root" apt-get update -q
    # shellcheck disable=SC2086
    in_root "$root" apt-get install -y -q --no-install-recommends -t "$SUITE-backports" $BACKPORTS_PACKAGES
    # shellcheck disable=SC2086
    in_root "$root" apt-get install -y -q --no-install-recommends $STABLE_PACKAGES
    in_root "$root" apt-get clean
    in_root "$root" sh -c 'dpkg-query -W -f "\${Package} \${Version}\n" qgis python3 python3-gdal python3-numpy python3-torch' \
        | sed 's/^/  /' >&2
    unmount_all
    trap - EXIT INT TERM
}

root_is_current() {
    [ "$(cat "$CACHE/$BASE_STAMP" 2>/dev/null)" = "$BASE_HASH" ] &&
        [ "$(cat "$CACHE/$PACKAGES_STAMP" 2>/dev/null)" = "$PACKAGES_HASH" ]
}

build() {
    if root_is_current; then  # the common case: no lock, so runs in progress (shared lock) do not block it
        log "root up to date: $CACHE"
        return 0
    fi
    mkdir -p "$(dirname "$CACHE")"
    exec 9>"$CACHE.lock"
    flock 9  # waits for runs in progress, and for another build
    if [ "$(cat "$CACHE/$BASE_STAMP" 2>/dev/null)" = "$BASE_HASH" ]; then
        if [ "$(cat "$CACHE/$PACKAGES_STAMP" 2>/dev/null)" = "$PACKAGES_HASH" ]; then
            log "root up to date: $CACHE"
            return 0
        fi
        log "package list changed: updating $CACHE"
        unshare --mount --propagation private bash "$0" __install "$CACHE"
        echo "$PACKAGES_HASH" >"$CACHE/$PACKAGES_STAMP"
        return 0
    fi
    command -v debootstrap >/dev/null || {
        log "installing debootstrap"
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
    }
    local tmp=$CACHE.building start=$SECONDS
    safe_remove "$tmp"
    log "building $CACHE: debootstrap $SUITE, then QGIS from $SUITE-backports (about 15 min, once per machine)"
    debootstrap --variant=minbase "$SUITE" "$tmp" "$MIRROR"
    unshare --mount --propagation private bash "$0" __install "$tmp"
    echo "$BASE_HASH" >"$tmp/$BASE_STAMP"
    echo "$PACKAGES_HASH" >"$tmp/$PACKAGES_STAMP"
    safe_remove "$CACHE"
    mv "$tmp" "$CACHE"
    log "built $CACHE in $((SECONDS - start)) s"
}

run_in_root() {  # namespace side of test/shell: mount, chroot, unmount
    mount_system "$CACHE" "$CHECKOUT"
    copy_host_network_config "$CACHE"
    set +e
    in_root "$CACHE" "$@"
    local rc=$?
    set -e
    unmount_all
    trap - EXIT INT TERM
    return $rc
}

main() {
    case "${1:-}" in
        build) build ;;
        test)
            shift
            build
            exec 9>"$CACHE.lock"
            flock -s 9  # no rebuild while a run uses the root
            local args=""
            [ $# -eq 0 ] || args=$(printf '%q ' "$@")
            unshare --mount --propagation private bash "$0" __run \
                bash -c "cd /src && make --no-print-directory test-host STACK=qgis344 ROOT_TOOLS= VENV=$VENV_IN_ROOT PYTEST_ARGS=\"\$1\"" \
                _ "${args% }"
            ;;
        shell)
            shift
            build
            exec 9>"$CACHE.lock"
            flock -s 9
            unshare --mount --propagation private bash "$0" __run "${@:-bash}"
            ;;
        __install) install_packages "$2" ;;
        __run) shift; run_in_root "$@" ;;
        *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
}

# One line: bash has read it whole before running it, so editing this file while a build runs
# cannot change what the running build does next.
main "$@"; exit $?

#!/usr/bin/env bash
# flux-dev.sh: build flux-core from source once and run commands inside a throw-away,
# single-broker Flux instance, for contributors who want the real thing behind the
# Flux executor (CI uses the simulator, cluster_api.testing.fluxsim, instead).
#
#   scripts/flux-dev.sh build          install build dependencies (apt), build and install
#                                      flux-core into $FLUX_DEV_PREFIX (idempotent)
#   scripts/flux-dev.sh run CMD...     run CMD inside `flux start --test-size=1`, e.g.
#                                      CLUSTER_API_TEST_REAL_FLUX=1 scripts/flux-dev.sh run \
#                                          .venv/bin/pytest tests/test_flux_integration.py
#                                      (tests that inspect the simulator still use it)
#   scripts/flux-dev.sh status         exit 0 if the built flux answers `flux version`
#
# Written from /work/shared/spec/SCHEDULERS.md §4.7 (flux-core 0.88.0 built on Debian 12
# as root, no systemd: about 9 minutes on 2 cores, a 75 MB prefix). UNTESTED as a script:
# the steps are the recorded ones, the script around them was not run here.
#
# Environment knobs (all optional):
#   FLUX_DEV_PREFIX=/opt/flux-core   where flux-core is installed
#   FLUX_DEV_SRC=/opt/flux-core-src  where its source is cloned
#   FLUX_DEV_REF=v0.88.0             the flux-core tag or commit to build
#   FLUX_DEV_JOBS=3                  make -j
#   FLUX_DEV_PYTHON=/usr/bin/python3 the Python configure uses (it needs ply, cffi, yaml;
#                                    a pyenv python without ply fails configure)
set -euo pipefail

PREFIX=${FLUX_DEV_PREFIX:-/opt/flux-core}
SRC=${FLUX_DEV_SRC:-/opt/flux-core-src}
REF=${FLUX_DEV_REF:-v0.88.0}
JOBS=${FLUX_DEV_JOBS:-3}
PY=${FLUX_DEV_PYTHON:-/usr/bin/python3}
REPO=https://github.com/flux-framework/flux-core.git

PACKAGES=(
    autoconf automake libtool make pkg-config gcc g++ git
    libzmq3-dev uuid-dev libjansson-dev liblz4-dev libarchive-dev libhwloc-dev
    libsqlite3-dev lua5.1 liblua5.1-dev lua-posix
    python3-dev python3-cffi python3-ply python3-yaml jq
)

die() { echo "flux-dev: $*" >&2; exit 1; }

flux_bin() { echo "$PREFIX/bin/flux"; }

install_packages() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        echo "flux-dev: installing ${missing[*]}"
        apt-get update -q
        apt-get -o DPkg::Lock::Timeout=300 install -y -q "${missing[@]}"
    fi
}

build() {
    if "$(flux_bin)" version >/dev/null 2>&1; then
        echo "flux-dev: flux-core already installed in $PREFIX"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "build installs packages: run it as root"
    install_packages
    if [ ! -d "$SRC/.git" ]; then
        git clone --quiet "$REPO" "$SRC"
    fi
    git -C "$SRC" fetch --quiet --tags origin
    git -C "$SRC" checkout --quiet "$REF"
    local version=${REF#v}
    (
        cd "$SRC"
        # autogen reads the version from git describe; a detached or shallow tree may
        # not have it, so it is given (as §4.7 did for an exported snapshot).
        FLUX_VERSION=$version ./autogen.sh
        PYTHON=$PY ./configure --prefix="$PREFIX" --disable-docs
        make -j"$JOBS"
        make install
    )
    "$(flux_bin)" version
}

run() {
    (($#)) || die "usage: flux-dev.sh run CMD..."
    "$(flux_bin)" version >/dev/null 2>&1 || die "flux-core is not built: run flux-dev.sh build"
    # One broker, sched-simple, no munge or systemd needed; everything CMD starts sees
    # FLUX_URI, and `flux` on PATH.
    PATH="$PREFIX/bin:$PATH" exec "$(flux_bin)" start --test-size=1 "$@"
}

case "${1:-}" in
    build) build ;;
    run) shift; run "$@" ;;
    status) "$(flux_bin)" version ;;
    *) die "usage: flux-dev.sh build | run CMD... | status" ;;
esac

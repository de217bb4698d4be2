#!/usr/bin/env bash
# Installs the external tools the checks need, only when they are missing:
#   - helm, built from its Go module into the cache bin dir (minutes the first time);
#   - prometheus and promtool, from Debian's `prometheus` package.
# Idempotent, and silent when everything is already there. Put the cache bin dir on PATH:
#   PATH="${XDG_CACHE_HOME:-$HOME/.cache}/cohort-streamer/bin:$PATH"
set -euo pipefail

# The newest helm 3.x whose go.mod the machine's Go accepts (v3.22.0 needs go >= 1.26.0; it is
# built on k8s.io/client-go v0.37, the Kubernetes 1.37 that tests/test_helm.py validates against).
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
BIN_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/cohort-streamer/bin"

say() { printf 'ensure_tools: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

ensure_helm() {
    local stamp="$BIN_DIR/.helm-version"
    if [[ -x "$BIN_DIR/helm" && -f "$stamp" && "$(<"$stamp")" == "$HELM_VERSION" ]]; then
        return 0
    fi
    command -v go >/dev/null || die "helm is missing and so is go: install Go (https://go.dev/doc/install) first"
    mkdir -p "$BIN_DIR"
    say "building helm $HELM_VERSION from helm.sh/helm/v3 into $BIN_DIR (a few minutes the first time)"
    # GOTOOLCHAIN=local: build with the installed Go, never fetch another toolchain.
    export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
    # Stamp what helm's own Makefile stamps: its version, and the Kubernetes version of the
    # client-go it is built on (else `helm template` and `helm lint` assume Kubernetes 1.20).
    local gomod k8s_minor pkg=helm.sh/helm/v3
    gomod="$(cd / && go mod download -json "$pkg@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    k8s_minor="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod")"
    [[ -n "$k8s_minor" ]] || die "cannot read the client-go version from $gomod"
    local ldflags="-s -w -X $pkg/internal/version.version=$HELM_VERSION"
    for var in pkg/lint/rules pkg/chartutil; do
        ldflags+=" -X $pkg/$var.k8sVersionMajor=1 -X $pkg/$var.k8sVersionMinor=$k8s_minor"
    done
    local log
    log="$(mktemp)"
    if ! (cd / && GOBIN="$BIN_DIR" go install -ldflags "$ldflags" "$pkg/cmd/helm@$HELM_VERSION") >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "go install of helm $HELM_VERSION failed (see above)"
    fi
    rm -f "$log"
    printf '%s\n' "$HELM_VERSION" >"$stamp"
}

ensure_prometheus() {
    if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
        return 0
    fi
    local sudo=""
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || die "prometheus/promtool missing: run as root or install Debian's 'prometheus' package"
        sudo="sudo"
    fi
    say "installing prometheus and promtool (Debian package 'prometheus')"
    $sudo apt-get update -qq >/dev/null
    # The package's service is not wanted (tests start their own prometheus); no prompts, no recommends.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    command -v promtool >/dev/null || die "apt-get installed prometheus but promtool is not on PATH"
}

ensure_helm
ensure_prometheus

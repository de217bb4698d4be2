#!/usr/bin/env bash
# Makes stand-ins for the Dockerfile's public base images, for machines that cannot pull them
# (tests/test_image.py builds the real Dockerfile on these, changing only its base-image args):
#   - python: a Debian bookworm root filesystem (debootstrap --variant=minbase) with Python 3.11
#     from Debian's packages, in place of python:3.11-slim;
#   - rust: the same plus this machine's default Rust toolchain (rustup layout under /usr/local,
#     as the rust image has it), in place of rust:1-slim-bookworm.
# Both trust the machine's CA certificates: outgoing TLS here may be re-signed by a local
# authority, and pip and cargo inside the build fail without it.
# Installs buildah and debootstrap from Debian when missing (apt-get update first). Idempotent:
# the root filesystem is cached under ~/.cache/cohort-streamer/image and the stand-ins stay in
# buildah's storage, rebuilt only when their fingerprint (STANDIN_REVISION, the CA bundle, the
# toolchain) changes. Prints the two image names, one per line (`--tools-only`: only installs).
set -euo pipefail

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/cohort-streamer/image"
PYTHON_STANDIN=localhost/cohort-streamer-standin/python:3.11-bookworm
RUST_STANDIN=localhost/cohort-streamer-standin/rust:1-bookworm
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
LOCAL_CAS=/usr/local/share/ca-certificates
CERT_ENV=(--env "SSL_CERT_FILE=$CA_BUNDLE" --env "PIP_CERT=$CA_BUNDLE" --env "CARGO_HTTP_CAINFO=$CA_BUNDLE")

say() { printf 'image_standins: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

ensure_packages() {
    command -v buildah >/dev/null && command -v debootstrap >/dev/null && return 0
    [[ "$(id -u)" == 0 ]] || die "buildah/debootstrap missing: run as root or install Debian's 'buildah' and 'debootstrap'"
    say "installing buildah and debootstrap (Debian packages)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        buildah debootstrap >/dev/null
}

# Bump when what goes into a stand-in changes (a new stand-in means a cold image build).
STANDIN_REVISION=1

fingerprint() {
    { echo "$STANDIN_REVISION"; cat "$CA_BUNDLE"; rustc --version; } | sha256sum | cut -c1-16
}

is_current() {  # image fingerprint
    [[ "$(buildah inspect --type image --format '{{index .Docker.Config.Labels "standin.fingerprint"}}' \
        "$1" 2>/dev/null)" == "$2" ]]
}

# The bookworm root filesystem, made once (debootstrap takes a minute or two).
bookworm_rootfs() {
    local rootfs="$CACHE/bookworm-python3.11"
    if [[ ! -f "$rootfs/.complete" ]]; then
        rm -rf "$rootfs"
        say "debootstrap --variant=minbase bookworm (+ python3.11) into $rootfs"
        debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-distutils,ca-certificates \
            bookworm "$rootfs" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 \
            || die "debootstrap failed: $CACHE/debootstrap.log"
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        # python:3.11-slim answers to `python` and `python3`
        ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python"
        ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python3"
        touch "$rootfs/.complete"
    fi
    mkdir -p "$rootfs$LOCAL_CAS"
    cp "$LOCAL_CAS"/*.crt "$rootfs$LOCAL_CAS/" 2>/dev/null || true
    cp "$CA_BUNDLE" "$rootfs$CA_BUNDLE"
    printf '%s\n' "$rootfs"
}

make_python_standin() {
    local fp="$1" rootfs ctr mnt
    rootfs="$(bookworm_rootfs)"
    ctr="$(buildah from scratch)"
    mnt="$(buildah mount "$ctr")"
    tar -C "$rootfs" --exclude=./.complete -cf - . | tar -C "$mnt" -xpf -
    buildah umount "$ctr" >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 "${CERT_ENV[@]}" --cmd python3 \
        --label standin.fingerprint="$fp" "$ctr"
    buildah commit --rm --quiet "$ctr" "$PYTHON_STANDIN" >/dev/null
}

make_rust_standin() {
    local fp="$1" toolchain name ctr mnt
    name="$(rustup show active-toolchain | cut -d' ' -f1)"
    toolchain="$(readlink -f "$(rustup toolchain list -v | sed -n "s/^$name[^/]*\(\/.*\)$/\1/p" | head -1)")"
    [[ -x "$toolchain/bin/cargo" ]] || die "cannot find the toolchain $name (got '$toolchain')"
    ctr="$(buildah from "$PYTHON_STANDIN")"
    mnt="$(buildah mount "$ctr")"
    mkdir -p "$mnt/usr/local/cargo/bin" "$mnt/usr/local/rustup/toolchains/$name"
    # the rustup proxies (cargo, rustc, ... -> rustup) and the toolchain without its documentation
    cp -a "$(command -v rustup)" "$mnt/usr/local/cargo/bin/rustup"
    for tool in cargo rustc rustdoc; do ln -sf rustup "$mnt/usr/local/cargo/bin/$tool"; done
    tar -C "$toolchain" --exclude=./share/doc -cf - . | tar -C "$mnt/usr/local/rustup/toolchains/$name" -xpf -
    printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$name" \
        >"$mnt/usr/local/rustup/settings.toml"
    buildah umount "$ctr" >/dev/null
    buildah config --env CARGO_HOME=/usr/local/cargo --env RUSTUP_HOME=/usr/local/rustup \
        --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --label standin.fingerprint="$fp" "$ctr"
    buildah commit --rm --quiet "$ctr" "$RUST_STANDIN" >/dev/null
}

main() {
    ensure_packages
    [[ "${1:-}" == --tools-only ]] && return 0
    mkdir -p "$CACHE"
    local fp
    fp="$(fingerprint)"
    if ! is_current "$PYTHON_STANDIN" "$fp"; then
        say "making $PYTHON_STANDIN"
        make_python_standin "$fp"
    fi
    if ! is_current "$RUST_STANDIN" "$fp"; then
        say "making $RUST_STANDIN"
        make_rust_standin "$fp"
    fi
    printf '%s\n%s\n' "$PYTHON_STANDIN" "$RUST_STANDIN"
}

main "$@"

# Shared by cross/build, cross/test-emulated and cross/size-report (sourced, not run).
# Installs what the cross builds need, idempotently: rustup components and targets, zig and
# cargo-zigbuild from PyPI (pinned: a zig update can change how musl is linked), qemu-user.

ALL_TARGETS=(
    x86_64-unknown-linux-musl
    aarch64-unknown-linux-musl
    armv7-unknown-linux-musleabihf
    mips-unknown-linux-musl
    mipsel-unknown-linux-musl
)
ZIGBUILD_VERSION=0.24.0
ZIGLANG_VERSION=0.17.1

# -Z flags (build-std, immediate-abort) on the stable toolchain: the machine may have no nightly.
export RUSTC_BOOTSTRAP=1

log() { printf '%s\n' "cross: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Targets that rustup ships a std for; the others get std built from source.
has_rustup_std() {
    case $1 in x86_64-unknown-linux-musl | aarch64-unknown-linux-musl) return 0 ;; esac
    return 1
}

# qemu-user binary name for a target (x86_64 runs natively here).
qemu_arch() {
    case $1 in
    x86_64-*) echo "" ;;
    aarch64-*) echo aarch64 ;;
    armv7-*) echo arm ;;
    mipsel-*) echo mipsel ;;
    mips-*) echo mips ;;
    *) die "unknown target $1" ;;
    esac
}

check_targets() {
    local t known
    for t in "$@"; do
        known=no
        for k in "${ALL_TARGETS[@]}"; do [[ $t == "$k" ]] && known=yes; done
        [[ $known == yes ]] || die "unknown target $t (known: ${ALL_TARGETS[*]})"
    done
}

host_triple() { rustc -vV | sed -n 's/^host: //p'; }
llvm_tool() { echo "$(rustc --print sysroot)/lib/rustlib/$(host_triple)/bin/$1"; }

ensure_rust() {
    local installed t
    installed=$(rustup component list --installed)
    grep -q '^rust-src' <<<"$installed" || rustup component add rust-src
    grep -q '^llvm-tools' <<<"$installed" || rustup component add llvm-tools
    for t in "$@"; do
        if has_rustup_std "$t" && ! grep -q "^rust-std-$t" <<<"$installed"; then
            rustup target add "$t"
        fi
    done
}

ensure_zig() {
    hash -r
    if [[ $(cargo-zigbuild --version 2>/dev/null) != "cargo-zigbuild $ZIGBUILD_VERSION" ]] ||
        [[ $(python3 -m ziglang version 2>/dev/null) != "$ZIGLANG_VERSION" ]]; then
        python3 -m pip install --quiet --disable-pip-version-check \
            "cargo-zigbuild==$ZIGBUILD_VERSION" "ziglang==$ZIGLANG_VERSION"
        hash -r
    fi
    cargo-zigbuild --version >/dev/null || die "cargo-zigbuild is not on PATH after pip install"
}

ensure_qemu() {
    local t a missing=no
    for t in "$@"; do
        a=$(qemu_arch "$t")
        [[ -z $a ]] || command -v "qemu-$a-static" >/dev/null || missing=yes
    done
    if [[ $missing == yes ]]; then
        # qemu-user only: qemu-system packages would replace the machine's qemu-utils.
        apt-get install -y --no-install-recommends qemu-user-static >/dev/null ||
            { apt-get update -qq && apt-get install -y --no-install-recommends qemu-user-static >/dev/null; }
    fi
}

#!/bin/sh
# Builds the Go memberlist peer for tests/interop.rs from Debian's packages only (GOPATH mode,
# no network), with the Go toolchain in GOROOT (default: the `go` on PATH), into
# target/gopeer-<go version>-<checksum of main.go>; prints that path. Builds only once per
# toolchain and source.
# Needs: apt-get install --no-install-recommends golang-go golang-github-hashicorp-memberlist-dev
# (and tests/go-toolchains.sh for the newer Go).
#
#   tests/interop/build-gopeer.sh [GOROOT]
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
src="$root/tests/interop/gopeer/main.go"
target_dir=${CARGO_TARGET_DIR:-"$root/target"}
case "$target_dir" in
    /*) ;;
    *) target_dir="$root/$target_dir" ;;
esac
gocode=/usr/share/gocode

if [ $# -gt 0 ]; then
    go="$1/bin/go"
    export GOROOT="$1"
else
    go=go
fi
if ! command -v "$go" >/dev/null 2>&1; then
    echo "build-gopeer: '$go' not found: apt-get install --no-install-recommends golang-go golang-github-hashicorp-memberlist-dev" >&2
    exit 2
fi
if [ ! -d "$gocode/src/github.com/hashicorp/memberlist" ]; then
    echo "build-gopeer: memberlist sources not in $gocode: apt-get install --no-install-recommends golang-github-hashicorp-memberlist-dev" >&2
    exit 2
fi
version=$("$go" env GOVERSION)
out="$target_dir/gopeer-$version-$(cksum <"$src" | cut -d' ' -f1)"
if [ -x "$out" ]; then
    echo "$out"
    exit 0
fi

# A private GOPATH holding only the peer's package; memberlist and its imports come from
# Debian's $gocode.
work="$target_dir/gopeer-gopath-$version"
mkdir -p "$work/src/gopeer" "$work/cache"
cp "$src" "$work/src/gopeer/main.go"
cd "$work/src/gopeer"
GO111MODULE=off GOTOOLCHAIN=local GOPATH="$work:$gocode" GOPROXY=off GOFLAGS= \
    GOCACHE="${GOCACHE:-$work/cache}" \
    "$go" build -o "$out.tmp" . >&2
mv "$out.tmp" "$out"
echo "$out"

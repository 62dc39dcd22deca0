#!/bin/sh
# Builds the Go memberlist peer for tests/interop.rs into target/gopeer, from Debian's packages
# only (GOPATH mode, no network). Rebuilds only when main.go is newer than the binary.
# Needs: apt-get install --no-install-recommends golang-go golang-github-hashicorp-memberlist-dev
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
src="$root/tests/interop/gopeer/main.go"
target_dir=${CARGO_TARGET_DIR:-"$root/target"}
case "$target_dir" in
    /*) ;;
    *) target_dir="$(pwd)/$target_dir" ;; # cargo reads a relative one from the current directory
esac
out="$target_dir/gopeer"
gocode=/usr/share/gocode

if [ -x "$out" ] && [ "$out" -nt "$src" ]; then
    echo "$out"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "build-gopeer: 'go' not found: apt-get install --no-install-recommends golang-go golang-github-hashicorp-memberlist-dev" >&2
    exit 2
fi
if [ ! -d "$gocode/src/github.com/hashicorp/memberlist" ]; then
    echo "build-gopeer: memberlist sources not in $gocode: apt-get install --no-install-recommends golang-github-hashicorp-memberlist-dev" >&2
    exit 2
fi

# A private GOPATH holding only the peer's package; memberlist and its imports come from
# Debian's $gocode.
work="$target_dir/gopeer-gopath"
mkdir -p "$work/src/gopeer"
cp "$src" "$work/src/gopeer/main.go"
mkdir -p "$work/cache"
cd "$work/src/gopeer"
GO111MODULE=off GOPATH="$work:$gocode" GOPROXY=off GOFLAGS= \
    GOCACHE="${GOCACHE:-$work/cache}" \
    go build -o "$out.tmp" . >&2
mv "$out.tmp" "$out"
echo "$out"

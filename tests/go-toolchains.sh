#!/bin/sh
# Makes the Go toolchains the Go-interop tests build with, and prints one GOROOT a line:
# Debian's golang-go (1.19 on bookworm) and a newer Go from bookworm-backports, since which
# ids encoding/gob hands out changed between them. The backports Go is fetched with a PRIVATE
# apt state (its own sources list, lists and cache, naming the machine's own Debian mirror), so
# the machine's apt sources stay as they are, then unpacked with dpkg -x under ~/.cache.
# Cached and idempotent: a second run downloads nothing.
#
#   tests/go-toolchains.sh          fetch if needed, print the GOROOTs
#   WESHER_BACKPORTS_GO=1.22 ...    another backports release (default 1.23)
set -eu

version=${WESHER_BACKPORTS_GO:-1.23}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/wesher-go
root="$cache/golang-$version"
goroot="$root/usr/lib/go-$version"

# Debian's own toolchain (golang-go), when installed.
if command -v go >/dev/null 2>&1; then
    go env GOROOT
fi

if [ ! -x "$goroot/bin/go" ]; then
    # The mirror the machine already uses for bookworm, from its deb822 or one-line sources.
    uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [ -z "$uri" ]; then
        uri=$(awk '$1 == "deb" && $3 ~ /^bookworm/ { print $2; exit }' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    fi
    if [ -z "$uri" ]; then
        echo "go-toolchains: no Debian mirror found in /etc/apt/sources.list.d" >&2
        exit 2
    fi
    apt="$cache/apt"
    mkdir -p "$apt/lists/partial" "$apt/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bookworm-backports main" \
        >"$apt/sources.list"
    : >"$apt/status"
    set -- -o Dir::State::Lists="$apt/lists" -o Dir::Etc::SourceList="$apt/sources.list" \
        -o Dir::Etc::SourceParts=/nonexistent -o Dir::State::Status="$apt/status" \
        -o Dir::Cache="$apt" -o Dir::Cache::Archives="$apt/archives" -o Debug::NoLocking=1 -o APT::Sandbox::User=root
    echo "go-toolchains: fetching golang-$version from bookworm-backports into $cache" >&2
    apt-get -qq "$@" update >&2
    (cd "$apt/archives" && apt-get -qq "$@" download "golang-$version-go" "golang-$version-src" >&2)
    rm -rf "$root.tmp"
    for deb in "$apt/archives/golang-$version-go_"*.deb "$apt/archives/golang-$version-src_"*.deb; do
        dpkg -x "$deb" "$root.tmp"
    done
    rm -rf "$root"
    mv "$root.tmp" "$root"
    rm -f "$apt/archives/"*.deb
fi
"$goroot/bin/go" version >/dev/null
echo "$goroot"

#!/bin/sh
# Checks openwrt/wesher/Makefile for what the OpenWrt packages feed expects of a Rust package,
# and that it agrees with Cargo.toml (version, licence) and ships the files it installs.
set -u
here=$(cd "$(dirname "$0")" && pwd)
pkg=$here/../wesher
mk=$pkg/Makefile
cargo_toml=$here/../../Cargo.toml
passed=0
failed=0

check() {
	if [ "$2" = ok ]; then
		passed=$((passed + 1))
		echo "ok: $1"
	else
		failed=$((failed + 1))
		echo "FAIL: $1${2:+ ($2)}"
	fi
}

# has NAME REGEX: a line of the Makefile matches the extended REGEX.
has() {
	if grep -Eq "$2" "$mk"; then check "$1" ok; else check "$1" "no line matches /$2/"; fi
}

# value VAR: the right-hand side of `VAR:=...`.
value() { sed -n "s/^$1:=//p" "$mk" | head -n1; }

has rules.mk '^include \$\(TOPDIR\)/rules\.mk$'
has PKG_NAME '^PKG_NAME:=wesher$'
has PKG_VERSION '^PKG_VERSION:=[0-9]+\.[0-9]+\.[0-9]+'
has PKG_RELEASE '^PKG_RELEASE:=[0-9]+$'
# A release tarball with its hash, as every Rust package of the feed (no git source, no skip).
has PKG_SOURCE '^PKG_SOURCE:=\$\(PKG_NAME\)-\$\(PKG_VERSION\)\.tar\.gz$'
has PKG_SOURCE_URL '^PKG_SOURCE_URL:=https://.+'
has PKG_HASH '^PKG_HASH:=[0-9a-f]{64}$'
lacks() {
	if grep -Eq "$2" "$mk"; then check "$1" "a line matches /$2/"; else check "$1" ok; fi
}
lacks no-git-source '^PKG_SOURCE_PROTO:='
lacks no-mirror-hash-skip '^PKG_MIRROR_HASH:='
has PKG_MAINTAINER '^PKG_MAINTAINER:=.+ <[^>]+@[^>]+>$'
has PKG_LICENSE '^PKG_LICENSE:=.+'
has PKG_LICENSE_FILES '^PKG_LICENSE_FILES:=LICENSE$'
has PKG_BUILD_DEPENDS '^PKG_BUILD_DEPENDS:=(.* )?rust/host( .*)?$'
has package.mk '^include \$\(INCLUDE_DIR\)/package\.mk$'
has rust-package.mk '^include \.\./\.\./lang/rust/rust-package\.mk$'
# Our size profile through the environment cargo install gets.
for v in OPT_LEVEL=s PANIC=abort LTO=true CODEGEN_UNITS=1 OVERFLOW_CHECKS=false; do
	has "CARGO_PKG_VARS $v" "^	CARGO_PROFILE_RELEASE_$v( \\\\)?$"
done
has CARGO_PKG_VARS '^CARGO_PKG_VARS \+= \\$'
has Package/wesher '^define Package/wesher$'
has SECTION '^  SECTION:=net$'
has CATEGORY '^  CATEGORY:=Network$'
has TITLE '^  TITLE:=.+'
has URL '^  URL:=https://.+'
has DEPENDS-kmod-wireguard '^  DEPENDS:=.*\+kmod-wireguard( |$)'
has DEPENDS-rust-arch '^  DEPENDS:=.*\$\(RUST_ARCH_DEPENDS\)'
has description '^define Package/wesher/description$'
has conffiles '^define Package/wesher/conffiles$'
has conffile-config '^/etc/config/wesher$'
has install '^define Package/wesher/install$'
has install-binary '^	\$\(INSTALL_BIN\) \$\(PKG_INSTALL_DIR\)/bin/wesher \$\(1\)/usr/sbin/$'
has install-init '^	\$\(INSTALL_BIN\) \./files/wesher\.init \$\(1\)/etc/init\.d/wesher$'
has install-config '^	\$\(INSTALL_CONF\) \./files/wesher\.config \$\(1\)/etc/config/wesher$'
has install-keep '^	\$\(INSTALL_DATA\) \./files/wesher\.keep \$\(1\)/lib/upgrade/keep\.d/wesher$'
has RustBinPackage '^\$\(eval \$\(call RustBinPackage,wesher\)\)$'
has BuildPackage '^\$\(eval \$\(call BuildPackage,wesher\)\)$'
[ -f "$here/../../LICENSE" ] && grep -q 'GNU GENERAL PUBLIC LICENSE' "$here/../../LICENSE" && grep -q 'Version 3, 29 June 2007' "$here/../../LICENSE" && r=ok || r="no GPL-3.0 LICENSE at the repository root"
check license-file "$r"

# Agreement with the crate.
crate_version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$cargo_toml" | head -n1)
crate_license=$(sed -n 's/^license = "\(.*\)"/\1/p' "$cargo_toml" | head -n1)
[ "$(value PKG_VERSION)" = "$crate_version" ] && r=ok || r="Makefile $(value PKG_VERSION), Cargo.toml $crate_version"
check version-matches-cargo "$r"
[ "$(value PKG_LICENSE)" = "$crate_license" ] && r=ok || r="Makefile $(value PKG_LICENSE), Cargo.toml $crate_license"
check license-matches-cargo "$r"

# Every ./files/X the Makefile installs exists; recipe lines start with a tab.
for f in $(grep -o '\./files/[A-Za-z0-9._-]*' "$mk" | sort -u); do
	[ -f "$pkg/$f" ] && r=ok || r="missing"
	check "ships $f" "$r"
done
[ -x "$pkg/files/wesher.init" ] && r=ok || r="not executable"
check init-executable "$r"
head -n1 "$pkg/files/wesher.init" | grep -qx '#!/bin/sh /etc/rc.common' && r=ok || r="first line is not the rc.common shebang"
check init-shebang "$r"
bad=$(awk '/^define Package\/wesher\/install$/ { on = 1; next } /^endef$/ { on = 0 } on && !/^\t/ { print NR }' "$mk")
[ -z "$bad" ] && r=ok || r="line(s) $bad"
check install-recipe-tabs "$r"
sh -n "$pkg/files/wesher.init" && r=ok || r="syntax error"
check init-syntax "$r"

for f in wesher-hosts-notify; do
	[ -x "$pkg/files/$f" ] && sh -n "$pkg/files/$f" && r=ok || r="not executable or a syntax error"
	check "$f-executable" "$r"
done

# The netifd protocol handler's package.
proto=$here/../wesher-proto
mk=$proto/Makefile
has proto-PKG_NAME '^PKG_NAME:=wesher-proto$'
[ "$(value PKG_VERSION)" = "$crate_version" ] && r=ok || r="Makefile $(value PKG_VERSION), Cargo.toml $crate_version"
check proto-version-matches-cargo "$r"
has proto-license "^PKG_LICENSE:=$crate_license$"
has proto-depends '^  DEPENDS:=\+wesher$'
has proto-pkgarch '^  PKGARCH:=all$'
has proto-install '^	\$\(INSTALL_BIN\) \./files/wesher\.sh \$\(1\)/lib/netifd/proto/wesher\.sh$'
has proto-BuildPackage '^\$\(eval \$\(call BuildPackage,wesher-proto\)\)$'
[ -x "$proto/files/wesher.sh" ] && sh -n "$proto/files/wesher.sh" && r=ok || r="not executable or a syntax error"
check proto-handler "$r"

echo "openwrt Makefile: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

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
has PKG_SOURCE_PROTO '^PKG_SOURCE_PROTO:=git$'
has PKG_SOURCE_URL '^PKG_SOURCE_URL:=.+'
has PKG_SOURCE_VERSION '^PKG_SOURCE_VERSION:=.+'
has PKG_MIRROR_HASH '^PKG_MIRROR_HASH:=.+'
has PKG_MAINTAINER '^PKG_MAINTAINER:=.+ <[^>]+@[^>]+>$'
has PKG_LICENSE '^PKG_LICENSE:=.+'
has PKG_BUILD_DEPENDS '^PKG_BUILD_DEPENDS:=(.* )?rust/host( .*)?$'
has package.mk '^include \$\(INCLUDE_DIR\)/package\.mk$'
has rust-package.mk '^include \.\./\.\./lang/rust/rust-package\.mk$'
has Package/wesher '^define Package/wesher$'
has SECTION '^  SECTION:=net$'
has CATEGORY '^  CATEGORY:=Network$'
has TITLE '^  TITLE:=.+'
has DEPENDS-kmod-wireguard '^  DEPENDS:=.*\+kmod-wireguard( |$)'
has DEPENDS-rust-arch '^  DEPENDS:=.*\$\(RUST_ARCH_DEPENDS\)'
has description '^define Package/wesher/description$'
has conffiles '^define Package/wesher/conffiles$'
has conffile-config '^/etc/config/wesher$'
has install '^define Package/wesher/install$'
has install-binary '^	\$\(INSTALL_BIN\) \$\(PKG_INSTALL_DIR\)/bin/wesher \$\(1\)/usr/bin/'
has install-init '^	\$\(INSTALL_BIN\) \./files/wesher\.init \$\(1\)/etc/init\.d/wesher$'
has install-config '^	\$\(INSTALL_CONF\) \./files/wesher\.config \$\(1\)/etc/config/wesher$'
has BuildPackage '^\$\(eval \$\(call BuildPackage,wesher\)\)$'

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

echo "openwrt Makefile: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/bin/sh
# Checks how openwrt/wesher/files/wesher.init turns /etc/config/wesher into wesher's command line,
# without OpenWrt: the UCI (config_*) and procd (procd_*) shell functions are replaced by the small
# stand-ins below, which record the instances the script declares; each case compares them with
# the expected ones. POSIX sh (dash here, busybox ash on OpenWrt).
set -u
here=$(cd "$(dirname "$0")" && pwd)
pkg=$here/../wesher
init=$pkg/files/wesher.init
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

# --- UCI stand-ins. A UCI file (config / option / list lines) is valid shell once `config`,
# `option` and `list` are functions, so config_load sources it.
config() {
	n_sections=$((n_sections + 1))
	section=${2:-cfg$n_sections}
	sections="$sections $section"
	eval "type_$section=\$1"
}
option() { eval "opt_${section}_$1=\$2"; }
list() {
	eval "n=\${len_${section}_$1:-0}"
	n=$((n + 1))
	eval "len_${section}_$1=$n; item_${section}_$1_$n=\$2"
}
config_load() {
	sections="" n_sections=0
	. "$UCI_CONFIG_DIR/$1"
}
config_get() { eval "$1=\${opt_$2_$3:-\${4:-}}"; }
config_get_bool() {
	local v
	eval "v=\${opt_$2_$3:-}"
	case "$v" in
	1 | on | true | yes | enabled) v=1 ;;
	0 | off | false | no | disabled) v=0 ;;
	*) v=${4:-0} ;;
	esac
	eval "$1=$v"
}
config_list_foreach() {
	local i=1 len item
	eval "len=\${len_$1_$2:-0}"
	while [ "$i" -le "$len" ]; do
		eval "item=\$item_$1_$2_$i"
		"$3" "$item"
		i=$((i + 1))
	done
}
config_foreach() {
	local s t
	for s in $sections; do
		eval "t=\$type_$s"
		[ "$t" = "$2" ] && "$1" "$s"
	done
	return 0
}

# --- procd stand-ins: print each instance, one argument per [bracket].
procd_open_instance() { echo "instance $1"; cmd="" rest=""; }
procd_set_param() {
	local key=$1 arg
	shift
	if [ "$key" = command ]; then
		cmd=""
		for arg; do cmd="$cmd[$arg]"; done
	else
		rest="$rest
$key $*"
	fi
}
procd_append_param() {
	local arg
	[ "$1" = command ] || { echo "unexpected procd_append_param $1" && return 1; }
	shift
	for arg; do cmd="$cmd[$arg]"; done
}
procd_close_instance() { echo "command $cmd$rest"; }
procd_add_reload_trigger() { echo "reload-trigger $*"; }

# run_case NAME UCI_FILE EXPECTED: start_service's output must equal EXPECTED.
run_case() {
	mkdir -p "$tmp/$1"
	cp "$2" "$tmp/$1/wesher"
	actual=$(UCI_CONFIG_DIR=$tmp/$1 && . "$init" && start_service 2>&1)
	check "$1" "$actual" "$3"
}

check() {
	if [ "$2" = "$3" ]; then
		passed=$((passed + 1))
		echo "ok: $1"
	else
		failed=$((failed + 1))
		echo "FAIL: $1"
		printf '%s\n' "--- expected" "$3" "--- actual" "$2"
	fi
}

# The shipped config is disabled: no instance.
run_case shipped-config-disabled "$pkg/files/wesher.config" ""

# The shipped config, enabled with a key and a join: its defaults reach the command line.
sed -e "s/option enabled '0'/option enabled '1'/" \
	-e "s|option cluster_key ''|option cluster_key 'MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI='|" \
	-e "s/#list join/list join/" "$pkg/files/wesher.config" >"$tmp/enabled"
run_case shipped-config-enabled "$tmp/enabled" "instance wesher
command [/usr/bin/wesher][--join][192.0.2.1][--cluster-port][7946][--wireguard-port][51820][--overlay-net][10.0.0.0/8][--interface][wgoverlay][--log-level][warn][--state-dir][/etc/wesher]
env WESHER_CLUSTER_KEY=MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=
term_timeout 15
respawn 
stdout 1
stderr 1"

# Every option set; booleans in the spellings UCI accepts; joins become one comma list.
cat >"$tmp/all" <<'UCI'
config wesher 'mesh'
	option enabled 'yes'
	option cluster_key 'a2V5'
	list join 'node1'
	list join '192.0.2.7:7947'
	list join '[2001:db8::1]:7946'
	option init 'true'
	option bind_addr '192.0.2.2'
	option bind_iface 'eth0'
	option cluster_port '7950'
	option wireguard_port '51900'
	option overlay_net '10.20.0.0/16'
	option interface 'wg9'
	option no_etc_hosts 'on'
	option log_level 'debug'
	option node_name 'my router'
	option state_dir '/mnt/data/wesher'
	option mtu '1380'
	option persistent_keepalive '25'
	option advertise_addr '198.51.100.4'
	option advertise_port '17946'
	option gossip_profile 'lan'
	list routed_net '192.168.1.0/24'
	list routed_net 'fd00:1::/64'
	option overlay_addr '10.20.0.9'
UCI
run_case every-option "$tmp/all" "instance mesh
command [/usr/bin/wesher][--join][node1,192.0.2.7:7947,[2001:db8::1]:7946][--init][--bind-addr][192.0.2.2][--bind-iface][eth0][--cluster-port][7950][--wireguard-port][51900][--overlay-net][10.20.0.0/16][--interface][wg9][--no-etc-hosts][--log-level][debug][--node-name][my router][--state-dir][/mnt/data/wesher][--mtu][1380][--persistent-keepalive][25][--advertise-addr][198.51.100.4][--advertise-port][17946][--gossip-profile][lan][--routed-net][192.168.1.0/24,fd00:1::/64][--overlay-addr][10.20.0.9]
env WESHER_CLUSTER_KEY=a2V5
term_timeout 15
respawn 
stdout 1
stderr 1"

# Two meshes and a disabled third; false booleans add nothing; an anonymous section works;
# no key means no environment (the agent loads or generates one); a list given as a plain
# option is passed as it is.
cat >"$tmp/multi" <<'UCI'
config wesher 'a'
	option enabled '1'
	option init 'off'
	option no_etc_hosts '0'
	option interface 'wg1'
	option routed_net '192.168.2.0/24,192.168.3.0/24'
	option join 'node7'

config wesher 'b'
	option enabled '0'
	option interface 'wg2'

config other 'x'
	option enabled '1'

config wesher
	option enabled 'enabled'
	option interface 'wg3'
	option cluster_port '7947'
UCI
run_case several-sections "$tmp/multi" "instance a
command [/usr/bin/wesher][--join][node7][--interface][wg1][--state-dir][/etc/wesher][--routed-net][192.168.2.0/24,192.168.3.0/24]
term_timeout 15
respawn 
stdout 1
stderr 1
instance cfg4
command [/usr/bin/wesher][--cluster-port][7947][--interface][wg3][--state-dir][/etc/wesher]
term_timeout 15
respawn 
stdout 1
stderr 1"

# A UCI change to wesher restarts it.
check reload-trigger "$(. "$init" && service_triggers)" "reload-trigger wesher"
check procd-header "$(. "$init" && echo "$USE_PROCD $START")" "1 90"

# Every option of the shipped config is read by the init script (no option silently ignored).
missing=""
for opt in $(sed -n "s/^[[:space:]]*#\{0,1\}\(option\|list\) \([a-z_]*\) .*/\2/p" "$pkg/files/wesher.config"); do
	grep -Eq "\"\\\$cfg\" $opt( |\$)" "$init" || missing="$missing $opt"
done
check every-option-read "$missing" ""

echo "openwrt init: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

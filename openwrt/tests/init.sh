#!/bin/sh
# Runs openwrt/wesher/files/wesher.init as `/etc/init.d/wesher start` would, against the
# stand-ins of standins.sh (uci with libuci's section names, validate_data, procd.sh, jshn),
# and checks the message procd would get (`ubus call service set`, read with jq), the key
# file, the firewall data and zone, and the log. Then wesher-hosts-notify with a recording
# ubus. POSIX sh (dash here, busybox ash on OpenWrt). Needs jq.
here=$(cd "$(dirname "$0")" && pwd)
pkg=$here/../wesher
init=$pkg/files/wesher.init
. "$here/check.sh"

# start CASE UCI_FILE [FIREWALL_FILE]: runs the init script's start in $tmp/CASE (its own
# /etc/config, /var/run/wesher and /tmp/hosts); the procd message goes to $tmp/CASE/set.json,
# every other recorded command to $tmp/CASE/log.
start() {
	local dir="$tmp/$1"
	mkdir -p "$dir/config" "$dir/run" "$dir/hosts"
	cp "$2" "$dir/config/wesher"
	[ -z "${3:-}" ] || cp "$3" "$dir/config/firewall"
	: >"$dir/log"
	(
		UCI_CONFIG_DIR=$dir/config STANDIN_LOG=$dir/log
		. "$here/standins.sh"
		. "$init"
		RUN_DIR=$dir/run HOSTS_DIR=$dir/hosts
		rc_procd_start wesher
	) >"$dir/out" 2>&1
	sed -n 's/^ubus call service set //p' "$dir/log" >"$dir/set.json"
	sed -i '/^ubus call service set /d' "$dir/log"
	D=$dir
}

# q FILTER: jq -c on the last case's procd message.
q() { jq -c "$1" "$D/set.json"; }

rules() {
	local name=$1 zone=$2 gossip=$3 wg=$4
	printf '[{"type":"rule","name":"Allow-wesher-%s-gossip-tcp","src":"%s","proto":"tcp","dest_port":"%s","target":"ACCEPT"},' "$name" "$zone" "$gossip"
	printf '{"type":"rule","name":"Allow-wesher-%s-gossip-udp","src":"%s","proto":"udp","dest_port":"%s","target":"ACCEPT"},' "$name" "$zone" "$gossip"
	printf '{"type":"rule","name":"Allow-wesher-%s-wireguard","src":"%s","proto":"udp","dest_port":"%s","target":"ACCEPT"}]' "$name" "$zone" "$wg"
}

# --- The shipped config is disabled: a service without instances, with its triggers.
start shipped-disabled "$pkg/files/wesher.config"
check shipped-disabled-instances "$(q .instances)" "{}"
check shipped-disabled-quiet "$(cat "$D/out" "$D/log")" "ubus call service event {\"type\":\"config.change\",\"data\":{\"package\":\"firewall\"}}"
check triggers "$(q .triggers)" '[["config.change",["if",["eq","package","wesher"],["run_script","/etc/init.d/wesher","reload"]],1000],["interface.*.up",[["run_script","/etc/init.d/wesher","reload"]],2000]]'
check validate-package "$(q '.validate[0] | [.package, .type, (.data | length), .data.cluster_port, .data.log_level]')" \
	'["wesher","wesher",27,"port","or(trace,debug,info,warn,warning,error)"]'

# --- The shipped config, enabled with a key and a join.
sed -e "s/option enabled '0'/option enabled '1'/" \
	-e "s|option cluster_key ''|option cluster_key '$KEY'|" \
	-e "s/#list join/list join/" "$pkg/files/wesher.config" >"$tmp/enabled"
start shipped-enabled "$tmp/enabled"
check instance-names "$(q '.instances | keys')" '["hosts_notify","wesher"]'
check command "$(q '.instances.wesher.command')" \
	"[\"/usr/sbin/wesher\",\"--join\",\"192.0.2.1\",\"--cluster-port\",\"7946\",\"--wireguard-port\",\"51820\",\"--overlay-net\",\"10.0.0.0/8\",\"--interface\",\"wgoverlay\",\"--hosts-file\",\"$D/hosts/wesher-wgoverlay\",\"--log-level\",\"warn\",\"--state-dir\",\"/etc/wesher\",\"--on-change\",\"/usr/libexec/wesher-hotplug\",\"--cluster-key-file\",\"$D/run/wesher.key\"]"
check params "$(q '.instances.wesher | [.file, .respawn, .term_timeout, .stdout, .stderr, .env, .netdev]')" \
	"[[\"$D/run/wesher.key\"],[\"3600\",\"5\",\"0\"],15,true,true,null,null]"
# The key is nowhere in what procd publishes (`ubus call service list`), only in the file.
grep -q "$KEY" "$D/set.json" && r=published || r=absent
check key-not-published "$r" absent
check key-file "$(cat "$D/run/wesher.key")" "$KEY"
check key-file-mode "$(stat -c %a "$D/run/wesher.key")" 600
check firewall-data "$(q '.instances.wesher.data.firewall')" "$(rules wesher wan 7946 51820)"
check hosts-file-created "$(test -f "$D/hosts/wesher-wgoverlay" && echo yes)" yes
check hosts-notify "$(q '.instances.hosts_notify | [.command, .respawn]')" \
	"[[\"/bin/sh\",\"/usr/libexec/wesher-hosts-notify\",\"$D/hosts/wesher-wgoverlay\"],[\"3600\",\"5\",\"0\"]]"
check fw4-told "$(cat "$D/log")" "ubus call service event {\"type\":\"config.change\",\"data\":{\"package\":\"firewall\"}}"

# --- Every option set; booleans in the spellings UCI accepts; lists become comma lists.
cat >"$tmp/all" <<UCI
config wesher 'mesh'
	option enabled 'yes'
	option cluster_key '$KEY'
	list join 'node1'
	list join '192.0.2.7:7947'
	list join '[2001:db8::1]:7946'
	option init 'true'
	option bind_iface 'eth0'
	option cluster_port '7950'
	option wireguard_port '51900'
	option overlay_net '10.20.0.0/16'
	option interface 'wg9'
	option hosts_file '/srv/hosts'
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
	list accept_routed_net '192.168.50.0/24'
	list accept_routed_net '0.0.0.0/0'
	option overlay_addr '10.20.0.9'
	option on_change '/etc/wesher/on-change'
	option firewall_zone 'lan'

config wesher 'other'
	option enabled 'on'
	option bind_addr '192.0.2.2'
	option interface 'wg8'
	option no_etc_hosts '1'
	option open_firewall '0'
	option routed_net '192.168.5.0/24 192.168.6.0/24'
UCI
start every-option "$tmp/all"
check every-option-command "$(q '.instances.mesh.command')" \
	"[\"/usr/sbin/wesher\",\"--join\",\"node1,192.0.2.7:7947,[2001:db8::1]:7946\",\"--init\",\"--bind-iface\",\"eth0\",\"--cluster-port\",\"7950\",\"--wireguard-port\",\"51900\",\"--overlay-net\",\"10.20.0.0/16\",\"--interface\",\"wg9\",\"--hosts-file\",\"/srv/hosts\",\"--log-level\",\"debug\",\"--node-name\",\"my router\",\"--state-dir\",\"/mnt/data/wesher\",\"--mtu\",\"1380\",\"--persistent-keepalive\",\"25\",\"--advertise-addr\",\"198.51.100.4\",\"--advertise-port\",\"17946\",\"--gossip-profile\",\"lan\",\"--routed-net\",\"192.168.1.0/24,fd00:1::/64\",\"--accept-routed-nets\",\"192.168.50.0/24,0.0.0.0/0\",\"--overlay-addr\",\"10.20.0.9\",\"--on-change\",\"/etc/wesher/on-change\",\"--cluster-key-file\",\"$D/run/mesh.key\"]"
check netdev "$(q '.instances.mesh.netdev')" '["eth0"]'
check firewall-zone-option "$(q '.instances.mesh.data.firewall')" "$(rules mesh lan 7950 51900)"
# A plain option with space-separated values works as a list; no hosts file, no firewall data,
# no key (the agent keeps or makes its own).
check second-instance "$(q '.instances.other | [.command, .data, .file]')" \
	'[["/usr/sbin/wesher","--bind-addr","192.0.2.2","--cluster-port","7946","--wireguard-port","51820","--overlay-net","10.0.0.0/8","--interface","wg8","--no-etc-hosts","--log-level","warn","--state-dir","/etc/wesher","--routed-net","192.168.5.0/24,192.168.6.0/24","--on-change","/usr/libexec/wesher-hotplug"],null,null]'
# /srv/hosts is not dnsmasq's: nothing to notify.
check no-notify-outside-tmp-hosts "$(q '.instances | keys')" '["mesh","other"]'

# --- Several sections: a disabled one, another type, an anonymous one (named as libuci names
# it: cfg + its position 04 + djbhash("wesher") & 0xffff = 69f3), and an invalid one, which
# is logged with the option at fault and not started.
cat >"$tmp/multi" <<'UCI'
config wesher 'a'
	option enabled '1'
	option interface 'wg1'
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

config wesher 'bad'
	option enabled '1'
	option interface 'wg4'
	option cluster_port '70000'
	option log_level 'loud'
UCI
start several-sections "$tmp/multi"
check section-names "$(q '.instances | keys')" '["a","cfg0469f3","hosts_notify"]'
check anonymous-instance "$(q '.instances.cfg0469f3.command[1:3]')" '["--cluster-port","7947"]'
check invalid-logged "$(grep '^logger' "$D/log")" \
	"logger -t wesher -p daemon.err config wesher 'bad': wesher.bad.cluster_port=70000 validates as port: invalid value, instance not started
logger -t wesher -p daemon.err config wesher 'bad': wesher.bad.log_level=loud validates as or(\"trace\",\"debug\",\"info\",\"warn\",\"warning\",\"error\"): invalid value, instance not started"
check notify-both "$(q '.instances.hosts_notify.command[2:]')" "[\"$D/hosts/wesher-wg1\",\"$D/hosts/wesher-wg3\"]"

# --- A zone for the mesh interface: created when missing (once), extended with a second
# interface, left alone when complete.
cat >"$tmp/firewall" <<'UCI'
config defaults
	option input 'REJECT'

config zone
	option name 'lan'
	list network 'lan'

config zone
	option name 'wan'
	list network 'wan'
UCI
cat >"$tmp/zoned" <<UCI
config wesher 'mesh'
	option enabled '1'
	option zone 'mesh'
UCI
start zone-created "$tmp/zoned" "$tmp/firewall"
check zone-created "$(tail -n 7 "$D/config/firewall")" "
config zone
	option name 'mesh'
	option input 'ACCEPT'
	option output 'ACCEPT'
	option forward 'REJECT'
	list device 'wgoverlay'"
cp "$D/config/firewall" "$tmp/firewall-with-zone"
start zone-kept "$tmp/zoned" "$tmp/firewall-with-zone"
grep -q '^uci commit' "$D/log" && r=committed || r=untouched
check zone-kept "$r" untouched
check zone-file-unchanged "$(cmp -s "$D/config/firewall" "$tmp/firewall-with-zone" && echo same)" same
printf "config wesher 'two'\n\toption enabled '1'\n\toption interface 'wg2'\n\toption zone 'mesh'\n" >>"$tmp/zoned"
start zone-extended "$tmp/zoned" "$tmp/firewall-with-zone"
check zone-extended "$(tail -n 2 "$D/config/firewall")" "	list device 'wgoverlay'
	list device 'wg2'"

# --- Every option of the shipped config is validated (so read), and every validated option
# is in the shipped config (so documented).
options=$(. "$init" && for o in $OPTIONS; do echo "${o%%:*}"; done | sort -u)
shipped=$(sed -n "s/^[[:space:]]*#\{0,1\}\(option\|list\) \([a-z_]*\) .*/\2/p" "$pkg/files/wesher.config" | sort -u)
check options-match-config "$options" "$shipped"

# --- wesher-hosts-notify: signals dnsmasq through procd's ubus when a file changes, not
# before. A recording ubus on PATH; polls every second; bounded waits, no timing asserted.
mkdir -p "$tmp/notify/bin"
cat >"$tmp/notify/bin/ubus" <<EOF
#!/bin/sh
echo "\$*" >>"$tmp/notify/calls"
EOF
chmod +x "$tmp/notify/bin/ubus"
echo "10.0.0.1 a" >"$tmp/notify/h1"
: >"$tmp/notify/h2"
: >"$tmp/notify/calls"
PATH="$tmp/notify/bin:$PATH" WESHER_HOSTS_POLL=1 sh "$pkg/files/wesher-hosts-notify" "$tmp/notify/h1" "$tmp/notify/h2" &
notifier=$!
sleep 3
check notify-quiet-while-unchanged "$(cat "$tmp/notify/calls")" ""
echo "10.0.0.2 b" >"$tmp/notify/h2"
i=0
while [ ! -s "$tmp/notify/calls" ] && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
sleep 2
kill "$notifier"
wait "$notifier" 2>/dev/null
check notify-signals-once "$(cat "$tmp/notify/calls")" 'call service signal {"name":"dnsmasq","signal":1}'

finish "openwrt init"

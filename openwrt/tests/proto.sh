#!/bin/sh
# Runs openwrt/wesher-proto/files/wesher.sh as netifd runs a protocol handler (dump, setup,
# teardown) against standins.sh's netifd-proto.sh, and checks the messages netifd would get
# (`ubus call network.interface notify_proto`, read with jq). POSIX sh. Needs jq.
here=$(cd "$(dirname "$0")" && pwd)
handler=$here/../wesher-proto/files/wesher.sh
init=$here/../wesher/files/wesher.init
. "$here/check.sh"

# run NAME ARGS...: the handler with netifd's arguments; messages to $tmp/NAME.log.
run() {
	local name=$1
	shift
	mkdir -p "$tmp/$name/run" "$tmp/$name/hosts"
	: >"$tmp/$name.log"
	(
		STANDIN_LOG=$tmp/$name.log
		. "$here/standins.sh"
		INCLUDE_ONLY=1
		. "$handler"
		RUN_DIR=$tmp/$name/run HOSTS_DIR=$tmp/$name/hosts
		init_proto "$@"
		add_protocol wesher
	) >"$tmp/$name.out" 2>&1
	D=$tmp/$name
}

# msg N: the Nth notify_proto message (JSON) of the last run.
msg() {
	sed -n "s/^ubus call network\.interface notify_proto //p" "$D.log" | sed -n "${1}p"
}

run dump wesher dump
check dump "$(jq -c '[.name, .["no-device"], .available, (.config | length), .config[0:3]]' "$D.out")" \
	'["wesher",true,true,24,[["cluster_key",3],["join",1],["init",7]]]'
# The handler takes the init script's options, less the service's own (enabled, zone: netifd
# has its own `zone` option for interfaces).
handler_opts=$(jq -r '.config[][0]' "$D.out" | sort)
init_opts=$(. "$init" && for o in $OPTIONS; do echo "${o%%:*}"; done | grep -vx 'enabled\|zone\|interface' | sort)
check options-match-init "$handler_opts" "$init_opts"

config=$(jq -cn --arg k "$KEY" '{cluster_key: $k, join: ["node1", "192.0.2.7:7947"], init: true,
	cluster_port: 7950, wireguard_port: 51900, overlay_net: "10.20.0.0/16", log_level: "info",
	node_name: "my router", persistent_keepalive: 25, advertise_addr: "fd00::9",
	routed_net: ["192.168.1.0/24", "192.168.2.0/24"], accept_routed_net: ["0.0.0.0/0"],
	firewall_zone: "wan6"}')
run setup wesher setup mesh "$config"
check run-command "$(msg 1)" \
	"{\"action\":1,\"command\":[\"/usr/sbin/wesher\",\"--interface\",\"mesh\",\"--state-dir\",\"/etc/wesher\",\"--join\",\"node1,192.0.2.7:7947\",\"--init\",\"--cluster-port\",\"7950\",\"--wireguard-port\",\"51900\",\"--overlay-net\",\"10.20.0.0/16\",\"--log-level\",\"info\",\"--node-name\",\"my router\",\"--persistent-keepalive\",\"25\",\"--advertise-addr\",\"fd00::9\",\"--on-change\",\"/usr/libexec/wesher-hotplug\",\"--routed-net\",\"192.168.1.0/24,192.168.2.0/24\",\"--accept-routed-nets\",\"0.0.0.0/0\",\"--hosts-file\",\"$D/hosts/wesher-mesh\",\"--cluster-key-file\",\"$D/run/mesh.key\"],\"interface\":\"mesh\"}"
check update "$(msg 2 | jq -c '[.action, .ifname, .["link-up"], .["address-external"], [.data.firewall[] | [.name, .src, .proto, .dest_port, .target]]]')" \
	'[0,"mesh",true,true,[["Allow-wesher-mesh-gossip-tcp","wan6","tcp","7950","ACCEPT"],["Allow-wesher-mesh-gossip-udp","wan6","udp","7950","ACCEPT"],["Allow-wesher-mesh-wireguard","wan6","udp","51900","ACCEPT"]]]'
check messages "$(msg 3)" ""
grep -q "$KEY" "$D.log" && r=published || r=absent
check key-not-in-messages "$r" absent
check key-file "$(cat "$D/run/mesh.key") $(stat -c %a "$D/run/mesh.key")" "$KEY 600"
check hosts-file-created "$(test -f "$D/hosts/wesher-mesh" && echo yes)" yes

# The least: no key (the agent keeps its own), no hosts file, no firewall data.
run minimal wesher setup wg0 '{"no_etc_hosts": true, "open_firewall": false}'
check minimal-command "$(msg 1)" '{"action":1,"command":["/usr/sbin/wesher","--interface","wg0","--state-dir","/etc/wesher","--on-change","/usr/libexec/wesher-hotplug","--no-etc-hosts"],"interface":"wg0"}'
check minimal-update "$(msg 2)" '{"action":0,"ifname":"wg0","link-up":true,"address-external":true,"keep":false,"interface":"wg0"}'

run teardown wesher teardown mesh "$config"
check teardown "$(msg 1)" '{"action":2,"interface":"mesh"}'

finish "openwrt proto"

#!/bin/sh
# netifd protocol handler: `option proto 'wesher'` in /etc/config/network makes the interface
# a wesher mesh. The interface's name is the WireGuard device wesher manages; netifd runs and
# stops the agent (proto_run_command), and `option zone` puts the mesh in a firewall zone.
#
#   config interface 'mesh'
#   	option proto 'wesher'
#   	option cluster_key '...'
#   	list join 'node1.example.net'
#   	option zone 'mesh'

WESHER=/usr/sbin/wesher
# RAM, root only: the cluster keys handed to the agents.
RUN_DIR=/var/run/wesher
# RAM; dnsmasq reads every file in it.
HOSTS_DIR=/tmp/hosts

[ -n "$INCLUDE_ONLY" ] || {
	. /lib/functions.sh
	. ../netifd-proto.sh
	init_proto "$@"
}

proto_wesher_init_config() {
	no_device=1
	available=1
	proto_config_add_string cluster_key
	proto_config_add_array join
	proto_config_add_boolean init
	proto_config_add_string bind_addr
	proto_config_add_string bind_iface
	proto_config_add_int cluster_port
	proto_config_add_int wireguard_port
	proto_config_add_string overlay_net
	proto_config_add_boolean no_etc_hosts
	proto_config_add_string hosts_file
	proto_config_add_string log_level
	proto_config_add_string node_name
	proto_config_add_string state_dir
	proto_config_add_int mtu
	proto_config_add_int persistent_keepalive
	proto_config_add_string advertise_addr
	proto_config_add_int advertise_port
	proto_config_add_string gossip_profile
	proto_config_add_array routed_net
	proto_config_add_array accept_routed_net
	proto_config_add_string overlay_addr
	proto_config_add_string on_change
	proto_config_add_boolean open_firewall
	proto_config_add_string firewall_zone
}

proto_wesher_setup() {
	local config="$1"
	local cluster_key join init bind_addr bind_iface cluster_port wireguard_port overlay_net
	local no_etc_hosts hosts_file log_level node_name state_dir mtu persistent_keepalive
	local advertise_addr advertise_port gossip_profile routed_net overlay_addr open_firewall
	local firewall_zone accept_routed_net on_change key_file item
	json_get_vars cluster_key init bind_addr bind_iface cluster_port wireguard_port \
		overlay_net no_etc_hosts hosts_file log_level node_name state_dir mtu \
		persistent_keepalive advertise_addr advertise_port gossip_profile overlay_addr \
		open_firewall firewall_zone on_change
	json_get_values join join
	json_get_values routed_net routed_net
	json_get_values accept_routed_net accept_routed_net

	set -- "$WESHER" --interface "$config" --state-dir "${state_dir:-/etc/wesher}"
	[ -n "$join" ] && set -- "$@" --join "$(echo $join | tr ' ' ',')"
	[ "$init" = 1 ] && set -- "$@" --init
	for item in bind-addr:"$bind_addr" bind-iface:"$bind_iface" cluster-port:"$cluster_port" \
		wireguard-port:"$wireguard_port" overlay-net:"$overlay_net" log-level:"$log_level" \
		node-name:"$node_name" mtu:"$mtu" persistent-keepalive:"$persistent_keepalive" \
		advertise-addr:"$advertise_addr" advertise-port:"$advertise_port" \
		gossip-profile:"$gossip_profile" overlay-addr:"$overlay_addr" \
		on-change:"${on_change:-/usr/libexec/wesher-hotplug}"; do
		[ -n "${item#*:}" ] && set -- "$@" "--${item%%:*}" "${item#*:}"
	done
	[ -n "$routed_net" ] && set -- "$@" --routed-net "$(echo $routed_net | tr ' ' ',')"
	[ -n "$accept_routed_net" ] && set -- "$@" --accept-routed-nets "$(echo $accept_routed_net | tr ' ' ',')"
	if [ "$no_etc_hosts" = 1 ]; then
		set -- "$@" --no-etc-hosts
	else
		hosts_file=${hosts_file:-$HOSTS_DIR/wesher-$config}
		# wesher only edits a hosts file that exists.
		mkdir -p "${hosts_file%/*}" && [ -e "$hosts_file" ] || : >"$hosts_file"
		set -- "$@" --hosts-file "$hosts_file"
	fi
	if [ -n "$cluster_key" ]; then
		# Never in argv or the environment: netifd and procd show both over ubus.
		key_file=$RUN_DIR/$config.key
		if ! (umask 077 && mkdir -p "$RUN_DIR" && printf '%s\n' "$cluster_key" >"$key_file"); then
			proto_notify_error "$config" KEY_FILE
			proto_block_restart "$config"
			return 1
		fi
		set -- "$@" --cluster-key-file "$key_file"
	fi

	proto_run_command "$config" "$@"

	# The device appears when the agent has made it; its addresses are the agent's to manage.
	proto_init_update "$config" 1 1
	if [ "${open_firewall:-1}" = 1 ]; then
		proto_add_data
		json_add_array firewall
		wesher_fw_rule "$config-gossip-tcp" tcp "${cluster_port:-7946}"
		wesher_fw_rule "$config-gossip-udp" udp "${cluster_port:-7946}"
		wesher_fw_rule "$config-wireguard" udp "${wireguard_port:-51820}"
		json_close_array
		proto_close_data
	fi
	proto_send_update "$config"
}

# A rule for fw4: accept PROTO to PORT from the firewall_zone (default wan).
wesher_fw_rule() {
	json_add_object ""
	json_add_string type rule
	json_add_string name "Allow-wesher-$1"
	json_add_string src "${firewall_zone:-wan}"
	json_add_string proto "$2"
	json_add_string dest_port "$3"
	json_add_string target ACCEPT
	json_close_object
}

proto_wesher_teardown() {
	# SIGTERM: the agent announces its leave and removes its device and hosts lines.
	proto_kill_command "$1"
}

[ -n "$INCLUDE_ONLY" ] || {
	add_protocol wesher
}

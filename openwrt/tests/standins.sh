# Stand-ins for the OpenWrt shell runtime that wesher.init and wesher.proto use, sourced by
# the tests in this directory (POSIX sh: dash here, busybox ash on OpenWrt).
#
# What they follow, from OpenWrt's sources:
# - uci: anonymous sections are named as libuci names them on load (`cfg%02x%04x`: the
#   section's position in the package, counting named ones, and djbhash of its type), and
#   /lib/functions.sh's config_load, config_get, config_get_bool, config_foreach and
#   config_list_foreach see the same sections, values and lists.
# - validate_data (ubox): the same `option:type:default` tuples, output (`name=value; `,
#   booleans as 0/1, strings quoted, lists space-separated, `unset -v name; ` for an invalid
#   or empty value), messages on stderr and exit status, for the types wesher.init uses.
# - procd.sh + jshn: the instance table procd receives in `ubus call service set`, as JSON:
#   command, env, data, file, netdev, respawn (procd.sh's default 3600 5 5 when empty),
#   term_timeout, stdout, stderr, and the service's triggers and validate lists.
# - netifd-proto.sh: proto_run_command, proto_kill_command, proto_init_update,
#   proto_send_update, proto_add_data/proto_close_data and proto_config_add_* recorded as the
#   JSON netifd would receive.
# Checked once by hand (2026-12-01) against the real runtime built from OpenWrt's sources
# (libuci, uci, ubox's validate_data, libubox's jshn and jshn.sh, netifd's netifd-proto.sh,
# procd.sh, rc.common and functions.sh, with busybox ash): for the configurations of init.sh
# and proto.sh the procd and netifd messages were the same JSON, validate_data's output and
# messages the same bytes, the anonymous section names and the zone written the same.
# What they do not cover: ubus itself and procd's reaction (respawn, triggers firing, instance
# comparison on reload), netifd's state machine, fw4 turning the data into nftables rules,
# the uci CLI beyond get/add/set/add_list/changes/commit on one package, and validate_data's
# other types. Those need OpenWrt (the acceptance tests run the package there).

STANDIN_LOG=${STANDIN_LOG:-/dev/null}

# --- libuci's file parsing, shared by config_load, validate_data and the uci CLI stand-in.
# Prints one line per section (`S<tab>name<tab>type`) and value (`O<tab>section<tab>option
# <tab>value`, `L<tab>section<tab>option<tab>item` for list items), in file order.
uci_dump() {
	awk '
	BEGIN { for (i = 1; i < 256; i++) ord[sprintf("%c", i)] = i; n = 0 }
	function djb(h, s,   i) {
		for (i = 1; i <= length(s); i++) h = (h * 33 + ord[substr(s, i, 1)]) % 4294967296
		return h % 2147483648
	}
	function unquote(s) {
		if (s ~ /^'\''.*'\''$/ || s ~ /^".*"$/) return substr(s, 2, length(s) - 2)
		return s
	}
	{
		sub(/^[ \t]+/, ""); sub(/[ \t]+$/, "")
		if ($0 == "" || $0 ~ /^#/) next
		kw = $1; rest = $0; sub(/^[^ \t]+[ \t]+/, "", rest)
		if (kw == "config") {
			n++
			type = unquote($2)
			name = ""
			if (NF >= 3) { name = rest; sub(/^[^ \t]+[ \t]+/, "", name); name = unquote(name) }
			if (name == "") name = sprintf("cfg%02x%04x", n, djb(5381, type) % 65536)
			section = name
			printf "S\t%s\t%s\n", section, type
		} else if (kw == "option" || kw == "list") {
			opt = $2; val = rest; sub(/^[^ \t]+[ \t]*/, "", val); val = unquote(val)
			printf "%s\t%s\t%s\t%s\n", (kw == "option" ? "O" : "L"), section, opt, val
		}
	}' "$1"
}

# --- /lib/functions.sh
config_load() {
	local kind section option value n
	CONFIG_SECTIONS=""
	_uci_tab=$(printf '\t')
	while IFS="$_uci_tab" read -r kind section option value; do
		case "$kind" in
		S)
			CONFIG_SECTIONS="$CONFIG_SECTIONS $section"
			eval "CONFIG_${section}_TYPE=\$option"
			;;
		O) eval "CONFIG_${section}_${option}=\$value" ;;
		L)
			eval "n=\${CONFIG_${section}_${option}_LENGTH:-0}"
			n=$((n + 1))
			eval "CONFIG_${section}_${option}_LENGTH=$n; CONFIG_${section}_${option}_ITEM$n=\$value"
			# functions.sh keeps a list's items space-separated in the option's value too.
			eval "CONFIG_${section}_${option}=\"\${CONFIG_${section}_${option}:+\$CONFIG_${section}_${option} }\$value\""
			;;
		esac
	done <<EOF
$(uci_dump "$UCI_CONFIG_DIR/$1")
EOF
}

config_get() {
	eval "$1=\${CONFIG_$2_$3:-\${4:-}}"
}

config_get_bool() {
	local _v
	eval "_v=\${CONFIG_$2_$3:-}"
	case "$_v" in
	1 | on | true | yes | enabled) _v=1 ;;
	0 | off | false | no | disabled) _v=0 ;;
	*) _v=${4:-0} ;;
	esac
	eval "$1=$_v"
}

config_list_foreach() {
	local section="$1" option="$2" function="$3" i=1 len item
	shift 3
	eval "len=\${CONFIG_${section}_${option}_LENGTH:-0}"
	while [ "$i" -le "$len" ]; do
		eval "item=\$CONFIG_${section}_${option}_ITEM$i"
		"$function" "$item" "$@"
		i=$((i + 1))
	done
}

config_foreach() {
	local function="$1" type="$2" section stype
	shift 2
	for section in $CONFIG_SECTIONS; do
		eval "stype=\$CONFIG_${section}_TYPE"
		[ "$stype" = "$type" ] && "$function" "$section" "$@"
	done
	return 0
}

# --- validate_data (ubox validate/cli.c) for the types used here.
# dt_check TYPE VALUE: 0 when VALUE is a TYPE.
dt_check() {
	local t="$1" v="$2" a b
	case "$t" in
	bool) case "$v" in 0 | off | false | no | disabled | 1 | on | true | yes | enabled) return 0 ;; esac; return 1 ;;
	string) return 0 ;;
	port) dt_uint "$v" && [ "$v" -le 65535 ] ;;
	range\(*)
		a=${t#range(}; b=${a#*,}; a=${a%%,*}; b=${b%)}
		dt_uint "$v" && [ "$v" -ge "$a" ] && [ "$v" -le "$b" ]
		;;
	rangelength\(*)
		a=${t#rangelength(}; b=${a#*,}; a=${a%%,*}; b=${b%)}
		[ "${#v}" -ge "$a" ] && [ "${#v}" -le "$b" ]
		;;
	ipaddr) dt_ip4 "$v" || dt_ip6 "$v" ;;
	cidr)
		# As in ubox, the prefix length is optional.
		case "$v" in */*) ;; *) dt_check ipaddr "$v"; return ;; esac
		b=${v#*/}
		dt_uint "$b" || return 1
		if dt_ip4 "${v%/*}"; then [ "$b" -le 32 ]; else dt_ip6 "${v%/*}" && [ "$b" -le 128 ]; fi
		;;
	or\(*)
		a=${t#or(}; a=${a%)}
		local IFS=,
		for b in $a; do
			case "$b" in
			\"*\") [ "$v" = "$(echo "$b" | sed 's/^"//; s/"$//')" ] && return 0 ;;
			*) dt_check "$b" "$v" && return 0 ;;
			esac
		done
		return 1
		;;
	*) echo "standins: type $t not implemented" >&2; return 2 ;;
	esac
}

dt_uint() {
	case "$1" in '' | *[!0-9]*) return 1 ;; esac
	[ "${#1}" -le 9 ]
}

dt_ip4() {
	local IFS=. n count=0
	case "$1" in *..* | .* | *.) return 1 ;; esac
	for n in $1; do
		dt_uint "$n" && [ "$n" -le 255 ] || return 1
		count=$((count + 1))
	done
	[ "$count" = 4 ]
}

dt_ip6() {
	case "$1" in *:*) ;; *) return 1 ;; esac
	case "$1" in *[!0-9a-fA-F:.]* | *:::*) return 1 ;; esac
	return 0
}

# A plain option checked against list(T) is checked word by word (dt_type_list).
dt_check_words() {
	local w
	case "$1" in
	list\(*)
		for w in $3; do dt_check "$2" "$w" || return 1; done
		return 0
		;;
	esac
	dt_check "$2" "$3"
}

# The output form of a value (cli.c escape_value): booleans 0/1, strings quoted, numbers bare.
dt_export() {
	local t="$1" v="$2"
	case "$t" in
	bool)
		case "$v" in 1 | on | true | yes | enabled) printf 1 ;; *) printf 0 ;; esac
		;;
	port | range\(*) printf '%s' "$v" ;;
	*) printf "'%s'" "$(printf '%s' "$v" | sed "s/'/'\"'\"'/g")" ;;
	esac
}

validate_data() {
	local package="$1" stype="$2" section="$3" spec option type default rc=0 kind s o v
	local values items ok spec_type
	shift 3
	if [ -z "$section" ]; then
		# No section: the description procd publishes for `ubus call service validate`.
		printf 'json_add_object; json_add_string "package" "%s"; json_add_string "type" "%s"; json_add_object "data"; ' "$package" "$stype"
		for spec; do
			type=${spec#*:}
			# Printed as validate_data prints it: inner quotes unescaped, so eval drops them.
			printf 'json_add_string "%s" "%s"; ' "${spec%%:*}" "${type%%:*}"
		done
		printf 'json_close_object; json_close_object; '
		return 0
	fi
	values=$(uci_dump "$UCI_CONFIG_DIR/$package")
	for spec; do
		option=${spec%%:*}
		# No type used here has a ':' inside it, so the first ':' after the type ends it.
		type=${spec#*:}
		type=${type%%:*}
		default=${spec#"$option:$type"}
		default=${default#:}
		spec_type=$type
		case "$type" in
		list\(*) items=$(printf '%s\n' "$values" | awk -F '\t' -v s="$section" -v o="$option" '$1 == "L" && $2 == s && $3 == o { print $4 }'); type=${type#list(}; type=${type%)} ;;
		*) items="" ;;
		esac
		v=$(printf '%s\n' "$values" | awk -F '\t' -v s="$section" -v o="$option" '$1 == "O" && $2 == s && $3 == o { print $4 }')
		if [ -n "$items" ]; then
			printf '%s=' "$option"
			local first=1 i=0
			while IFS= read -r s; do
				[ "$first" = 1 ] || printf '\\ '
				first=0
				if dt_check "$type" "$s"; then ok=true; dt_export "$type" "$s"; else ok=false; rc=255; fi
				echo "$package.$section.$option[$i]=$s validates as $spec_type with $ok" >&2
				i=$((i + 1))
			done <<EOF
$items
EOF
			printf '; '
		elif [ -n "$v" ]; then
			if dt_check_words "$spec_type" "$type" "$v"; then
				ok=true
				printf '%s=' "$option"; dt_export "$type" "$v"; printf '; '
			else
				ok=false; rc=255
				printf 'unset -v %s; ' "$option"
			fi
			echo "$package.$section.$option=$v validates as $spec_type with $ok" >&2
		else
			if [ -n "$default" ]; then
				printf '%s=' "$option"; dt_export "$type" "$default"; printf '; '
			else
				printf 'unset -v %s; ' "$option"
			fi
			echo "$package.$section.$option is unset and defaults to $spec_type ${default:-(null)}" >&2
		fi
	done
	return $rc
}

# --- procd.sh's validation helpers (the same code path, calling the stand-in above).
uci_validate_section() {
	local _package="$1" _type="$2" _name="$3" _result _error
	shift 3
	_result=$(validate_data "$_package" "$_type" "$_name" "$@" 2>/dev/null)
	_error=$?
	eval "$_result"
	return $_error
}

uci_load_validate() {
	local _package="$1" _type="$2" _name="$3" _function="$4" _option _result
	shift 4
	for _option in "$@"; do
		eval "local ${_option%%:*}"
	done
	uci_validate_section "$_package" "$_type" "$_name" "$@"
	_result=$?
	[ -n "$_function" ] || return $_result
	eval "$_function \"\$_name\" \"\$_result\""
}

# --- jshn, streaming: enough for objects, arrays, strings, ints and booleans built in order.
json_escape() {
	printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g; s/	/\\t/g' | awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }'
}

_json_item() {
	# $1: the key (ignored inside an array), $2: the JSON value.
	[ "$_json_first" = 1 ] || _json="$_json,"
	_json_first=0
	case "$_json_ctx" in
	a*) _json="$_json$2" ;;
	*) _json="$_json\"$(json_escape "$1")\":$2" ;;
	esac
}

json_init() { _json="{" _json_ctx=o _json_first=1; }
json_add_string() { _json_item "$1" "\"$(json_escape "$2")\""; }
json_add_int() { _json_item "$1" "$2"; }
json_add_boolean() { if [ "$2" = 1 ]; then _json_item "$1" true; else _json_item "$1" false; fi; }
json_add_object() { _json_item "$1" "{"; _json_ctx="o$_json_ctx" _json_first=1; }
json_add_array() { _json_item "$1" "["; _json_ctx="a$_json_ctx" _json_first=1; }
json_close_object() { _json="$_json}" _json_ctx=${_json_ctx#?} _json_first=0; }
json_close_array() { _json="$_json]" _json_ctx=${_json_ctx#?} _json_first=0; }
json_dump() { printf '%s}\n' "$_json"; }

# --- procd.sh: builds the `ubus call service set` message and hands it to `ubus`.
procd_open_service() {
	json_init
	json_add_string name "$1"
	[ -n "${2:-}" ] && json_add_string script "$2"
	json_add_object instances
	_procd_seq=0
}

procd_close_service() {
	json_close_object
	json_add_array triggers
	_procd_in_triggers=1
	service_triggers
	_procd_in_triggers=0
	if [ -n "${_procd_validate:-}" ]; then
		json_close_array
		json_add_array validate
		$_procd_validate
	fi
	json_close_array
	# rc.common defines an empty service_data, so procd.sh always adds the service's data.
	json_add_object data
	if type service_data >/dev/null 2>&1; then service_data; fi
	json_close_object
	ubus call service set "$(json_dump)"
}

procd_open_instance() {
	_procd_seq=$((_procd_seq + 1))
	_procd_instance=${1:-instance$_procd_seq}
	_procd_params=""
	_procd_data=""
}

# Params are kept as `name<newline-separated JSON values>` until the instance is closed,
# so that procd_append_param can extend them, as procd.sh does with json_select.
_procd_param_var() { printf '_procd_p_%s' "$1"; }

procd_set_param() {
	local type="$1" arg kv
	shift
	case " $_procd_params " in *" $type "*) ;; *) _procd_params="$_procd_params $type" ;; esac
	eval "$(_procd_param_var "$type")=''"
	procd_append_param "$type" "$@"
}

procd_append_param() {
	local type="$1" arg var value
	shift
	case " $_procd_params " in *" $type "*) ;; *) procd_set_param "$type" "$@"; return ;; esac
	var=$(_procd_param_var "$type")
	eval "value=\$$var"
	case "$type" in
	command | netdev | file | respawn | watch)
		for arg; do value="$value${value:+,}\"$(json_escape "$arg")\""; done
		;;
	env | data | limits)
		for arg; do value="$value${value:+,}\"$(json_escape "${arg%%=*}")\":\"$(json_escape "${arg#*=}")\""; done
		;;
	term_timeout | nice) value=$1 ;;
	stdout | stderr | no_new_privs) if [ "$1" = 1 ]; then value=true; else value=false; fi ;;
	*) value="\"$(json_escape "$1")\"" ;;
	esac
	eval "$var=\$value"
}

procd_open_data() {
	_procd_saved_json=$_json _procd_saved_ctx=$_json_ctx _procd_saved_first=$_json_first
	_json="" _json_ctx=o _json_first=1
}

procd_close_data() {
	_procd_data="${_procd_data}${_procd_data:+,}$_json"
	_json=$_procd_saved_json _json_ctx=$_procd_saved_ctx _json_first=$_procd_saved_first
}

procd_close_instance() {
	local type value
	json_add_object "$_procd_instance"
	for type in $_procd_params; do
		eval "value=\$$(_procd_param_var "$type")"
		case "$type" in
		respawn) [ -n "$value" ] || value='"3600","5","5"' ;;
		esac
		case "$type" in
		command | netdev | file | respawn | watch) _json_item "$type" "[$value]" ;;
		env | data | limits) _json_item "$type" "{$value}" ;;
		*) _json_item "$type" "$value" ;;
		esac
	done
	[ -n "$_procd_data" ] && _json_item data "{$_procd_data}"
	json_close_object
}

procd_add_reload_trigger() {
	local file
	for file; do
		_json_item "" "[\"config.change\",[\"if\",[\"eq\",\"package\",\"$file\"],[\"run_script\",\"/etc/init.d/$_procd_name\",\"reload\"]],1000]"
	done
}

procd_add_raw_trigger() {
	local event="$1" timeout="$2" args="" arg
	shift 2
	for arg; do args="$args,\"$(json_escape "$arg")\""; done
	_json_item "" "[\"$event\",[[\"run_script\"$args]],$timeout]"
}

procd_add_interface_trigger() {
	local event="$1" iface="$2" args="" arg
	shift 2
	for arg; do args="$args,\"$(json_escape "$arg")\""; done
	_json_item "" "[\"$event\",[\"if\",[\"eq\",\"interface\",\"$iface\"],[\"run_script\"$args]],1000]"
}

# procd.sh runs the function between json_select .. / json_add_array validate; the stand-in
# runs it after the triggers (same result: one "validate" array of the function's output).
procd_add_validation() { _procd_validate="$*"; }

procd_set_config_changed() {
	ubus call service event "{\"type\":\"config.change\",\"data\":{\"package\":\"$1\"}}"
}

# --- rc.common's path for `/etc/init.d/NAME start` of a procd script: open the service, run
# start_service, close (triggers, validation, ubus call), then service_started.
rc_procd_start() {
	_procd_name=$1
	procd_open_service "$1" "/etc/init.d/$1"
	start_service
	procd_close_service
	if type service_started >/dev/null 2>&1; then service_started; fi
}

# --- commands: ubus, logger and the uci CLI record into $STANDIN_LOG.
ubus() {
	printf 'ubus %s\n' "$*" >>"$STANDIN_LOG"
}

logger() {
	printf 'logger %s\n' "$*" >>"$STANDIN_LOG"
}

# uci [-q] get/add/set/add_list/changes/commit on $UCI_CONFIG_DIR; changes are kept in
# $UCI_CONFIG_DIR/.changes until commit appends them (new sections only, which is what
# wesher.init makes) or adds list items to an existing section.
uci() {
	[ "$1" = -q ] && shift
	printf 'uci %s\n' "$*" >>"$STANDIN_LOG"
	local cmd="$1" arg="${2:-}" changes="$UCI_CONFIG_DIR/.changes"
	case "$cmd" in
	get) _uci_get "$arg" ;;
	add)
		local n
		n=$(uci_dump "$UCI_CONFIG_DIR/$arg" | grep -c '^S')
		n=$((n + $(grep -c '^add ' "$changes" 2>/dev/null || true) + 1))
		local name
		name=$(printf 'config %s\n' "$3" | UCI_N=$n awk 'BEGIN { for (i = 1; i < 256; i++) ord[sprintf("%c", i)] = i }
			{ h = 5381; s = $2; for (i = 1; i <= length(s); i++) h = (h * 33 + ord[substr(s, i, 1)]) % 4294967296
			  printf "cfg%02x%04x\n", ENVIRON["UCI_N"], (h % 2147483648) % 65536 }')
		echo "add $arg $name $3" >>"$changes"
		echo "$name"
		;;
	set | add_list) echo "$cmd $arg" >>"$changes" ;;
	changes) [ ! -f "$changes" ] || cat "$changes" ;;
	commit) _uci_commit "$arg" ;;
	*) return 1 ;;
	esac
}

# get PACKAGE.SECTION.OPTION, SECTION as a name or @type[N]; lists joined by spaces.
_uci_get() {
	local package="${1%%.*}" rest="${1#*.}" section option
	section=${rest%%.*}
	option=${rest#*.}
	[ "$option" = "$rest" ] && option=""
	uci_dump "$UCI_CONFIG_DIR/$package" | awk -F '\t' -v sec="$section" -v opt="$option" '
		BEGIN { want = sec; idx = -1
			if (sec ~ /^@/) { t = sec; sub(/^@/, "", t); idx = t; sub(/\[.*/, "", t); sub(/.*\[/, "", idx); sub(/\]/, "", idx); idx = idx + 0; type = t } }
		$1 == "S" { cur = ""; if (idx >= 0) { if ($3 == type && n++ == idx) cur = $2 } else if ($2 == want) cur = $2 }
		cur != "" && opt == "" && $1 == "S" { print $3; found = 1 }
		cur != "" && ($1 == "O" || $1 == "L") && $3 == opt { v = v (v == "" ? "" : " ") $4; found = 1 }
		END { if (v != "") print v; exit(found ? 0 : 1) }'
}

_uci_commit() {
	local package="$1" changes="$UCI_CONFIG_DIR/.changes" cmd path value option
	[ -f "$changes" ] || return 0
	while read -r cmd path value; do
		case "$cmd" in
		add) printf '\nconfig %s\n' "${value#* }" >>"$UCI_CONFIG_DIR/$path" ;;
		set | add_list)
			option=${path##*.}
			option=${option%%=*}
			value=${path#*=}
			# Appending works for the section just added (the file's last) and for list items
			# of a section that is the last one; the tests keep to those cases.
			if [ "$cmd" = set ]; then
				printf "\toption %s '%s'\n" "$option" "$value" >>"$UCI_CONFIG_DIR/$package"
			else
				printf "\tlist %s '%s'\n" "$option" "$value" >>"$UCI_CONFIG_DIR/$package"
			fi
			;;
		esac
	done <"$changes"
	rm -f "$changes"
}

# --- netifd-proto.sh: the handler's side of netifd's protocol-handler interface. netifd runs
# `HANDLER PROTO dump` for the option list, `HANDLER PROTO setup|teardown IFACE CONFIG_JSON
# IFNAME` for an interface; each message becomes `ubus call network.interface notify_proto`
# with the interface's name inside, recorded into $STANDIN_LOG. (Checked against netifd's
# scripts/netifd-proto.sh with libubox's jshn: the same messages.)
proto_config_add_generic() {
	json_add_array ""
	json_add_string "" "$1"
	json_add_int "" "$2"
	json_close_array
}
proto_config_add_int() { proto_config_add_generic "$1" 5; }
proto_config_add_string() { proto_config_add_generic "$1" 3; }
proto_config_add_boolean() { proto_config_add_generic "$1" 7; }
proto_config_add_array() { proto_config_add_generic "$1" 1; }

init_proto() {
	proto="$1" cmd="$2"
	shift 2
	case "$cmd" in
	dump)
		add_protocol() {
			no_device=0 available=0
			json_init
			json_add_string name "$1"
			json_add_array config
			"proto_$1_init_config"
			json_close_array
			json_add_boolean no-device "$no_device"
			json_add_boolean no-device-config 0
			json_add_boolean no-proto-task 0
			json_add_boolean available "$available"
			json_add_boolean renew-handler 0
			json_add_boolean restart-handler 0
			json_add_boolean lasterror 0
			json_add_boolean teardown-on-l3-link-down 0
			json_dump
		}
		;;
	setup | teardown)
		interface="$1" data="$2" ifname="${3:-}"
		add_protocol() {
			[ "$proto" = "$1" ] || return 0
			_json_in=$data
			"proto_$1_$cmd" "$interface" "$ifname"
		}
		;;
	esac
}

# jshn's reading side, on the config netifd hands over: booleans as 0/1, arrays space-separated.
json_get_var() {
	eval "$1=\$(printf '%s' \"\$_json_in\" | jq -r --arg k \"\$2\" '.[\$k] | if . == null then empty elif type == \"boolean\" then (if . then 1 else 0 end) else . end')"
}
json_get_vars() {
	local v
	for v; do json_get_var "$v" "$v"; done
}
json_get_values() {
	eval "$1=\$(printf '%s' \"\$_json_in\" | jq -r --arg k \"\$2\" '(.[\$k] // [])[]' | tr '\\n' ' ' | sed 's/ \$//')"
}

_proto_notify() {
	json_add_string interface "$1"
	ubus call network.interface notify_proto "$(json_dump)"
}

proto_run_command() {
	local interface="$1"
	shift
	json_init
	json_add_int action 1
	json_add_array command
	while [ $# -gt 0 ]; do
		json_add_string "" "$1"
		shift
	done
	json_close_array
	_proto_notify "$interface"
}

proto_kill_command() {
	json_init
	json_add_int action 2
	[ -n "${2:-}" ] && json_add_int signal "$2"
	_proto_notify "$1"
}

proto_init_update() {
	json_init
	json_add_int action 0
	[ -n "$1" ] && [ "$1" != "*" ] && json_add_string ifname "$1"
	json_add_boolean link-up "$2"
	[ -n "${3:-}" ] && json_add_boolean address-external "$3"
}

proto_add_data() { json_add_object data; }
proto_close_data() { json_close_object; }
proto_send_update() {
	json_add_boolean keep 0
	_proto_notify "$1"
}

proto_notify_error() {
	local interface="$1"
	shift
	json_init
	json_add_int action 3
	json_add_array error
	for e; do json_add_string "" "$e"; done
	json_close_array
	_proto_notify "$interface"
}

proto_block_restart() {
	json_init
	json_add_int action 4
	_proto_notify "$1"
}

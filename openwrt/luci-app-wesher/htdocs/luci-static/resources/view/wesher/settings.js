'use strict';
'require view';
'require form';
'require rpc';
'require ui';

// Services > wesher > Settings: every option of /etc/config/wesher (one `config wesher` section
// per mesh), checked as the agent checks its flags, so that what LuCI saves the agent accepts.
// Saving goes through uci; procd's reload trigger on the wesher config restarts what changed.

const callGenerateKey = rpc.declare({
	object: 'luci.wesher',
	method: 'generate_key'
});

// --- Parsing, by the agent's rules (src/config.rs, src/overlay.rs, src/base64.rs). ---

// A 32-byte key in standard base64 with padding (line breaks ignored, as Go does).
function checkKey(value) {
	const text = value.replace(/[\r\n]/g, '');
	if (text.length % 4 != 0 || !/^[A-Za-z0-9+\/]*={0,2}$/.test(text))
		return _('not valid base64');
	const bytes = text.length / 4 * 3 - (text.match(/=*$/)[0].length);
	if (bytes != 32)
		return _('decodes to %d bytes, expected 32').replace('%d', bytes);
	return null;
}

function parseIPv4(text) {
	const parts = text.split('.');
	if (parts.length != 4 || !parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && +p < 256))
		return null;
	return parts.map(Number);
}

function parseIPv6(text) {
	if (!/^[0-9A-Fa-f:.]+$/.test(text) || (text.match(/::/g) || []).length > 1)
		return null;
	let [ head, tail ] = text.includes('::') ? text.split('::') : [ text, null ];
	const groups = (s) => s == '' ? [] : s.split(':');
	let left = groups(head), right = tail == null ? [] : groups(tail);
	const last = tail == null ? left : right;
	let v4 = null;
	if (last.length && last[last.length - 1].includes('.')) {
		v4 = parseIPv4(last.pop());
		if (!v4)
			return null;
	}
	const words = (list) => list.map((g) => /^[0-9A-Fa-f]{1,4}$/.test(g) ? parseInt(g, 16) : NaN);
	left = words(left);
	right = words(right);
	if (left.concat(right).some(isNaN))
		return null;
	const have = left.length + right.length + (v4 ? 2 : 0);
	if (tail == null ? have != 8 : have > 7)
		return null;
	const all = left.concat(new Array(8 - have).fill(0), right);
	const bytes = [];
	all.forEach((w) => bytes.push(w >> 8, w & 255));
	return v4 ? bytes.concat(v4) : bytes;
}

// { bytes, v6 } or null.
function parseIP(text) {
	const v4 = parseIPv4(text);
	if (v4)
		return { bytes: v4, v6: false };
	const v6 = text.includes(':') ? parseIPv6(text) : null;
	return v6 ? { bytes: v6, v6: true } : null;
}

// { ip, len } or an error string.
function parseCidr(text) {
	const slash = text.indexOf('/');
	if (slash < 0)
		return _('%s is not in ADDRESS/PREFIX form').replace('%s', text);
	const ip = parseIP(text.substring(0, slash));
	const lenText = text.substring(slash + 1);
	if (!ip)
		return _('%s is not an IP address').replace('%s', text.substring(0, slash));
	if (!/^[0-9]{1,3}$/.test(lenText))
		return _('prefix length %s is not a number').replace('%s', lenText);
	const len = +lenText, bits = ip.bytes.length * 8;
	if (len > bits)
		return _('prefix length %d is longer than the %d bits of the address')
			.replace('%d', len).replace('%d', bits);
	return { ip, len };
}

// The address with its host bits set to `fill` (0 or 1).
function hostBits(cidr, fill) {
	return cidr.ip.bytes.map((b, i) => {
		const keep = Math.max(0, Math.min(8, cidr.len - i * 8));
		const mask = (0xff << (8 - keep)) & 0xff;
		return (b & mask) | (fill ? ~mask & 0xff : 0);
	});
}

function formatIP(bytes) {
	if (bytes.length == 4)
		return bytes.join('.');
	const words = [];
	for (let i = 0; i < 16; i += 2)
		words.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
	return words.join(':').replace(/(^|:)0(:0)+(:|$)/, '::').replace(/:::+/, '::');
}

function sameBytes(a, b) {
	return a.length == b.length && a.every((x, i) => x == b[i]);
}

function contains(cidr, ip) {
	return ip.v6 == cidr.ip.v6 && sameBytes(hostBits({ ip, len: cidr.len }, 0), hostBits(cidr, 0));
}

function overlaps(a, b) {
	const shorter = a.len <= b.len ? a : b, longer = shorter === a ? b : a;
	return contains(shorter, longer.ip);
}

function checkPort(value) {
	if (!/^[0-9]+$/.test(value))
		return _('port %s is not a number').replace('%s', value);
	if (+value < 1 || +value > 65535)
		return _('port %s is out of range 1..65535').replace('%s', value);
	return null;
}

// Linux interface names (dev_valid_name): 1..15 bytes, not . or .., no '/', ':' or whitespace.
function checkInterface(value) {
	if (new TextEncoder().encode(value).length > 15)
		return _('interface name %s is longer than the 15 bytes Linux allows').replace('%s', value);
	if (value == '.' || value == '..' || /[\/:\s\x00-\x1f\x7f]/.test(value))
		return _('%s is not a valid interface name').replace('%s', value);
	return null;
}

function isHostname(host) {
	return host.length > 0 && host.length <= 253 && /^[A-Za-z0-9._-]+$/.test(host);
}

// host, host:port, IPv4, IPv4:port, bare IPv6, [IPv6], [IPv6]:port.
function checkJoin(value) {
	let host = value, port = null;
	const bracket = value.match(/^\[([^\]]*)\](.*)$/);
	if (bracket) {
		if (!parseIPv6(bracket[1]))
			return _('%s is not an IPv6 address').replace('%s', bracket[1]);
		host = bracket[1];
		if (bracket[2] != '') {
			if (bracket[2][0] != ':')
				return _("unexpected text after ']'");
			port = bracket[2].substring(1);
		}
	}
	else if (!parseIP(value) && value.includes(':')) {
		const parts = value.split(':');
		if (parts.length > 2)
			return _('not an address: IPv6 with a port must be written [addr]:port');
		[ host, port ] = parts;
	}
	if (!parseIP(host) && !isHostname(host))
		return _('%s is not a valid hostname or IP address').replace('%s', host);
	return port == null ? null : checkPort(port);
}

function checkPath(value) {
	return value.startsWith('/') ? null : _('%s is not an absolute path').replace('%s', value);
}

// fw4 zone names: letters, digits and underscores, at most 11 characters (fw4's own limit).
function checkZone(value) {
	return /^[A-Za-z0-9_]{1,11}$/.test(value) ? null
		: _('%s is not a firewall zone name (letters, digits, _; at most 11)').replace('%s', value);
}

// --- Glue to form options: LuCI calls validate(section_id, value) per value or list item. ---

function validator(check) {
	return function(section_id, value) {
		if (value == null || value === '')
			return true;
		const error = check.call(this, section_id, String(value));
		return error ? error : true;
	};
}

// The overlay network as the form currently has it (or the agent's default).
function overlayNet(option, section_id) {
	const value = option.section.formvalue(section_id, 'overlay_net') || '10.0.0.0/8';
	const cidr = parseCidr(value);
	return typeof cidr == 'string' ? null : cidr;
}

function checkOverlayNet(section_id, value) {
	const cidr = parseCidr(value);
	if (typeof cidr == 'string')
		return cidr;
	if (cidr.len % 8 != 0)
		return _('prefix length /%d must be a multiple of 8 (Go wesher derives addresses by whole bytes)')
			.replace('%d', cidr.len);
	if (cidr.len == cidr.ip.bytes.length * 8)
		return _('/%d leaves no room for node addresses').replace('%d', cidr.len);
	return null;
}

// A routed network: CIDR with no host bits set, outside the overlay network.
function checkRoutedNet(section_id, value) {
	const cidr = parseCidr(value);
	if (typeof cidr == 'string')
		return cidr;
	const network = hostBits(cidr, 0);
	if (!sameBytes(network, cidr.ip.bytes))
		return _('host bits are set (did you mean %s?)').replace('%s', formatIP(network) + '/' + cidr.len);
	const overlay = overlayNet(this, section_id);
	if (overlay && overlaps(cidr, overlay))
		return _('%s overlaps the overlay network').replace('%s', value);
	return null;
}

// The agent takes any CIDR here (it only widens what it accepts from others).
function checkAcceptedNet(section_id, value) {
	const cidr = parseCidr(value);
	return typeof cidr == 'string' ? cidr : null;
}

function checkAddress(section_id, value) {
	return parseIP(value) ? null : _('%s is not an IP address').replace('%s', value);
}

function checkOverlayAddr(section_id, value) {
	const ip = parseIP(value);
	if (!ip)
		return _('%s is not an IP address').replace('%s', value);
	const overlay = overlayNet(this, section_id);
	if (!overlay)
		return null;
	if (!contains(overlay, ip))
		return _('%s is not inside the overlay network').replace('%s', value);
	const broadcast = overlay.ip.v6 ? null : hostBits(overlay, 1);
	if (sameBytes(ip.bytes, hostBits(overlay, 0)) || (broadcast && sameBytes(ip.bytes, broadcast)))
		return _('%s is the network or broadcast address of the overlay network').replace('%s', value);
	return null;
}

function checkMtu(section_id, value) {
	const overlay = overlayNet(this, section_id);
	const min = overlay && overlay.ip.v6 ? 1280 : 576;
	if (!/^[0-9]+$/.test(value) || +value < min || +value > 9000)
		return _('MTU %s is out of range %d..9000 for this overlay').replace('%s', value).replace('%d', min);
	return null;
}

function checkKeepalive(section_id, value) {
	if (!/^[0-9]+$/.test(value) || +value > 65535)
		return _('%s is not a number of seconds in 0..65535').replace('%s', value);
	return null;
}

function checkNodeName(section_id, value) {
	if (value.length > 253 || !/^[\x21-\x7e]+$/.test(value) || value.includes('#'))
		return _('node name must be 1..253 printable ASCII characters without whitespace or #');
	return null;
}

function checkBindIface(section_id, value) {
	if (this.section.formvalue(section_id, 'bind_addr'))
		return _('set either the bind address or the bind interface, not both');
	return checkInterface(value);
}

// --- The two key buttons. ---

function keyOption(option, section_id) {
	return option.map.lookupOption('cluster_key', section_id)[0];
}

function showKey(title, key) {
	const field = E('input', {
		'class': 'cbi-input-text wesher-key-copy',
		'readonly': 'readonly',
		'value': key,
		'style': 'width:100%; font-family:monospace'
	});
	ui.showModal(title, [
		E('p', {}, [ _('Use this key on every node of the mesh (Settings > Cluster key, or --cluster-key).') ]),
		field,
		E('div', { 'class': 'right' }, [
			E('button', {
				'class': 'btn cbi-button-action',
				'click': () => {
					field.select();
					if (navigator.clipboard && window.isSecureContext)
						navigator.clipboard.writeText(key);
					else
						document.execCommand('copy');
				}
			}, [ _('Copy') ]),
			' ',
			E('button', { 'class': 'btn', 'click': ui.hideModal }, [ _('Close') ])
		])
	]);
	field.select();
}

function generateKey(ev, section_id) {
	return callGenerateKey().then((reply) => {
		if (!L.isObject(reply) || !reply.key) {
			const why = L.isObject(reply) && reply.error ? reply.error : rpc.getStatusText(reply);
			ui.addNotification(null, E('p', {}, [ _('Cannot generate a key: %s').replace('%s', why) ]), 'danger');
			return;
		}
		const widget = keyOption(this, section_id).getUIElement(section_id);
		widget.setValue(reply.key);
		widget.triggerValidation();
		showKey(_('New cluster key (not saved yet)'), reply.key);
	});
}

function copyKey(ev, section_id) {
	const key = keyOption(this, section_id).formvalue(section_id);
	if (!key) {
		ui.addNotification(null, E('p', {}, [ _('No cluster key is set for this mesh.') ]), 'warning');
		return;
	}
	showKey(_('Cluster key'), key);
}

function button(s, tab, name, title, label, onclick) {
	const o = s.taboption(tab, form.Button, name, title);
	o.inputtitle = label;
	o.inputstyle = 'action';
	o.onclick = onclick;
	// Buttons are not settings: nothing of theirs goes to uci.
	o.write = o.remove = function() {};
	return o;
}

// One option: `check(section_id, value)` returns an error message or null; `props` sets any
// other property of the form option (placeholder, default, rmempty, password).
function option(s, tab, cls, name, title, description, check, props) {
	const o = s.taboption(tab, cls, name, title, description);
	if (check)
		o.validate = validator(check);
	Object.assign(o, props || {});
	return o;
}

// Checks that need only the value.
const only = (check) => (section_id, value) => check(value);

return view.extend({
	render: function() {
		const m = new form.Map('wesher', _('wesher mesh'),
			_('Each section is one mesh this router is part of. Empty fields use the agent\'s defaults.'));

		const s = m.section(form.TypedSection, 'wesher', _('Meshes'));
		s.addremove = true;
		s.anonymous = false;
		s.tab('general', _('General'));
		s.tab('network', _('Network'));
		s.tab('advanced', _('Advanced'));

		option(s, 'general', form.Flag, 'enabled', _('Enabled'), _('Run an agent for this mesh.'),
			null, { rmempty: false, default: '0' });
		option(s, 'general', form.Value, 'node_name', _('Node name'),
			_('Unique in the mesh; the hostname when empty (every OpenWrt router is called OpenWrt).'),
			checkNodeName);
		option(s, 'general', form.Value, 'cluster_key', _('Cluster key'),
			_('Shared by every node: 32 bytes, standard base64. Empty: the stored key, or a new one.'),
			only(checkKey), { password: true });
		button(s, 'general', '_generate_key', _('New cluster key'), _('Generate'), generateKey);
		button(s, 'general', '_copy_key', _('Copy the key'), _('Show and copy'), copyKey);
		option(s, 'general', form.DynamicList, 'join', _('Join'),
			_('Nodes to join: host or IP, optional :port. Empty: the nodes in the state file.'),
			only(checkJoin));
		option(s, 'general', form.Flag, 'init', _('Forget state at start'),
			_('Forget the stored nodes and key when the agent starts.'));

		option(s, 'network', form.Value, 'interface', _('Interface'),
			_('WireGuard interface; also names the state file.'),
			only(checkInterface), { placeholder: 'wgoverlay' });
		option(s, 'network', form.Value, 'overlay_net', _('Overlay network'),
			_('IPv4 or IPv6, prefix length a multiple of 8; the same on every node.'),
			checkOverlayNet, { placeholder: '10.0.0.0/8' });
		option(s, 'network', form.Value, 'overlay_addr', _('Overlay address'),
			_('This node\'s address in the overlay network; derived from the node name when empty.'),
			checkOverlayAddr);
		option(s, 'network', form.DynamicList, 'routed_net', _('Routed networks'),
			_('Networks behind this node (its LAN) that the other nodes route through it.'),
			checkRoutedNet);
		option(s, 'network', form.DynamicList, 'accept_routed_net', _('Accepted routed networks'),
			_('Other nodes\' routed networks to install even where they overlap this node\'s own networks, its default route or a member\'s address.'),
			checkAcceptedNet);
		option(s, 'network', form.Value, 'cluster_port', _('Cluster port'), _('Gossip, TCP and UDP.'),
			only(checkPort), { placeholder: '7946' });
		option(s, 'network', form.Value, 'wireguard_port', _('WireGuard port'),
			_('UDP; the same on every node.'), only(checkPort), { placeholder: '51820' });
		option(s, 'network', form.Value, 'bind_addr', _('Bind address'),
			_('Gossip address; autodetected when empty.'), checkAddress);
		option(s, 'network', form.Value, 'bind_iface', _('Bind interface'),
			_('Bind to this interface\'s first address instead.'), checkBindIface);
		option(s, 'network', form.Value, 'advertise_addr', _('Advertised address'),
			_('What other nodes use to reach this one (NAT, port forwarding).'), checkAddress);
		option(s, 'network', form.Value, 'advertise_port', _('Advertised port'), null, only(checkPort));
		option(s, 'network', form.Value, 'persistent_keepalive', _('Persistent keepalive'),
			_('Seconds; for nodes behind NAT. 0 or empty: off.'), checkKeepalive);
		option(s, 'network', form.Value, 'mtu', _('MTU'), null, checkMtu, { placeholder: '1420' });
		option(s, 'network', form.Flag, 'open_firewall', _('Open the firewall'),
			_('Accept the cluster and WireGuard ports from the zone below.'), null, { default: '1' });
		option(s, 'network', form.Value, 'firewall_zone', _('Firewall zone of the uplink'),
			_('Where other nodes reach this one from.'), only(checkZone), { placeholder: 'wan' });
		option(s, 'network', form.Value, 'zone', _('Mesh firewall zone'),
			_('A firewall zone for the mesh interface, created when missing; empty: none.'), only(checkZone));

		const profile = option(s, 'advanced', form.ListValue, 'gossip_profile', _('Gossip profile'),
			_('wan: Go wesher\'s timings; lan: faster failure detection.'));
		profile.value('', _('default (wan)'));
		[ 'wan', 'lan' ].forEach((p) => profile.value(p));
		const level = option(s, 'advanced', form.ListValue, 'log_level', _('Log level'));
		level.value('', _('default (warn)'));
		[ 'error', 'warn', 'info', 'debug', 'trace' ].forEach((l) => level.value(l));
		option(s, 'advanced', form.Flag, 'no_etc_hosts', _('Do not write hosts'),
			_('Leave the hosts file alone.'));
		option(s, 'advanced', form.Value, 'hosts_file', _('Hosts file'),
			_('Where the members\' names are written.'), only(checkPath));
		option(s, 'advanced', form.Value, 'on_change', _('On change'),
			_('Program run after each change of the mesh; empty: hotplug events for /etc/hotplug.d/wesher/.'),
			only(checkPath), { placeholder: '/usr/libexec/wesher-hotplug' });
		option(s, 'advanced', form.Value, 'state_dir', _('State directory'),
			_('Cluster key and known nodes; on flash so that they survive a reboot.'),
			only(checkPath), { placeholder: '/etc/wesher' });

		return m.render();
	}
});

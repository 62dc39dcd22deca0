'use strict';
'require view';
'require rpc';
'require poll';

// Services > wesher > Status: every mesh of /etc/config/wesher, this node and its members, as the
// agent reports them (`wesher status --json`, schema version 1), refreshed by polling.

const callStatus = rpc.declare({
	object: 'luci.wesher',
	method: 'status'
});

// The status JSON versions this page understands (README, "Status JSON").
const STATUS_VERSION = 1;

function formatAge(secs) {
	if (secs == null)
		return _('never');
	const units = [ [ 86400, 'd' ], [ 3600, 'h' ], [ 60, 'm' ], [ 1, 's' ] ];
	const parts = [];
	let rest = secs;
	for (const [ size, unit ] of units) {
		if (rest >= size || (size == 1 && parts.length == 0)) {
			parts.push(Math.floor(rest / size) + unit);
			rest %= size;
		}
		if (parts.length == 2)
			break;
	}
	return _('%s ago').replace('%s', parts.join(' '));
}

function formatBytes(n) {
	const units = [ 'B', 'KiB', 'MiB', 'GiB', 'TiB' ];
	let i = 0, v = Number(n) || 0;
	while (v >= 1024 && i < units.length - 1) {
		v /= 1024;
		i++;
	}
	return (i ? v.toFixed(2) : String(v)) + ' ' + units[i];
}

function banner(kind, text) {
	return E('div', { 'class': 'alert-message ' + kind }, [ text ]);
}

function cell(text, title) {
	return E('td', { 'class': 'td', 'title': title != null ? String(title) : null }, [ text ]);
}

function membersTable(members) {
	const head = [ _('Name'), _('Overlay address'), _('Underlay endpoint'), _('State'),
		_('Last handshake'), _('Received'), _('Sent') ];
	const rows = members
		.slice()
		.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
		.map((m) => E('tr', { 'class': 'tr wesher-member', 'data-name': m.name }, [
			cell(m.name),
			cell(m.overlay || '-'),
			cell(m.underlay || '-'),
			E('td', { 'class': 'td' }, [
				E('span', { 'class': 'wesher-state wesher-state-' + m.state }, [ m.state ])
			]),
			cell(formatAge(m.handshake_age_secs), m.handshake_age_secs),
			cell(formatBytes(m.rx_bytes), m.rx_bytes),
			cell(formatBytes(m.tx_bytes), m.tx_bytes)
		]));

	if (!rows.length)
		rows.push(E('tr', { 'class': 'tr placeholder' }, [
			E('td', { 'class': 'td', 'colspan': head.length }, [
				E('em', {}, [ _('No other members yet.') ])
			])
		]));

	return E('table', { 'class': 'table wesher-members' }, [
		E('tr', { 'class': 'tr table-titles' }, head.map((h) => E('th', { 'class': 'th' }, [ h ])))
	].concat(rows));
}

function nodeTable(status) {
	const rows = [
		[ _('Node name'), status.node.name ],
		[ _('Overlay address'), status.node.overlay ],
		[ _('Underlay address'), status.node.underlay ],
		[ _('Interface'), status.interface ]
	];
	return E('table', { 'class': 'table wesher-node' }, rows.map(([ k, v ]) =>
		E('tr', { 'class': 'tr' }, [
			E('td', { 'class': 'td left', 'width': '33%' }, [ k ]),
			E('td', { 'class': 'td left' }, [ v || '-' ])
		])));
}

function renderMesh(mesh) {
	const body = [];
	const title = mesh.section + (mesh.interface ? ' (' + mesh.interface + ')' : '');

	if (!mesh.enabled) {
		body.push(banner('notice', _('This mesh is disabled in the settings.')));
	}
	else if (mesh.error) {
		body.push(banner('warning', _('The agent is not answering: %s').replace('%s', mesh.error)));
	}
	else if (!L.isObject(mesh.status) || !L.isObject(mesh.status.node) ||
	         !Array.isArray(mesh.status.members)) {
		body.push(banner('warning', _('The agent sent a status this page cannot read.')));
	}
	else {
		if (mesh.status.version !== STATUS_VERSION)
			body.push(banner('notice', _('The agent reports status version %s; this page knows version %s.')
				.replace('%s', mesh.status.version).replace('%s', STATUS_VERSION)));
		body.push(E('h4', {}, [ _('This node') ]), nodeTable(mesh.status));
		body.push(E('h4', {}, [ _('Members') ]), membersTable(mesh.status.members));
	}

	return E('div', { 'class': 'cbi-section wesher-mesh', 'data-section': mesh.section }, [
		E('h3', {}, [ title ])
	].concat(body));
}

// The page content for one answer of the backend: a list of meshes, or why there is none.
function renderAll(reply) {
	if (reply instanceof Error)
		return [ banner('error', _('Cannot reach the wesher backend: %s').replace('%s', reply.message)) ];
	if (typeof reply == 'number')
		return [ banner('error', _('The wesher backend is not available (%s). Is luci-app-wesher installed and rpcd restarted?')
			.replace('%s', rpc.getStatusText(reply))) ];
	if (!L.isObject(reply) || !Array.isArray(reply.meshes))
		return [ banner('error', _('The wesher backend sent an unreadable answer.')) ];
	if (!reply.meshes.length)
		return [ banner('notice', _('No mesh is configured in /etc/config/wesher.')) ];
	return reply.meshes.map(renderMesh);
}

function fetchStatus() {
	return callStatus().catch((err) => err instanceof Error ? err : new Error(String(err)));
}

return view.extend({
	handleSaveApply: null,
	handleSave: null,
	handleReset: null,

	load: function() {
		return fetchStatus();
	},

	render: function(reply) {
		const content = E('div', { 'id': 'wesher-status' }, renderAll(reply));

		poll.add(() => fetchStatus().then((next) => {
			content.replaceChildren(...renderAll(next));
		}));

		return E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, [ _('wesher mesh') ]),
			E('div', { 'class': 'cbi-map-descr' }, [
				_('The meshes of this router, as their agents report them. Refreshed every few seconds.')
			]),
			content
		]);
	}
});

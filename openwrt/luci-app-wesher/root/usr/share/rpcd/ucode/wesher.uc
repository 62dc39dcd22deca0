// SPDX-License-Identifier: GPL-3.0-only
//
// rpcd plugin behind luci-app-wesher: ubus object `luci.wesher` (LuCI's naming, so that it
// never collides with an object of wesher's own).
//   status        -> { meshes: [ { section, enabled, interface, status, error } ] }
//                    one entry per `config wesher` section; `status` is the agent's own
//                    `wesher status --json` (README, "Status JSON"), `error` says why it is missing.
//   generate_key  -> { key } or { error }: `wesher key generate`.
// The agent answers on its control socket within milliseconds; the timeout only bounds a stuck
// one, so that one mesh cannot hold rpcd (and every other LuCI page) for long.

'use strict';

import { access, popen } from 'fs';
import { cursor } from 'uci';

const TIMEOUT_SECS = 5;

function shellquote(s) {
	return `'${replace(s, "'", "'\\''")}'`;
}

function wesher_bin() {
	for (let path in [ '/usr/sbin/wesher', '/usr/bin/wesher' ])
		if (access(path, 'x'))
			return path;
	return null;
}

// Runs `wesher ARGS` with a time limit; returns { code, output } (stdout and stderr together).
function run(bin, args) {
	let limit = '';
	for (let path in [ '/usr/bin/timeout', '/bin/timeout' ])
		if (access(path, 'x')) {
			limit = `${path} ${TIMEOUT_SECS} `;
			break;
		}
	const fd = popen(`${limit}${bin} ${args} 2>&1`, 'r');
	if (!fd)
		return { code: -1, output: 'cannot run wesher' };
	const output = fd.read('all') ?? '';
	const code = fd.close();
	return { code, output };
}

// The agent's message without the `wesher: error: ` prefix, or what went wrong running it.
function failure(result) {
	const text = trim(replace(result.output, /^wesher: error: /, ''));
	if (length(text))
		return text;
	if (result.code == 124 || result.code == 143)
		return `the agent did not answer within ${TIMEOUT_SECS} s`;
	return `wesher exited with status ${result.code}`;
}

function mesh_status(bin, section) {
	const iface = section.interface || 'wgoverlay';
	const mesh = {
		section: section['.name'],
		enabled: section.enabled == '1',
		interface: iface,
		status: null,
		error: null
	};

	if (!mesh.enabled)
		return mesh;
	if (!bin) {
		mesh.error = 'the wesher program is not installed';
		return mesh;
	}

	const result = run(bin, `status --json --interface ${shellquote(iface)}`);
	if (result.code != 0) {
		mesh.error = failure(result);
		return mesh;
	}
	try {
		mesh.status = json(result.output);
	}
	catch (e) {
		mesh.error = `unreadable answer from the agent: ${e.message}`;
	}
	return mesh;
}

const methods = {
	status: {
		call: function() {
			const bin = wesher_bin();
			const meshes = [];
			cursor().foreach('wesher', 'wesher', (s) => {
				push(meshes, mesh_status(bin, s));
			});
			return { meshes };
		}
	},

	generate_key: {
		call: function() {
			const bin = wesher_bin();
			if (!bin)
				return { error: 'the wesher program is not installed' };
			const result = run(bin, 'key generate');
			const key = trim(result.output);
			if (result.code != 0 || !match(key, /^[A-Za-z0-9+\/]{43}=$/))
				return { error: failure(result) };
			return { key };
		}
	}
};

return { 'luci.wesher': methods };

// A stand-in for the parts of LuCI's client API (luci-base's luci.js, baseclass, rpc, uci, poll,
// ui, form and view) that luci-app-wesher's views call, with LuCI's call signatures and documented
// behaviour, so that the views run in a browser without an OpenWrt router. Written from LuCI's API
// documentation; no LuCI code. What it does NOT cover is listed in tests/luci/README.md.
'use strict';

(function() {
	// --- Classes: Class.extend(props) with __init__ and this.super(name, args). ---
	function extend(parent, props) {
		const ctor = function() {
			if (typeof this.__init__ == 'function')
				return this.__init__.apply(this, arguments);
		};
		ctor.prototype = Object.create(parent.prototype);
		Object.assign(ctor.prototype, props);
		ctor.prototype.constructor = ctor;
		ctor.prototype.super = function(name, args) {
			let proto = Object.getPrototypeOf(ctor.prototype);
			return proto[name].apply(this, args || []);
		};
		ctor.extend = function(p) { return extend(ctor, p); };
		ctor.instantiate = function(args) { return new (Function.prototype.bind.apply(ctor, [ null ].concat(args)))(); };
		return ctor;
	}
	const Class = function() {};
	Class.extend = function(props) { return extend(Class, props); };

	// --- DOM helpers: E(tag, attrs, children) as LuCI's dom.create. ---
	function append(node, children) {
		if (children == null)
			return;
		if (!Array.isArray(children))
			children = [ children ];
		for (const c of children) {
			if (c == null)
				continue;
			if (c instanceof Node)
				node.appendChild(c);
			else if (Array.isArray(c))
				append(node, c);
			else
				node.appendChild(document.createTextNode(String(c)));
		}
	}

	function E(tag, attrs, children) {
		let node;
		if (Array.isArray(tag)) {
			node = document.createDocumentFragment();
			append(node, tag.concat(attrs != null ? [ attrs ] : []));
			return node;
		}
		if (tag instanceof Node)
			node = tag;
		else
			node = document.createElement(tag);
		if (attrs != null && (typeof attrs != 'object' || Array.isArray(attrs) || attrs instanceof Node)) {
			children = attrs;
			attrs = null;
		}
		for (const k in (attrs || {})) {
			const v = attrs[k];
			if (v == null)
				continue;
			if (typeof v == 'function')
				node.addEventListener(k, v);
			else if (typeof v == 'object')
				node.setAttribute(k, JSON.stringify(v));
			else
				node.setAttribute(k, v);
		}
		append(node, children);
		return node;
	}

	const env = Object.assign({ pollinterval: 5, rpctimeout: 20, sessionid: '00000000000000000000000000000000' },
		window.STANDIN_ENV || {});

	const L = {
		env: env,
		Class: Class,
		bind: function(fn, self) {
			const args = Array.prototype.slice.call(arguments, 2);
			return function() { return fn.apply(self, args.concat(Array.prototype.slice.call(arguments))); };
		},
		isObject: function(v) { return v != null && typeof v == 'object' && !Array.isArray(v); },
		resolveDefault: function(value, def) {
			return Promise.resolve(value).catch(function() { return def; });
		},
		raise: function(type, fmt) {
			const args = Array.prototype.slice.call(arguments, 2);
			let i = 0;
			const e = new Error(fmt.replace(/%[sd]/g, function() { return String(args[i++]); }));
			e.name = type;
			throw e;
		},
		url: function() { return '/' + Array.prototype.join.call(arguments, '/'); },
		resource: function() { return '/luci-static/resources/' + Array.prototype.join.call(arguments, '/'); },
		hasViewPermission: function() { return true; },
		require: require
	};

	// --- Module loading as LuCI does it: 'require x' directives become arguments. ---
	const modules = {};
	const loading = {};

	function require(name) {
		if (modules[name])
			return Promise.resolve(modules[name]);
		if (loading[name])
			return loading[name];
		const url = L.resource(name.replace(/\./g, '/') + '.js');
		loading[name] = fetch(url).then(function(res) {
			if (!res.ok)
				throw new Error('cannot load ' + url + ': HTTP ' + res.status);
			return res.text();
		}).then(function(source) {
			const deps = [], names = [];
			const re = /^\s*(?:'use strict';\s*)?'require ([a-z0-9_.]+)(?: as ([a-zA-Z0-9_]+))?';/;
			let rest = source, m;
			while ((m = re.exec(rest)) != null) {
				deps.push(m[1]);
				names.push(m[2] || m[1].replace(/.*\./, ''));
				rest = rest.substring(m[0].length);
			}
			return Promise.all(deps.map(require)).then(function(instances) {
				const fn = new Function([ 'window', 'document', 'L', '_', 'E' ].concat(names).join(','),
					source + '\n//# sourceURL=' + url);
				const cls = fn.apply(window, [ window, document, L, window._, E ].concat(instances));
				modules[name] = (typeof cls == 'function') ? new cls() : cls;
				return modules[name];
			});
		});
		return loading[name];
	}

	function define(name, instance) {
		modules[name] = instance;
	}

	window.L = L;
	window.E = E;
	window._ = function(s) { return s; };
	window.N_ = function(n, s, p) { return n == 1 ? s : p; };

	// --- baseclass ---
	define('baseclass', Class);

	// --- rpc: ubus JSON-RPC over HTTP POST, reply handling as documented for rpc.declare. ---
	let rpcId = 1;
	const statusTexts = [ 'Command OK', 'Invalid command', 'Invalid argument', 'Method not found',
		'Resource not found', 'No data received', 'Permission denied', 'Request timeout',
		'Not supported', 'Unspecified error', 'Connection lost' ];

	const rpc = {
		getStatusText: function(code) { return statusTexts[code] || 'Unknown error code'; },
		getSessionID: function() { return env.sessionid; },
		declare: function(options) {
			return function() {
				const args = Array.prototype.slice.call(arguments);
				const params = {};
				(options.params || []).forEach(function(p, i) { params[p] = args[i]; });
				const priv = [ undefined, undefined ].concat(args.slice((options.params || []).length));
				const msg = { jsonrpc: '2.0', id: rpcId++, method: 'call',
					params: [ env.sessionid, options.object, options.method, params ] };
				const controller = new AbortController();
				const timer = setTimeout(function() { controller.abort(); }, env.rpctimeout * 1000);
				return fetch('/ubus/' + options.object + '.' + options.method, {
					method: 'POST',
					headers: { 'Content-Type': 'application/json' },
					body: JSON.stringify(msg),
					signal: controller.signal
				}).then(function(res) {
					clearTimeout(timer);
					if (!res.ok)
						L.raise('RPCError', 'RPC call to %s/%s failed with HTTP error %d: %s',
							options.object, options.method, res.status, res.statusText || '?');
					return res.json();
				}).then(function(reply) {
					if (!L.isObject(reply) || reply.jsonrpc != '2.0')
						L.raise('RPCError', 'RPC call to %s/%s returned invalid message frame',
							options.object, options.method);
					if (L.isObject(reply.error) && reply.error.code && reply.error.message)
						L.raise('RPCError', 'RPC call to %s/%s failed with error %d: %s',
							options.object, options.method, reply.error.code, reply.error.message);
					let ret = null;
					if (Array.isArray(reply.result)) {
						if (options.reject && reply.result[0] !== 0)
							L.raise('RPCError', 'RPC call to %s/%s failed with ubus code %d: %s',
								options.object, options.method, reply.result[0], rpc.getStatusText(reply.result[0]));
						ret = reply.result.length > 1 ? reply.result[1] : reply.result[0];
					}
					if (options.expect) {
						const type = Object.prototype.toString;
						for (const key in options.expect) {
							if (ret != null && key != '')
								ret = ret[key];
							if (ret == null || type.call(ret) != type.call(options.expect[key]))
								ret = options.expect[key];
							break;
						}
					}
					if (typeof options.filter == 'function') {
						priv[0] = ret;
						priv[1] = params;
						ret = options.filter.apply(rpc, priv);
					}
					return ret;
				});
			};
		}
	};
	define('rpc', rpc);

	// --- uci: load/get/set/unset/sections/add/remove/save/apply over the `uci` ubus object. ---
	const uciCall = {
		get: rpc.declare({ object: 'uci', method: 'get', params: [ 'config' ], expect: { values: {} } }),
		set: rpc.declare({ object: 'uci', method: 'set', params: [ 'config', 'section', 'values' ], reject: true }),
		del: rpc.declare({ object: 'uci', method: 'delete', params: [ 'config', 'section', 'options' ], reject: true }),
		add: rpc.declare({ object: 'uci', method: 'add', params: [ 'config', 'type', 'name', 'values' ], expect: { section: '' }, reject: true })
	};

	const uci = {
		state: { values: {}, changes: {}, creates: {}, deletes: {} },
		load: function(packages) {
			const list = Array.isArray(packages) ? packages : [ packages ];
			return Promise.all(list.map(function(conf) {
				return uciCall.get(conf).then(function(values) {
					uci.state.values[conf] = values;
					uci.state.changes[conf] = {};
					uci.state.creates[conf] = {};
					uci.state.deletes[conf] = {};
					return conf;
				});
			}));
		},
		unload: function(packages) {
			(Array.isArray(packages) ? packages : [ packages ]).forEach(function(c) { delete uci.state.values[c]; });
		},
		sections: function(conf, type, cb) {
			const all = Object.assign({}, uci.state.values[conf] || {}, uci.state.creates[conf] || {});
			const list = Object.keys(all).map(function(k) { return uci._merged(conf, k); })
				.filter(function(s) { return s && (type == null || s['.type'] == type) && !(uci.state.deletes[conf] || {})[s['.name']]; })
				.sort(function(a, b) { return (a['.index'] || 0) - (b['.index'] || 0); });
			if (typeof cb == 'function')
				list.forEach(function(s) { cb.call(uci, s, s['.name']); });
			return list;
		},
		_merged: function(conf, sid) {
			const base = ((uci.state.creates[conf] || {})[sid]) || ((uci.state.values[conf] || {})[sid]);
			if (!base)
				return null;
			const s = Object.assign({}, base, (uci.state.changes[conf] || {})[sid] || {});
			for (const k in s)
				if (s[k] === null)
					delete s[k];
			return s;
		},
		get: function(conf, sid, opt) {
			const s = uci._merged(conf, sid);
			if (!s)
				return null;
			return opt == null ? s : s[opt];
		},
		set: function(conf, sid, opt, value) {
			if (!uci._merged(conf, sid))
				return;
			const changes = uci.state.changes[conf] = uci.state.changes[conf] || {};
			changes[sid] = changes[sid] || {};
			changes[sid][opt] = (value == null || value === '') ? null : value;
		},
		unset: function(conf, sid, opt) { uci.set(conf, sid, opt, null); },
		add: function(conf, type, name) {
			const sid = name || ('new' + Math.random().toString(16).substring(2, 8));
			uci.state.creates[conf] = uci.state.creates[conf] || {};
			uci.state.creates[conf][sid] = { '.type': type, '.name': sid, '.anonymous': !name, '.index': 1000 };
			return sid;
		},
		remove: function(conf, sid) {
			uci.state.deletes[conf] = uci.state.deletes[conf] || {};
			uci.state.deletes[conf][sid] = true;
		},
		changes: function() {
			return Promise.resolve(uci.state.changes);
		},
		save: function() {
			const tasks = [], reload = [];
			for (const conf in uci.state.values) {
				let dirty = false;
				for (const sid in uci.state.creates[conf] || {}) {
					const c = uci.state.creates[conf][sid];
					const values = Object.assign({}, (uci.state.changes[conf] || {})[sid] || {});
					tasks.push(uciCall.add(conf, c['.type'], c['.anonymous'] ? null : sid, values));
					delete (uci.state.changes[conf] || {})[sid];
					dirty = true;
				}
				for (const sid in uci.state.changes[conf] || {}) {
					const set = {}, del = [];
					const ch = uci.state.changes[conf][sid];
					for (const opt in ch)
						if (ch[opt] === null) {
							if (((uci.state.values[conf] || {})[sid] || {})[opt] != null)
								del.push(opt);
						}
						else
							set[opt] = ch[opt];
					if (Object.keys(set).length)
						tasks.push(uciCall.set(conf, sid, set));
					if (del.length)
						tasks.push(uciCall.del(conf, sid, del));
					dirty = dirty || Object.keys(set).length > 0 || del.length > 0;
				}
				for (const sid in uci.state.deletes[conf] || {}) {
					tasks.push(uciCall.del(conf, sid, null));
					dirty = true;
				}
				if (dirty)
					reload.push(conf);
			}
			return Promise.all(tasks).then(function() { return uci.load(reload); });
		}
	};
	define('uci', uci);

	// --- poll: functions run every `interval` seconds (default L.env.pollinterval), one at a time. ---
	const queue = [];
	let pollTimer = null;
	const poll = {
		add: function(fn, interval) {
			if (interval == null || interval <= 0)
				interval = env.pollinterval || 5;
			queue.push({ fn: fn, interval: interval, next: Date.now() + interval * 1000, busy: false });
			poll.start();
			return true;
		},
		remove: function(fn) {
			const before = queue.length;
			for (let i = queue.length - 1; i >= 0; i--)
				if (queue[i].fn === fn)
					queue.splice(i, 1);
			return queue.length < before;
		},
		start: function() {
			if (pollTimer)
				return false;
			pollTimer = setInterval(function() {
				const now = Date.now();
				queue.forEach(function(e) {
					if (e.busy || now < e.next)
						return;
					e.busy = true;
					Promise.resolve().then(e.fn).catch(function(err) { console.error(err); }).then(function() {
						e.busy = false;
						e.next = Date.now() + e.interval * 1000;
					});
				});
			}, 250);
			return true;
		},
		stop: function() {
			if (!pollTimer)
				return false;
			clearInterval(pollTimer);
			pollTimer = null;
			return true;
		},
		active: function() { return pollTimer != null; }
	};
	define('poll', poll);

	// --- ui: notifications, modal, handler functions, pending changes. ---
	const ui = {
		addNotification: function(title, children, classes) {
			const n = E('div', { 'class': 'alert-message fade-in ' + (classes || '') }, [
				title ? E('h4', {}, [ title ]) : null, children
			]);
			document.getElementById('notifications').appendChild(n);
			return n;
		},
		showModal: function(title, children) {
			const box = document.getElementById('modal');
			box.replaceChildren(E('div', { 'class': 'modal', 'role': 'dialog' }, [ title ? E('h4', {}, [ title ]) : null, children ]));
			box.hidden = false;
			return box.firstChild;
		},
		hideModal: function() {
			const box = document.getElementById('modal');
			box.replaceChildren();
			box.hidden = true;
		},
		createHandlerFn: function(ctx, fn) {
			const args = Array.prototype.slice.call(arguments, 2);
			if (typeof fn == 'string')
				fn = ctx[fn];
			return function(ev) {
				const btn = ev.currentTarget;
				btn.classList.add('spinning');
				btn.disabled = true;
				// A rejected handler has already told the user (e.g. Map.save's error dialog).
				Promise.resolve(fn.apply(ctx, args.concat([ ev ]))).catch(function(err) {
					console.warn(err);
				}).finally(function() {
					btn.classList.remove('spinning');
					btn.disabled = false;
				});
			};
		},
		// As LuCI: POST admin/uci/apply_rollback (or apply_unchecked), then admin/uci/confirm.
		// No countdown, rollback or page reload.
		changes: {
			apply: function(checked) {
				const query = '?sid=' + env.sessionid + '&token=' + (env.token || '');
				const post = function(what) { return fetch(L.url('admin/uci', what) + query, { method: 'POST' }); };
				return post(checked ? 'apply_rollback' : 'apply_unchecked').then(function(res) {
					if (res.status != (checked ? 200 : 204))
						throw new Error('Apply request failed with status ' + res.status);
					return post('confirm');
				}).then(function() {
					ui.addNotification(null, E('p', {}, [ 'Configuration changes applied.' ]), 'info');
				});
			}
		}
	};
	define('ui', ui);
	define('dom', { create: E, content: function(node, children) { node.replaceChildren(); append(node, children); return node; } });

	window.STANDIN_MODULES = modules;
	window.STANDIN_DEFINE = define;
	window.STANDIN_APPEND = append;
})();

// Stand-in for LuCI's form (CBI) and view classes: Map, TypedSection with tabs, Value, Flag,
// ListValue, DynamicList and Button, with LuCI's option properties (default, rmempty, optional,
// placeholder, password, validate, write, remove, onclick) and methods (cfgvalue, formvalue,
// getUIElement, isValid, lookupOption, save, render). Widget ids follow LuCI's
// `widget.cbid.<config>.<section>.<option>`. Not covered: see tests/luci/README.md.
'use strict';

(function() {
	const modules = window.STANDIN_MODULES, define = window.STANDIN_DEFINE;
	const uci = modules.uci, ui = modules.ui;

	// A text input (Textfield) or the item inputs of a DynamicList, with LuCI's validation
	// behaviour: class cbi-input-invalid and the message as a tooltip while the value is bad.
	function Widget(option, section_id, value) {
		this.option = option;
		this.section_id = section_id;
		this.value = value;
	}

	Widget.prototype.check = function(input, value) {
		const res = this.option.validate(this.section_id, value);
		const ok = res === true;
		input.classList.toggle('cbi-input-invalid', !ok);
		input.setAttribute('data-tooltip', ok ? '' : String(res));
		let hint = input.parentNode && input.parentNode.querySelector(':scope > .cbi-value-error');
		if (hint)
			hint.textContent = ok ? '' : String(res);
		return ok;
	};

	Widget.prototype.inputs = function() {
		return Array.prototype.slice.call(this.node.querySelectorAll('input.cbi-input-text'));
	};

	Widget.prototype.render = function() {
		const o = this.option, id = o.cbid(this.section_id);
		if (o instanceof DynamicList) {
			const list = E('div', { 'class': 'cbi-dynlist', 'id': 'widget.' + id });
			const addItem = (v) => {
				const input = E('input', { 'class': 'cbi-input-text', 'type': 'text', 'value': v });
				input.addEventListener('input', () => this.check(input, input.value));
				const row = E('div', { 'class': 'item' }, [ input, E('span', { 'class': 'cbi-value-error' }) ]);
				list.insertBefore(row, list.querySelector('.add-item'));
				this.check(input, v);
				return input;
			};
			const adder = E('input', { 'class': 'add-input', 'type': 'text', 'placeholder': o.placeholder || '' });
			list.appendChild(E('div', { 'class': 'add-item' }, [
				adder,
				E('button', { 'class': 'cbi-button cbi-button-add', 'click': (ev) => {
					ev.preventDefault();
					if (adder.value !== '') {
						addItem(adder.value);
						adder.value = '';
					}
				} }, [ '+' ])
			]));
			(this.value || []).forEach(addItem);
			this.node = list;
			this.addItem = addItem;
			return list;
		}
		if (o instanceof Flag) {
			const input = E('input', { 'type': 'checkbox', 'id': 'widget.' + id });
			input.checked = this.value == o.enabled;
			this.node = input;
			return E('div', { 'class': 'cbi-checkbox' }, [ input ]);
		}
		if (o instanceof ListValue) {
			const select = E('select', { 'class': 'cbi-input-select', 'id': 'widget.' + id },
				o.keylist.map((k, i) => E('option', { 'value': k }, [ o.vallist[i] ])));
			select.value = this.value || '';
			this.node = select;
			return select;
		}
		const input = E('input', {
			'class': 'cbi-input-text', 'id': 'widget.' + id,
			'type': o.password ? 'password' : 'text',
			'placeholder': o.placeholder || null,
			'value': this.value != null ? this.value : ''
		});
		input.addEventListener('input', () => this.check(input, input.value));
		input.addEventListener('blur', () => this.check(input, input.value));
		this.node = E('div', { 'class': 'cbi-input-wrap' }, [ input, E('span', { 'class': 'cbi-value-error' }) ]);
		return this.node;
	};

	Widget.prototype.getValue = function() {
		const o = this.option;
		if (o instanceof DynamicList)
			return this.inputs().map((i) => i.value).filter((v) => v !== '');
		if (o instanceof Flag)
			return this.node.checked ? o.enabled : o.disabled;
		if (o instanceof ListValue)
			return this.node.value;
		return this.node.querySelector('input').value;
	};

	Widget.prototype.setValue = function(value) {
		const o = this.option;
		if (o instanceof DynamicList) {
			this.inputs().forEach((i) => i.parentNode.remove());
			(value || []).forEach(this.addItem);
		}
		else if (o instanceof Flag)
			this.node.checked = value == o.enabled;
		else if (o instanceof ListValue)
			this.node.value = value;
		else
			this.node.querySelector('input').value = value;
	};

	Widget.prototype.isValid = function() {
		const o = this.option;
		if (o instanceof DynamicList)
			return this.inputs().every((i) => this.check(i, i.value));
		if (o instanceof Flag || o instanceof ListValue)
			return true;
		const input = this.node.querySelector('input');
		return this.check(input, input.value);
	};

	Widget.prototype.triggerValidation = function() { return this.isValid(); };

	const AbstractValue = L.Class.extend({
		__init__: function(map, section, option, title, description) {
			this.map = map;
			this.section = section;
			this.option = option;
			this.title = title;
			this.description = description;
			this.default = null;
			this.rmempty = true;
			this.optional = false;
			this.widgets = {};
		},
		cbid: function(section_id) { return 'cbid.' + this.map.config + '.' + section_id + '.' + this.option; },
		validate: function(section_id, value) { return true; },
		cfgvalue: function(section_id) { return uci.get(this.map.config, section_id, this.option); },
		formvalue: function(section_id) {
			const w = this.widgets[section_id];
			return w ? w.getValue() : null;
		},
		getUIElement: function(section_id) { return this.widgets[section_id] || null; },
		isValid: function(section_id) {
			const w = this.widgets[section_id];
			return w ? w.isValid() : true;
		},
		write: function(section_id, value) { return uci.set(this.map.config, section_id, this.option, value); },
		remove: function(section_id) { return uci.unset(this.map.config, section_id, this.option); },
		renderWidget: function(section_id) {
			let value = this.cfgvalue(section_id);
			if (value == null)
				value = this.default;
			const w = new Widget(this, section_id, value);
			this.widgets[section_id] = w;
			return w.render();
		},
		render: function(section_id) {
			return E('div', { 'class': 'cbi-value', 'id': 'cbi-' + this.map.config + '-' + section_id + '-' + this.option, 'data-name': this.option }, [
				E('label', { 'class': 'cbi-value-title', 'for': 'widget.' + this.cbid(section_id) }, [ this.title || '' ]),
				E('div', { 'class': 'cbi-value-field' }, [
					this.renderWidget(section_id),
					this.description ? E('div', { 'class': 'cbi-value-description' }, [ this.description ]) : null
				])
			]);
		},
		// As LuCI's AbstractValue.parse: refuse an invalid value, remove an empty one, write a
		// changed one.
		parse: function(section_id) {
			if (!this.isValid(section_id))
				return Promise.reject(new TypeError('Option "' + (this.title || this.option) + '" contains an invalid input value.'));
			const fval = this.formvalue(section_id), cval = this.cfgvalue(section_id);
			if (fval == null || fval === '' || (Array.isArray(fval) && fval.length == 0)) {
				if (this.rmempty || this.optional)
					return Promise.resolve(this.remove(section_id));
				return Promise.reject(new TypeError('Option "' + (this.title || this.option) + '" must not be empty.'));
			}
			if (JSON.stringify(fval) != JSON.stringify(cval))
				return Promise.resolve(this.write(section_id, fval));
			return Promise.resolve();
		}
	});

	const Value = AbstractValue.extend({});
	const DynamicList = AbstractValue.extend({
		cfgvalue: function(section_id) {
			const v = uci.get(this.map.config, section_id, this.option);
			return v == null ? null : (Array.isArray(v) ? v : String(v).split(/\s+/));
		}
	});
	const ListValue = AbstractValue.extend({
		__init__: function() {
			this.super('__init__', arguments);
			this.keylist = [];
			this.vallist = [];
		},
		value: function(key, label) {
			this.keylist.push(key);
			this.vallist.push(label != null ? label : key);
		}
	});
	const Flag = AbstractValue.extend({
		__init__: function() {
			this.super('__init__', arguments);
			this.enabled = '1';
			this.disabled = '0';
			this.default = this.disabled;
		},
		// As LuCI's Flag: the default is removed (unless rmempty is off), anything else written.
		parse: function(section_id) {
			const fval = this.formvalue(section_id);
			if (fval == this.default && (this.optional || this.rmempty))
				return Promise.resolve(this.remove(section_id));
			return Promise.resolve(this.write(section_id, fval));
		}
	});
	const Button = AbstractValue.extend({
		renderWidget: function(section_id) {
			const btn = E('button', {
				'class': 'cbi-button cbi-button-' + (this.inputstyle || 'button'),
				'id': 'widget.' + this.cbid(section_id),
				'click': ui.createHandlerFn(this, function(section_id, ev) {
					ev.preventDefault();
					if (this.onclick)
						return this.onclick(ev, section_id);
					return this.map.save();
				}, section_id)
			}, [ this.inputtitle || this.title ]);
			return btn;
		},
		isValid: function() { return true; },
		parse: function(section_id) { return Promise.resolve(); }
	});

	const TypedSection = L.Class.extend({
		__init__: function(map, sectiontype, title, description) {
			this.map = map;
			this.sectiontype = sectiontype;
			this.title = title;
			this.description = description;
			this.children = [];
			this.tabs = null;
			this.anonymous = false;
			this.addremove = false;
		},
		tab: function(name, title) {
			this.tabs = this.tabs || [];
			this.tabs.push({ name: name, title: title, children: [] });
		},
		option: function(cls, name, title, description) {
			const o = new cls(this.map, this, name, title, description);
			this.children.push(o);
			return o;
		},
		taboption: function(tab, cls, name, title, description) {
			const t = (this.tabs || []).find((t) => t.name == tab);
			if (!t)
				throw new Error('Associated tab not declared');
			const o = this.option(cls, name, title, description);
			t.children.push(o);
			return o;
		},
		cfgsections: function() {
			return uci.sections(this.map.config, this.sectiontype).map((s) => s['.name']);
		},
		formvalue: function(section_id, option) {
			const o = this.children.find((c) => c.option == option);
			return o ? o.formvalue(section_id) : null;
		},
		render: function() {
			const nodes = this.cfgsections().map((sid) => {
				const body = this.tabs ? this.tabs.map((t) => E('div', { 'class': 'cbi-tabcontainer', 'data-tab': t.name, 'data-tab-title': t.title },
					[ E('h4', {}, [ t.title ]) ].concat(t.children.map((o) => o.render(sid)))))
					: this.children.map((o) => o.render(sid));
				return E('div', { 'class': 'cbi-section-node', 'id': 'cbi-' + this.map.config + '-' + sid, 'data-section': sid }, [
					this.anonymous ? null : E('h3', {}, [ sid ])
				].concat(body));
			});
			return E('div', { 'class': 'cbi-section', 'id': 'cbi-' + this.map.config + '-' + this.sectiontype }, [
				this.title ? E('h3', {}, [ this.title ]) : null
			].concat(nodes));
		},
		parse: function() {
			const tasks = [];
			this.cfgsections().forEach((sid) => this.children.forEach((o) => tasks.push(o.parse(sid))));
			return Promise.all(tasks);
		}
	});
	const NamedSection = TypedSection.extend({});

	const Map = L.Class.extend({
		__init__: function(config, title, description) {
			this.config = config;
			this.title = title;
			this.description = description;
			this.children = [];
		},
		section: function(cls) {
			const args = Array.prototype.slice.call(arguments, 1);
			const s = new (Function.prototype.bind.apply(cls, [ null, this ].concat(args)))();
			this.children.push(s);
			return s;
		},
		load: function() { return uci.load(this.config); },
		lookupOption: function(name, section_id) {
			for (const s of this.children)
				for (const o of s.children)
					if (o.option == name)
						return [ o, section_id ];
			return null;
		},
		render: function() {
			return this.load().then(() => {
				const node = E('div', { 'class': 'cbi-map', 'id': 'cbi-' + this.config }, [
					this.title ? E('h2', {}, [ this.title ]) : null,
					this.description ? E('div', { 'class': 'cbi-map-descr' }, [ this.description ]) : null
				].concat(this.children.map((s) => s.render())));
				node.__map = this;
				this.root = node;
				return node;
			});
		},
		// As LuCI: parse every option (rejecting on invalid input), then uci.save().
		save: function(cb, silent) {
			return Promise.all(this.children.map((s) => s.parse()))
				.then(() => typeof cb == 'function' ? cb() : null)
				.then(() => uci.save())
				.catch((e) => {
					if (!silent)
						ui.showModal('Save error', [
							E('p', {}, [ 'An error occurred while saving the form:' ]),
							E('p', {}, [ E('em', { 'class': 'save-error' }, [ e.message ]) ]),
							E('div', { 'class': 'right' }, [ E('button', { 'class': 'btn', 'click': ui.hideModal }, [ 'Dismiss' ]) ])
						]);
					return Promise.reject(e);
				});
		},
		reset: function() { return this.render(); }
	});

	define('form', { Map, TypedSection, NamedSection, Value, Flag, ListValue, DynamicList, Button, AbstractValue });

	// --- view: load() -> render() into #view, with the Save & Apply / Save / Reset footer. ---
	const View = L.Class.extend({
		__init__: function() {
			const vp = document.getElementById('view');
			return Promise.resolve(this.load())
				.then((data) => this.render(data))
				.then((nodes) => {
					vp.replaceChildren(nodes, this.addFooter());
					document.body.setAttribute('data-view-ready', '1');
				})
				.catch((err) => {
					vp.replaceChildren(E('div', { 'class': 'alert-message error' }, [ 'View failed: ' + err.message ]));
					document.body.setAttribute('data-view-ready', 'error');
					throw err;
				});
		},
		load: function() {},
		render: function() {},
		maps: function() {
			return Array.prototype.slice.call(document.querySelectorAll('#view .cbi-map')).filter((n) => n.__map).map((n) => n.__map);
		},
		handleSave: function(ev) {
			return Promise.all(this.maps().map((m) => m.save()));
		},
		handleSaveApply: function(ev, mode) {
			return this.handleSave(ev).then(() => ui.changes.apply(mode == '0'));
		},
		handleReset: function(ev) {
			return Promise.all(this.maps().map((m) => m.reset()));
		},
		addFooter: function() {
			const buttons = [];
			const add = (handler, cls, title) => {
				if (this[handler])
					buttons.push(E('button', { 'class': 'cbi-button ' + cls, 'click': ui.createHandlerFn(this, handler) }, [ title ]), ' ');
			};
			add('handleSaveApply', 'cbi-button-apply', 'Save & Apply');
			add('handleSave', 'cbi-button-save', 'Save');
			add('handleReset', 'cbi-button-reset', 'Reset');
			return E('div', { 'class': 'cbi-page-actions' }, buttons);
		}
	});
	define('view', { extend: function(props) { return View.extend(props); } });
})();

#!/usr/bin/env python3
"""A stand-in for uhttpd + rpcd as LuCI's views see them: ubus JSON-RPC over HTTP on 127.0.0.1.

Objects answered:
  uci      get, set, add, delete, changes: an in-memory /etc/config/<name> store with staged
           changes (set/add/delete) that LuCI's apply endpoint (/admin/uci/apply_rollback, then
           /admin/uci/confirm) commits. Every call is recorded (GET /_test/calls) so tests can
           check what the page saved.
  session  access: always granted (LuCI's form asks before it allows editing).
  luci.wesher  status, generate_key: what openwrt/luci-app-wesher's wesher.uc does, step for step,
           but running the REAL `wesher` through a command prefix given on the command line
           (for example `nsenter -t PID --mount --uts --net -- target/debug/wesher`).
Static files: the app's htdocs under /luci-static/resources/, the JS stand-in under /standin/,
and the page at /?view=wesher/status.

Not covered: sessions, ACL checks, uci's anonymous section names, rollback.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HTDOCS = os.path.join(ROOT, "openwrt", "luci-app-wesher", "htdocs")
STANDIN = os.path.join(HERE, "standin")
TIMEOUT_SECS = 5  # as wesher.uc
# --luci-root: a LuCI checkout's modules/luci-base/htdocs, to load the views into the real LuCI
# client (luci.js and friends, never part of this repository) at /real?view=wesher/status.
LUCI_ROOT = None
REAL_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<script src="/luci-static/resources/cbi.js"></script>
<script src="/luci-static/resources/luci.js"></script>
<script>L = new LuCI({ resource: '/luci-static/resources', media: '/luci-static/bootstrap',
  scriptname: '/cgi-bin/luci', pathinfo: '/admin/services/wesher', requestpath: ['admin', 'services', 'wesher'],
  dispatchpath: ['admin', 'services', 'wesher'], pollinterval: 2, ubuspath: '/ubus/',
  sessionid: '00000000000000000000000000000000', token: 'x', nodespec: { satisfied: true, readonly: false },
  apply_rollback: 90, apply_holdoff: 4, apply_timeout: 5, apply_display: 1.5 });</script>
</head><body><div id="maincontent"><div id="view"></div></div>
<script>L.require('ui').then(function(ui) { ui.instantiateView('VIEW'); });</script></body></html>"""

UBUS_OK, UBUS_INVALID_ARGUMENT, UBUS_METHOD_NOT_FOUND, UBUS_NOT_FOUND = 0, 2, 3, 4


class Store:
    """uci configs: committed sections plus the staged changes of the (single) session."""

    def __init__(self, configs):
        self.committed = configs
        self.staged = json.loads(json.dumps(configs))
        self.calls = []
        self.lock = threading.Lock()

    def values(self, config, staged):
        src = self.staged if staged else self.committed
        out = {}
        for index, (name, section) in enumerate(src.get(config, {}).items()):
            s = {".name": name, ".type": section[".type"], ".anonymous": False, ".index": index}
            s.update({k: v for k, v in section.items() if not k.startswith(".")})
            out[name] = s
        return out


def wesher_status(store, wesher):
    """wesher.uc's `status`, with the same commands, timeout and error texts."""
    meshes = []
    for name, section in store.committed.get("wesher", {}).items():
        if section.get(".type") != "wesher":
            continue
        iface = section.get("interface") or "wgoverlay"
        mesh = {"section": name, "enabled": section.get("enabled") == "1",
                "interface": iface, "status": None, "error": None}
        if mesh["enabled"]:
            code, output = run(wesher, ["status", "--json", "--interface", iface])
            if code != 0:
                mesh["error"] = failure(code, output)
            else:
                try:
                    mesh["status"] = json.loads(output)
                except ValueError as e:
                    mesh["error"] = f"unreadable answer from the agent: {e}"
        meshes.append(mesh)
    return {"meshes": meshes}


def wesher_generate_key(wesher):
    code, output = run(wesher, ["key", "generate"])
    key = output.strip()
    if code != 0 or not re.fullmatch(r"[A-Za-z0-9+/]{43}=", key):
        return {"error": failure(code, output)}
    return {"key": key}


def run(wesher, args):
    try:
        p = subprocess.run(["timeout", str(TIMEOUT_SECS)] + wesher + args, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT_SECS + 5)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return 124, ""


def failure(code, output):
    text = re.sub(r"^wesher: error: ", "", output).strip()
    if text:
        return text
    if code in (124, 143):
        return f"the agent did not answer within {TIMEOUT_SECS} s"
    return f"wesher exited with status {code}"


def handle_call(store, wesher, obj, method, args):
    """One ubus call; returns the JSON-RPC `result` array."""
    if obj == "luci.wesher":
        if method == "status":
            return [UBUS_OK, wesher_status(store, wesher)]
        if method == "generate_key":
            return [UBUS_OK, wesher_generate_key(wesher)]
        return [UBUS_METHOD_NOT_FOUND]
    if obj == "session" and method == "access":
        # One session with every right: LuCI's form.Map asks whether it may write the config.
        return [UBUS_OK, {"access": True}]
    if obj != "uci":
        return [UBUS_NOT_FOUND]
    config = args.get("config")
    with store.lock:
        if method == "get":
            if config not in store.staged:
                return [UBUS_NOT_FOUND]
            return [UBUS_OK, {"values": store.values(config, staged=True)}]
        if method == "set":
            section = store.staged.get(config, {}).get(args.get("section"))
            if section is None or not isinstance(args.get("values"), dict):
                return [UBUS_INVALID_ARGUMENT]
            section.update(args["values"])
            return [UBUS_OK]
        if method == "add":
            name = args.get("name") or f"cfg{len(store.staged.get(config, {})):02x}"
            store.staged.setdefault(config, {})[name] = {".type": args.get("type")}
            store.staged[config][name].update(args.get("values") or {})
            return [UBUS_OK, {"section": name}]
        if method == "delete":
            section = store.staged.get(config, {}).get(args.get("section"))
            if section is None:
                return [UBUS_NOT_FOUND]
            if args.get("options") is None:
                del store.staged[config][args["section"]]
            for opt in args.get("options") or []:
                section.pop(opt, None)
            return [UBUS_OK]
        if method == "changes":
            return [UBUS_OK, {"changes": {}}]
    return [UBUS_METHOD_NOT_FOUND]


def handle_apply(store, path):
    """LuCI's apply endpoints (ui.changes.apply): commit the staged changes, then confirm.
    Returns (HTTP status, body)."""
    with store.lock:
        if path.endswith("/admin/uci/confirm"):
            store.calls.append({"object": "uci", "method": "confirm", "args": {}, "result": None})
            return 204, ""
        checked = path.endswith("/admin/uci/apply_rollback")
        store.committed = json.loads(json.dumps(store.staged))
        store.calls.append({"object": "uci", "method": "apply", "args": {"rollback": checked}, "result": None})
    return (200, json.dumps({"token": "0123456789abcdef"})) if checked else (204, "")


def make_handler(store, wesher):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):
            pass

        def reply(self, code, body, ctype="application/json"):
            data = body if isinstance(body, bytes) else body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/_test/calls":
                with store.lock:
                    return self.reply(200, json.dumps(store.calls))
            if path == "/_test/config":
                with store.lock:
                    return self.reply(200, json.dumps(store.committed))
            if path == "/":
                path = "/standin/page.html"
            if path == "/real" and LUCI_ROOT:
                return self.reply(200, REAL_PAGE.replace("VIEW", self.path.split("view=")[-1]), "text/html")
            if path.startswith("/standin/"):
                base, rel = STANDIN, path[len("/standin/"):]
            elif path.startswith("/luci-static/"):
                base, rel = HTDOCS, path[1:]
                if LUCI_ROOT and not os.path.isfile(os.path.join(base, rel)):
                    base = LUCI_ROOT
            else:
                return self.reply(404, "not found", "text/plain")
            full = os.path.realpath(os.path.join(base, rel))
            if not full.startswith(base + os.sep) or not os.path.isfile(full):
                return self.reply(404, "not found", "text/plain")
            ctype = {"js": "application/javascript", "css": "text/css", "html": "text/html"}.get(
                full.rsplit(".", 1)[-1], "application/octet-stream")
            with open(full, "rb") as f:
                self.reply(200, f.read(), ctype)

        def do_POST(self):
            path = self.path.split("?")[0]
            if re.search(r"/admin/uci/(apply_rollback|apply_unchecked|confirm)$", path):
                return self.reply(*handle_apply(store, path))
            if "/ubus" not in self.path:
                return self.reply(404, "not found", "text/plain")
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError:
                body = None
            # LuCI batches concurrent calls into one POST of a JSON array, answered in order.
            if isinstance(body, list):
                return self.reply(200, json.dumps([self.answer(m) for m in body]))
            self.reply(200 if isinstance(body, dict) else 400, json.dumps(self.answer(body)))

        def answer(self, msg):
            try:
                sid, obj, method, args = msg["params"]
            except (KeyError, TypeError, ValueError):
                return {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
            result = handle_call(store, wesher, obj, method, args or {})
            with store.lock:
                store.calls.append({"object": obj, "method": method, "args": args, "result": result})
            return {"jsonrpc": "2.0", "id": msg.get("id"), "result": result}

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uci", required=True, help="JSON file: {config: {section: {'.type': T, option: value}}}")
    ap.add_argument("--wesher", required=True, help="command (prefix) that runs the real wesher")
    ap.add_argument("--port-file", required=True, help="where to write the port it listens on")
    ap.add_argument("--luci-root", help="a LuCI checkout's modules/luci-base/htdocs (see LUCI_ROOT)")
    a = ap.parse_args()
    global LUCI_ROOT
    LUCI_ROOT = os.path.realpath(a.luci_root) if a.luci_root else None
    with open(a.uci) as f:
        store = Store(json.load(f))
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(store, shlex.split(a.wesher)))
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(a.port_file + ".tmp", a.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())

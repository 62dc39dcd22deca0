#!/usr/bin/env python3
"""Drives headless Chromium over the DevTools protocol (--remote-debugging-pipe: NUL-separated
JSON on fds 3 and 4, no websocket needed) against fake_rpcd.py, and checks the wesher views.

  browser_test.py status   --url URL --stop-pid PID [--screenshot PNG]
  browser_test.py settings --url URL [--screenshot PNG]
  browser_test.py real     --url URL   (fake_rpcd.py started with --luci-root)

Prints `ok: <check>` per passed check; exits 1 with `FAILED: <why>` at the first failure.
"""
import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--remote-debugging-pipe"]


class Failed(Exception):
    pass


def check(cond, what, detail=""):
    if not cond:
        raise Failed(f"{what}{': ' + str(detail) if detail != '' else ''}")
    print(f"ok: {what}", flush=True)


class Browser:
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="wesher-chromium-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():
            # Chromium's pipe is fds 3 (commands in) and 4 (replies out); copy both ends out of
            # the way first so that neither dup2 overwrites the other.
            read_end, write_end = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen(
            ["chromium"] + CHROMIUM_FLAGS + [f"--user-data-dir={self.profile}", "about:blank"],
            close_fds=False, preexec_fn=fds,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 1
        self.errors = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Runtime.enable", session=True)
        self.call("Page.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": 1100, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=True)

    def call(self, method, params=None, session=False, timeout=60):
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        self.next_id += 1
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while time.time() < deadline:
            reply = self.read()
            if reply.get("method") == "Runtime.exceptionThrown":
                self.errors.append(reply["params"]["exceptionDetails"])
            elif reply.get("method") == "Runtime.consoleAPICalled" and reply["params"]["type"] == "error":
                self.errors.append([a.get("value", a.get("description")) for a in reply["params"]["args"]])
            if reply.get("id") == msg["id"]:
                if "error" in reply:
                    raise Failed(f"{method}: {reply['error']}")
                return reply["result"]
        raise Failed(f"no answer to {method} within {timeout} s")

    def read(self):
        while b"\0" not in self.buf:
            chunk = os.read(self.from_chrome, 1 << 16)
            if not chunk:
                raise Failed("chromium closed the devtools pipe")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\0", 1)
        return json.loads(line)

    def eval(self, expr):
        res = self.call("Runtime.evaluate", {"expression": expr, "awaitPromise": True,
                                             "returnByValue": True}, session=True)
        if "exceptionDetails" in res:
            raise Failed(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait(self, expr, what, timeout=60):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = self.eval(expr)
            if last:
                return last
            time.sleep(0.25)
        raise Failed(f"timed out after {timeout} s waiting for {what} (last: {last!r})")

    def goto(self, url):
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait("document.body && document.body.getAttribute('data-view-ready')", "the view to render")
        check(self.eval("document.body.getAttribute('data-view-ready')") == "1", "the view rendered",
              self.eval("document.getElementById('view').innerText"))

    def screenshot(self, path):
        height = self.eval("Math.min(1200, document.documentElement.scrollHeight)")
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {
            "x": 0, "y": 0, "width": 1100, "height": height, "scale": 1}}, session=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        print(f"screenshot: {path}", flush=True)

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except Failed:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def calls(url, obj=None, method=None):
    with urllib.request.urlopen(url.split("?")[0].rstrip("/") + "/_test/calls", timeout=10) as r:
        all_calls = json.load(r)
    return [c for c in all_calls if (obj is None or c["object"] == obj) and (method is None or c["method"] == method)]


# The page's formatting rules, written again here so that the test checks them.
def age_text(secs):
    if secs is None:
        return "never"
    parts, rest = [], secs
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if rest >= size or (size == 1 and not parts):
            parts.append(f"{rest // size}{unit}")
            rest %= size
        if len(parts) == 2:
            break
    return " ".join(parts) + " ago"


def bytes_text(n):
    units, i, v = ["B", "KiB", "MiB", "GiB", "TiB"], 0, float(n)
    while v >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return f"{v:.2f} {units[i]}" if i else f"{n} B"


SHOWN_ROWS = """Array.from(document.querySelectorAll('.wesher-mesh[data-section="%s"] tr.wesher-member')).map(r =>
    Array.from(r.cells).map(c => ({ text: c.innerText.trim(), title: c.getAttribute('title') })))"""


def status_replies(url, section):
    """Every status the fake rpcd returned for `section`, newest last."""
    out = []
    for c in calls(url, "luci.wesher", "status"):
        for m in c["result"][1]["meshes"]:
            if m["section"] == section and m["status"]:
                out.append(m["status"])
    return out


def matches(rows, status):
    """Whether the members table shows exactly `status`'s members, field by field."""
    members = sorted(status["members"], key=lambda m: m["name"])
    if len(rows) != len(members):
        return False
    for row, m in zip(rows, members):
        want = [m["name"], m["overlay"] or "-", m["underlay"] or "-", m["state"],
                age_text(m["handshake_age_secs"]), bytes_text(m["rx_bytes"]), bytes_text(m["tx_bytes"])]
        if [c["text"] for c in row] != want:
            return False
        hs = m["handshake_age_secs"]
        if row[4]["title"] != (None if hs is None else str(hs)):
            return False
        if row[5]["title"] != str(m["rx_bytes"]) or row[6]["title"] != str(m["tx_bytes"]):
            return False
    return True


def shown_matches_a_reply(b, url, section):
    """The table against the last replies: a poll may land between reading the page and the log."""
    rows = b.eval(SHOWN_ROWS % section)
    replies = status_replies(url, section)
    for status in reversed(replies[-3:]):
        if matches(rows, status):
            return rows, status
    return rows, None


def test_status(b, a):
    url = a.url + "/?view=wesher/status&poll=2"
    b.goto(url)
    rows, status = shown_matches_a_reply(b, url, "wesher")
    check(status is not None, "members table shows the agent's real status JSON, field by field",
          f"rows {rows}, replies {status_replies(url, 'wesher')[-2:]}")
    check(status["version"] == 1, "status JSON has version 1", status.get("version"))
    check([r[0]["text"] for r in rows] == ["node2", "node3"], "members are node2 and node3",
          [r[0]["text"] for r in rows])
    check(all(r[3]["text"] == "alive" for r in rows), "both members are alive")
    check(all(r[4]["title"] is not None and r[4]["text"].endswith(" ago") for r in rows),
          "handshakes are shown as ages", [r[4] for r in rows])
    check(all(int(r[5]["title"]) > 0 and int(r[6]["title"]) > 0 for r in rows),
          "rx and tx bytes are counted", [(r[5], r[6]) for r in rows])
    node = b.eval("""Array.from(document.querySelectorAll('.wesher-mesh[data-section="wesher"] table.wesher-node tr'))
        .map(r => r.cells[1].innerText.trim())""")
    check(node == [status["node"]["name"], status["node"]["overlay"], status["node"]["underlay"],
                   status["interface"]] and node[0] == "node1" and node[2] == "10.99.0.1:7946"
          and node[3] == "wgoverlay", "this node: name, overlay, underlay, interface", node)
    lab = b.eval("""(document.querySelector('.wesher-mesh[data-section="lab"] .alert-message') || {}).innerText""")
    check(lab and "wglab.sock" in lab and "is the agent running" in lab,
          "a mesh whose agent is not running shows the error inline", lab)
    old = b.eval("""(document.querySelector('.wesher-mesh[data-section="old"] .alert-message') || {}).innerText""")
    check(old and "disabled" in old, "a disabled mesh says so", old)
    if a.screenshot:
        b.screenshot(a.screenshot)

    # Refresh: pings run in the mesh, so new polls bring more bytes; the table follows.
    first_rx = {r[0]["text"]: int(r[5]["title"]) for r in rows}
    n_before = len(calls(url, "luci.wesher", "status"))
    deadline = time.time() + 60
    while True:
        rows, status = shown_matches_a_reply(b, url, "wesher")
        grown = status and all(int(r[5]["title"]) > first_rx[r[0]["text"]] for r in rows)
        if grown and len(calls(url, "luci.wesher", "status")) > n_before:
            break
        if time.time() > deadline:
            raise Failed(f"no refresh with more received bytes within 60 s: {rows}")
        time.sleep(0.5)
    check(True, "after polls the table shows the new counters of the latest replies")

    # A member leaves: its state changes on the page by itself.
    os.kill(a.stop_pid, signal.SIGTERM)
    deadline = time.time() + 90
    while True:
        rows, status = shown_matches_a_reply(b, url, "wesher")
        states = {r[0]["text"]: r[3]["text"] for r in rows}
        if status and states.get("node3") in ("left", "dead") and states.get("node2") == "alive":
            break
        if states and "node3" not in states and status:
            break
        if time.time() > deadline:
            raise Failed(f"node3 still shown as {states} 90 s after it was stopped")
        time.sleep(0.5)
    check(True, f"after node3 stopped, the page shows it as {states.get('node3', 'gone')}")


def test_settings(b, a):
    url = a.url + "/?view=wesher/settings"
    b.goto(url)
    field = "document.getElementById('widget.cbid.wesher.wesher.%s')"
    key = b.eval(f"{field % 'cluster_key'}.value")
    with urllib.request.urlopen(a.url + "/_test/config", timeout=10) as r:
        cfg = json.load(r)["wesher"]["wesher"]
    check(key == cfg["cluster_key"], "the cluster key field holds the UCI value", key)
    joins = b.eval(f"Array.from({field % 'join'}.querySelectorAll('input.cbi-input-text')).map(i => i.value)")
    check(joins == cfg["join"], "the join list holds the UCI list", joins)
    nets = b.eval(f"Array.from({field % 'routed_net'}.querySelectorAll('input.cbi-input-text')).map(i => i.value)")
    check(nets == cfg["routed_net"], "the routed networks hold the UCI list", nets)
    check(b.eval(f"{field % 'enabled'}.checked") is True, "enabled is checked")
    check(b.eval(f"{field % 'interface'}.value") == cfg["interface"], "the interface field holds the UCI value")

    def set_value(el, value):
        b.eval(f"(() => {{ const i = {el}; i.value = {json.dumps(value)}; i.dispatchEvent(new Event('input')); }})()")

    def invalid(el):
        return b.eval(f"(() => {{ const i = {el}; return i.classList.contains('cbi-input-invalid') ? i.getAttribute('data-tooltip') : null; }})()")

    def click(text):
        b.eval(f"""(() => {{ const btn = Array.from(document.querySelectorAll('button')).find(x => x.innerText.trim() == {json.dumps(text)});
            if (!btn) throw new Error('no button ' + {json.dumps(text)}); btn.click(); }})()""")

    def set_calls():
        return [c for c in calls(a.url, "uci") if c["method"] in ("set", "add", "delete", "apply", "confirm")]

    def save_is_refused(what):
        click("Save")
        b.wait("!!document.querySelector('#modal .save-error')", "the save error")
        check(set_calls() == [], f"nothing was saved with {what}", set_calls())
        b.eval("L.require('ui').then(ui => ui.hideModal())")

    agrees_with_the_agent(b, field, set_value, invalid)

    # A bad key: the agent's rules (44 characters of base64, 32 bytes) refuse it, so does the page.
    key_el = field % "cluster_key"
    set_value(key_el, "c2hvcnQ=")
    err = invalid(key_el)
    check(err == "decodes to 5 bytes, expected 32", "a 5-byte key is refused with the agent's reason", err)
    set_value(key_el, "not base64 at all!")
    check(invalid(key_el) == "not valid base64", "a non-base64 key is refused", invalid(key_el))
    save_is_refused("a bad key")
    set_value(key_el, cfg["cluster_key"])
    check(invalid(key_el) is None, "the stored key is accepted again")

    # A bad CIDR in the routed networks, then host bits set, then a good one.
    nets_el = field % "routed_net"
    b.eval(f"""(() => {{ const l = {nets_el}; const add = l.querySelector('.add-input'); add.value = '192.168.7.0/33';
        l.querySelector('.cbi-button-add').click(); }})()""")
    bad = f"Array.from({nets_el}.querySelectorAll('input.cbi-input-text')).pop()"
    check(invalid(bad) == "prefix length 33 is longer than the 32 bits of the address",
          "a /33 routed network is refused", invalid(bad))
    set_value(bad, "192.168.7.1/24")
    check(invalid(bad) == "host bits are set (did you mean 192.168.7.0/24?)", "host bits are refused", invalid(bad))
    save_is_refused("a bad CIDR")
    set_value(bad, "192.168.7.0/24")
    check(invalid(bad) is None, "192.168.7.0/24 is accepted")

    # A new key from the real `wesher key generate`, shown for copying, then Save & Apply.
    click("Generate")
    new_key = b.wait("(document.querySelector('#modal .wesher-key-copy') || {}).value", "the new key dialog")
    check(re.fullmatch(r"[A-Za-z0-9+/]{43}=", new_key) and new_key != cfg["cluster_key"],
          "Generate shows a new 32-byte key from wesher key generate", new_key)
    check(b.eval(f"{key_el}.value") == new_key and invalid(key_el) is None, "the key field now holds it")
    b.eval("L.require('ui').then(ui => ui.hideModal())")
    click("Show and copy")
    shown = b.wait("(document.querySelector('#modal .wesher-key-copy') || {}).value", "the copy dialog")
    check(shown == new_key, "Show and copy shows the current key", shown)
    b.eval("L.require('ui').then(ui => ui.hideModal())")
    if a.screenshot:
        b.eval("window.scrollTo(0, 0)")
        b.screenshot(a.screenshot)
    click("Save & Apply")
    b.wait("!!document.querySelector('#notifications .alert-message')", "the applied notice")
    sets = set_calls()
    # LuCI writes the changed options, and flags with rmempty off (enabled) whatever their value.
    want = {"enabled": "1", "cluster_key": new_key, "routed_net": cfg["routed_net"] + ["192.168.7.0/24"]}
    check([c["method"] for c in sets] == ["set", "set", "apply", "confirm"],
          "uci set per section, then apply and confirm", sets)
    # LuCI sends the sections' set calls in one batch: their order of arrival is not fixed.
    by_section = {c["args"]["section"]: c["args"] for c in sets if c["method"] == "set"}
    check(by_section.get("wesher") == {"config": "wesher", "section": "wesher", "values": want},
          "uci set carries the changed options", sets)
    check(by_section.get("old") == {"config": "wesher", "section": "old", "values": {"enabled": "0"}},
          "the other section's enabled flag is written as it was", sets)
    with urllib.request.urlopen(a.url + "/_test/config", timeout=10) as r:
        after = json.load(r)["wesher"]["wesher"]
    check(after["cluster_key"] == new_key and after["routed_net"] == want["routed_net"],
          "the applied config has the new values")


# validation-cases.json: (UCI option, value, refused?). tests/luci.rs checks the same cases
# against the agent's own parser (wesher::config); here the page must agree with each.
CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "validation-cases.json")


def agrees_with_the_agent(b, field, set_value, invalid):
    with open(CASES) as f:
        cases = json.load(f)
    for case in cases:
        option, value, refused = case["option"], case["value"], case["refused"]
        el = field % option
        if b.eval(f"{el}.classList.contains('cbi-dynlist')"):
            b.eval(f"""(() => {{ const l = {el}; const add = l.querySelector('.add-input');
                add.value = {json.dumps(value)}; l.querySelector('.cbi-button-add').click(); }})()""")
            item = f"Array.from({el}.querySelectorAll('input.cbi-input-text')).pop()"
            err = invalid(item)
            b.eval(f"{item}.parentNode.remove()")
        else:
            before = b.eval(f"{el}.value")
            set_value(el, value)
            err = invalid(el)
            set_value(el, before)
        if refused:
            check(err is not None, f"the page refuses {option} {value!r}: {err}")
        else:
            check(err is None, f"the page accepts {option} {value!r}", err)
    check(len(cases) >= 30, f"{len(cases)} validation cases")


def test_real_luci(b, a):
    """The views in the real LuCI client (fake_rpcd.py --luci-root): they render without script
    errors, validate, generate a key and save through uci and LuCI's apply/confirm."""
    b.call("Page.navigate", {"url": a.url + "/real?view=wesher/status"}, session=True)
    text = b.wait("(document.querySelector('#view .wesher-mesh') || {}).innerText",
                  "the status view in the real LuCI")
    check("wgoverlay" in text, "the real LuCI renders the status view", text)
    b.call("Page.navigate", {"url": a.url + "/real?view=wesher/settings"}, session=True)
    key_el = "document.getElementById('widget.cbid.wesher.wesher.cluster_key')"
    b.wait(f"!!{key_el} && !{key_el}.disabled", "the settings view in the real LuCI")
    b.eval(f"""(() => {{ const i = {key_el}; i.value = 'c2hvcnQ='; i.dispatchEvent(new Event('keyup'));
        i.dispatchEvent(new Event('blur')); }})()""")
    err = b.eval(f"{key_el}.classList.contains('cbi-input-invalid') && {key_el}.getAttribute('data-tooltip')")
    check(err == "decodes to 5 bytes, expected 32", "the real LuCI shows the key's error", err)
    b.eval("Array.from(document.querySelectorAll('button')).find(x => x.innerText.trim() == 'Generate').click()")
    key = b.wait("(document.querySelector('.modal .wesher-key-copy') || {}).value", "the new key")
    check(b.eval(f"{key_el}.value") == key, "Generate fills the key field in the real LuCI")
    b.eval("L.ui.hideModal(); document.querySelector('.cbi-page-actions .cbi-button-apply').click()")
    b.wait(f"""fetch('/_test/calls').then(r => r.json()).then(c => c.some(x => x.method == 'confirm'))""",
           "apply and confirm")
    sets = [c for c in calls(a.url, "uci") if c["method"] == "set"]
    check(any(c["args"]["section"] == "wesher" and c["args"]["values"].get("cluster_key") == key for c in sets),
          "Save & Apply in the real LuCI sends the new key with uci set", sets)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("page", choices=["status", "settings", "real"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--stop-pid", type=int)
    ap.add_argument("--screenshot")
    a = ap.parse_args()
    b = Browser()
    try:
        {"status": test_status, "settings": test_settings, "real": test_real_luci}[a.page](b, a)
        check(b.errors == [], "no script errors on the page", b.errors)
    except Failed as e:
        print(f"FAILED: {e}", flush=True)
        try:
            print("page text:\n" + str(b.eval("document.body.innerText")), flush=True)
        except Failed:
            pass
        return 1
    finally:
        b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

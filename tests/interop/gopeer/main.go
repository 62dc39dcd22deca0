// gopeer: a real hashicorp/memberlist node carrying wesher's gob node metadata, driven line by
// line on stdin and reporting every membership event as one JSON line on stdout. It is the
// independent peer the Rust interop tests talk to; memberlist's own log goes to stderr.
//
// Commands: "join ADDR:PORT", "meta OVERLAYIP PUBKEY", "leave", "members", and for key rotation
// "add-key KEY", "use-key KEY", "remove-key KEY" (KEY in base64).
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/gob"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// nodeMeta is wesher's metadata type; gob sends the type name and field names, so both must
// stay exactly as wesher spells them.
type nodeMeta struct {
	OverlayAddr netip.Addr
	PubKey      string
}

var out = struct {
	sync.Mutex
	enc *json.Encoder
}{enc: json.NewEncoder(os.Stdout)}

func emit(v map[string]interface{}) {
	out.Lock()
	defer out.Unlock()
	if err := out.enc.Encode(v); err != nil {
		log.Fatalf("gopeer: stdout: %v", err)
	}
}

// describe turns a node into the JSON fields of an event, decoding its gob metadata. Node.State
// is not reported: memberlist 0.2.2 keeps the real state in nodeState, so in events it is stale.
func describe(event string, n *memberlist.Node) map[string]interface{} {
	v := map[string]interface{}{
		"event":        event,
		"name":         n.Name,
		"addr":         n.Addr.String(),
		"port":         n.Port,
		"meta_overlay": "",
		"meta_pubkey":  "",
	}
	if len(n.Meta) > 0 {
		var m nodeMeta
		if err := gob.NewDecoder(bytes.NewReader(n.Meta)).Decode(&m); err != nil {
			v["meta_error"] = err.Error()
		} else {
			v["meta_overlay"] = m.OverlayAddr.String()
			v["meta_pubkey"] = m.PubKey
		}
	}
	return v
}

type events struct{}

func (events) NotifyJoin(n *memberlist.Node)   { emit(describe("join", n)) }
func (events) NotifyLeave(n *memberlist.Node)  { emit(describe("leave", n)) }
func (events) NotifyUpdate(n *memberlist.Node) { emit(describe("update", n)) }

// delegate serves our metadata; empty until set, as wesher's first alive carries none.
type delegate struct {
	sync.Mutex
	meta []byte
	// routed is sent as wesher-rs's RoutedNets field when not empty; set before memberlist runs.
	routed []string
}

func (d *delegate) NodeMeta(limit int) []byte {
	d.Lock()
	defer d.Unlock()
	if len(d.meta) > limit {
		log.Printf("gopeer: metadata of %d bytes exceeds limit %d", len(d.meta), limit)
		return nil
	}
	return append([]byte(nil), d.meta...)
}
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

func (d *delegate) set(overlay, pubkey string) error {
	addr, err := netip.ParseAddr(overlay)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if len(d.routed) == 0 {
		err = gob.NewEncoder(&buf).Encode(nodeMeta{OverlayAddr: addr, PubKey: pubkey})
	} else {
		// Another type, so that without routed networks the bytes stay Go wesher's; gob sends
		// the type's name, which must be nodeMeta too.
		type nodeMeta struct {
			OverlayAddr netip.Addr
			PubKey      string
			RoutedNets  []string
		}
		err = gob.NewEncoder(&buf).Encode(nodeMeta{OverlayAddr: addr, PubKey: pubkey, RoutedNets: d.routed})
	}
	if err != nil {
		return err
	}
	d.Lock()
	d.meta = buf.Bytes()
	d.Unlock()
	return nil
}

func keyCommand(keyring *memberlist.Keyring, command, b64 string) error {
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return err
	}
	switch command {
	case "add-key":
		return keyring.AddKey(key)
	case "use-key":
		return keyring.UseKey(key)
	default:
		return keyring.RemoveKey(key)
	}
}

func main() {
	name := flag.String("name", "gopeer", "node name")
	bind := flag.String("bind", "127.0.0.1", "bind address")
	port := flag.Int("port", 0, "bind port (0 picks a free one, printed in the ready line)")
	key := flag.String("key", "", "cluster key, base64 of 32 bytes (required)")
	overlay := flag.String("overlay", "", "initial metadata overlay address (empty: no metadata yet)")
	pubkey := flag.String("pubkey", "", "initial metadata public key")
	routed := flag.String("routed", "", "comma-separated routed networks, sent as wesher-rs's RoutedNets metadata field (taken as given: no checks)")
	profile := flag.String("profile", "wan", "timings: wan (memberlist.DefaultWANConfig, as wesher) or fast")
	probeInterval := flag.Duration("probe-interval", 0, "override ProbeInterval")
	probeTimeout := flag.Duration("probe-timeout", 0, "override ProbeTimeout")
	gossipInterval := flag.Duration("gossip-interval", 0, "override GossipInterval")
	pushPull := flag.Duration("push-pull-interval", 0, "override PushPullInterval")
	toTheDead := flag.Duration("gossip-to-the-dead", 0, "override GossipToTheDeadTime")
	tcpTimeout := flag.Duration("tcp-timeout", 0, "override TCPTimeout")
	suspicionMult := flag.Int("suspicion-mult", 0, "override SuspicionMult")
	flag.Parse()
	log.SetOutput(os.Stderr)

	secret, err := base64.StdEncoding.DecodeString(*key)
	if err != nil || len(secret) != 32 {
		log.Fatalf("gopeer: -key must be base64 of 32 bytes")
	}

	conf := memberlist.DefaultWANConfig()
	switch *profile {
	case "wan":
	case "fast":
		// Same protocol, short timers: failure detection in a few seconds on loopback.
		conf.ProbeInterval = 500 * time.Millisecond
		conf.ProbeTimeout = 300 * time.Millisecond
		conf.GossipInterval = 100 * time.Millisecond
		conf.PushPullInterval = 5 * time.Second
		conf.GossipToTheDeadTime = 5 * time.Second
		conf.TCPTimeout = 2 * time.Second
		conf.SuspicionMult = 2
	default:
		log.Fatalf("gopeer: unknown -profile %q", *profile)
	}
	for _, o := range []struct {
		flag *time.Duration
		conf *time.Duration
	}{
		{probeInterval, &conf.ProbeInterval},
		{probeTimeout, &conf.ProbeTimeout},
		{gossipInterval, &conf.GossipInterval},
		{pushPull, &conf.PushPullInterval},
		{toTheDead, &conf.GossipToTheDeadTime},
		{tcpTimeout, &conf.TCPTimeout},
	} {
		if *o.flag != 0 {
			*o.conf = *o.flag
		}
	}
	if *suspicionMult != 0 {
		conf.SuspicionMult = *suspicionMult
	}

	d := &delegate{}
	if *routed != "" {
		d.routed = strings.Split(*routed, ",")
	}
	if *overlay != "" {
		if err := d.set(*overlay, *pubkey); err != nil {
			log.Fatalf("gopeer: -overlay: %v", err)
		}
	}
	conf.Name = *name
	conf.BindAddr = *bind
	conf.BindPort = *port
	conf.SecretKey = secret
	conf.Delegate = d
	conf.Events = events{}
	conf.LogOutput = os.Stderr

	// Our own keyring, so that key commands can reach it; SecretKey becomes its primary.
	keyring, err := memberlist.NewKeyring(nil, secret)
	if err != nil {
		log.Fatalf("gopeer: keyring: %v", err)
	}
	conf.Keyring = keyring

	list, err := memberlist.Create(conf)
	if err != nil {
		log.Fatalf("gopeer: create: %v", err)
	}
	emit(map[string]interface{}{"event": "ready", "name": *name, "port": list.LocalNode().Port})

	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		if len(fields) == 0 {
			continue
		}
		switch {
		case fields[0] == "join" && len(fields) == 2:
			n, err := list.Join([]string{fields[1]})
			v := map[string]interface{}{"event": "join_result", "joined": n, "error": ""}
			if err != nil {
				v["error"] = err.Error()
			}
			emit(v)
		case fields[0] == "meta" && len(fields) == 3:
			v := map[string]interface{}{"event": "meta_result", "error": ""}
			if err := d.set(fields[1], fields[2]); err != nil {
				v["error"] = err.Error()
			} else if err := list.UpdateNode(10 * time.Second); err != nil {
				v["error"] = err.Error()
			}
			emit(v)
		case (fields[0] == "add-key" || fields[0] == "use-key" || fields[0] == "remove-key") && len(fields) == 2:
			v := map[string]interface{}{"event": "key_result", "error": ""}
			if err := keyCommand(keyring, fields[0], fields[1]); err != nil {
				v["error"] = err.Error()
			}
			emit(v)
		case fields[0] == "members" && len(fields) == 1:
			var members []map[string]interface{}
			for _, n := range list.Members() {
				members = append(members, describe("member", n))
			}
			emit(map[string]interface{}{"event": "members", "members": members})
		case fields[0] == "leave" && len(fields) == 1:
			if err := list.Leave(10 * time.Second); err != nil {
				log.Printf("gopeer: leave: %v", err)
			}
			if err := list.Shutdown(); err != nil {
				log.Printf("gopeer: shutdown: %v", err)
			}
			emit(map[string]interface{}{"event": "left"})
			return
		default:
			emit(map[string]interface{}{"event": "error", "error": fmt.Sprintf("unknown command %q", lines.Text())})
		}
	}
	// stdin closed: the test is gone. Stop without a leave, like a crash.
	os.Exit(0)
}

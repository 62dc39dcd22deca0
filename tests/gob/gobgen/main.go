// gobgen: Go's own encoding/gob on wesher's node metadata, for tests/gob_differential.rs.
// Standard library only; built with every Go toolchain the tests have.
//
//	gobgen emit N  encodes N other types first, then prints one JSON line per variant: the gob
//	               blob Go encoded and what Go decoded from it
//	gobgen decode  reads "HEX [Name:s|Name:a]..." lines (our encodings, with the extras they
//	               carry as []string or []netip.Addr) and prints one JSON line each: what Go decoded
//
// The variants cover what a Go wesher of any release may send, and what a future one might:
// nodeMeta with ids shifted by types the process encoded before (gob's ids are per process, so
// the caller runs emit with several N), fields in other orders, extra
// fields of every gob wire type, zero and empty values, the v0.2 (net.IPNet) and v0.3
// (netip.Addr) layouts.
package main

import (
	"bufio"
	"bytes"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"math/rand"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// The two wesher layouts, as Go wesher decodes them.
type nodeMeta struct {
	OverlayAddr netip.Addr
	PubKey      string
}

type nodeMetaV02 struct {
	OverlayAddr net.IPNet
	PubKey      string
}

type reordered struct {
	PubKey      string
	OverlayAddr netip.Addr
}

type inner struct {
	A int
	B string
	C []byte
	D *inner
}

// A type with a GobEncoder and one with a BinaryMarshaler. (Go's encoder never uses a
// TextMarshaler, golang.org/issue/6760, so no variant can have one.)
type gobOnly struct{ n int }

func (g gobOnly) GobEncode() ([]byte, error) { return []byte(fmt.Sprint(g.n)), nil }
func (g *gobOnly) GobDecode(b []byte) error  { _, err := fmt.Sscan(string(b), &g.n); return err }

type binOnly [3]byte

func (b binOnly) MarshalBinary() ([]byte, error)  { return b[:], nil }
func (b *binOnly) UnmarshalBinary(d []byte) error { copy(b[:], d); return nil }

type holder struct{ X interface{} }

// Extra fields of every wire type around the two wesher fields.
type every struct {
	Bool        bool
	Int         int
	Int8        int8
	Uint        uint64
	Float       float64
	Complex     complex128
	Str         string
	Bytes       []byte
	OverlayAddr netip.Addr
	Strings     []string
	Ints        []int
	Arr         [3]int
	ArrStr      [2]string
	Map         map[string]int
	MapBytes    map[int32][]byte
	Inner       inner
	InnerPtr    *inner
	Inners      []inner
	Prefix      netip.Prefix
	Time        time.Time
	Big         *big.Int
	Gob         gobOnly
	Bin         binOnly
	Iface       interface{}
	Nested      interface{}
	IfaceNil    interface{}
	Matrix      [][]string
	MapIface    map[string]interface{}
	PubKey      string
	RoutedNets  []string
	Candidates  []netip.Addr
	Caps        []string
}

var (
	addrs = []string{"10.59.73.60", "10.0.0.1", "192.168.255.254", "2001:db8:c575:7277:b806:e994:13dd:99a5",
		"::ffff:10.1.2.3", "fd00::1", "0.0.0.0", "fe80::1%eth0"}
	keys = []string{"PuJQWAkFkvjvaGUdTvw6nkU5GNK1EN0/SaA999MERjw=", "HHSHNqmqUNIIvRcegVl+oenoifXNrdnhMmxoJDFO0WU=",
		"Byv7NQMUr8dvN5dU3YS4LlYfIbcXdvSaxbrvETLrXmA=", "", "not a key", "PuJQWAkFkvjvaGUdTvw6nkU5GNK1EN0/SaA999MERjw"}
	strs = []string{"", "a", "192.168.1.0/24", "fd00::/64", "keeps-sessions", "ü→✓", "\xff\xfe", strings.Repeat("x", 130)}
)

func init() {
	gob.Register(inner{})
	gob.Register(holder{})
	gob.Register([]string{})
	gob.Register(map[string]int{})
	gob.Register(netip.Addr{})
}

type variant struct {
	name   string
	layout string // "v03" or "v02"
	value  interface{}
}

func pick[T any](r *rand.Rand, from []T) T { return from[r.Intn(len(from))] }

func randStrings(r *rand.Rand) []string {
	var out []string
	for i := r.Intn(4); i > 0; i-- {
		out = append(out, pick(r, strs))
	}
	return out
}

func randAddrs(r *rand.Rand) []netip.Addr {
	var out []netip.Addr
	for i := r.Intn(4); i > 0; i-- {
		out = append(out, netip.MustParseAddr(pick(r, addrs)))
	}
	return out
}

func randEvery(r *rand.Rand) every {
	var e every
	in := &inner{A: r.Intn(1000) - 500, B: pick(r, strs), C: []byte(pick(r, strs))}
	if r.Intn(2) == 0 {
		in.D = &inner{A: 7, D: &inner{B: "deep"}}
	}
	// Each field set or left zero (gob omits zero fields), so field deltas vary.
	set := func() bool { return r.Intn(3) > 0 }
	if set() {
		e.Bool = true
	}
	if set() {
		e.Int = r.Intn(1<<20) - 1<<19
	}
	if set() {
		e.Int8 = -128
	}
	if set() {
		e.Uint = r.Uint64()
	}
	if set() {
		e.Float = r.NormFloat64()
	}
	if set() {
		e.Complex = complex(r.Float64(), -1)
	}
	if set() {
		e.Str = pick(r, strs)
	}
	if set() {
		e.Bytes = []byte(pick(r, strs))
	}
	// Mostly usable wesher fields, so that most variants test the extras.
	e.OverlayAddr = netip.MustParseAddr(pick(r, addrs[:7]))
	if r.Intn(10) == 0 {
		e.OverlayAddr = netip.Addr{}
	}
	if set() {
		e.Strings = randStrings(r)
	}
	if set() {
		e.Ints = []int{1, -2, 3 << 40}
	}
	if set() {
		e.Arr = [3]int{1, 0, -1}
	}
	if set() {
		e.ArrStr = [2]string{"x", ""}
	}
	if set() {
		e.Map = map[string]int{"a": 1, "b": -2}
	}
	if set() {
		e.MapBytes = map[int32][]byte{-5: {1, 2}, 9: nil}
	}
	if set() {
		e.Inner = *in
	}
	if set() {
		e.InnerPtr = in
	}
	if set() {
		e.Inners = []inner{*in, {}, {B: "z"}}
	}
	if set() {
		e.Prefix = netip.MustParsePrefix("10.0.0.0/8")
	}
	if set() {
		e.Time = time.Unix(1700000000, 5).UTC()
	}
	if set() {
		e.Big = big.NewInt(-1 << 62)
	}
	if set() {
		e.Gob = gobOnly{42}
	}
	if set() {
		e.Bin = binOnly{1, 2, 3}
	}
	if set() {
		e.Iface = pick(r, []interface{}{3, "s", *in, []string{"p", "q"}, map[string]int{"m": 1}, netip.MustParseAddr("10.9.9.9")})
	}
	if set() {
		e.Nested = holder{X: pick(r, []interface{}{*in, holder{X: "two deep"}, 5})}
	}
	if set() {
		e.Matrix = [][]string{{"a"}, {}, {"b", "c"}}
	}
	if set() {
		e.MapIface = map[string]interface{}{"i": *in, "s": "t"}
	}
	e.PubKey = pick(r, keys[:3])
	if r.Intn(10) == 0 {
		e.PubKey = pick(r, keys[3:])
	}
	if set() {
		e.RoutedNets = randStrings(r)
	}
	if set() {
		e.Candidates = randAddrs(r)
	}
	if set() {
		e.Caps = randStrings(r)
	}
	return e
}

func variants() []variant {
	r := rand.New(rand.NewSource(1))
	var out []variant
	add := func(name, layout string, v interface{}) { out = append(out, variant{name, layout, v}) }
	for _, a := range addrs {
		for _, k := range keys[:4] {
			add("v03 "+a+" "+k, "v03", nodeMeta{netip.MustParseAddr(a), k})
		}
		add("reordered "+a, "v03", reordered{keys[1], netip.MustParseAddr(a)})
	}
	for _, k := range keys {
		add("v03 bad key "+k, "v03", nodeMeta{netip.MustParseAddr(addrs[0]), k})
	}
	add("v03 zero", "v03", nodeMeta{})
	add("v03 zero addr", "v03", nodeMeta{PubKey: keys[0]})
	for _, ip := range []net.IP{net.IPv4(10, 221, 153, 165), net.IPv4(10, 221, 153, 165).To4(),
		net.ParseIP(addrs[3]), nil, net.IP{1, 2, 3}} {
		for _, mask := range []net.IPMask{net.CIDRMask(32, 32), net.CIDRMask(128, 128), nil} {
			add(fmt.Sprintf("v02 %v %v", []byte(ip), []byte(mask)), "v02", nodeMetaV02{net.IPNet{IP: ip, Mask: mask}, keys[2]})
		}
	}
	add("v02 zero", "v02", nodeMetaV02{})
	add("every field zero", "v03", every{})
	for i := 0; i < 150; i++ {
		add(fmt.Sprintf("every #%d", i), "v03", randEvery(r))
	}
	return out
}

// target is the struct Go decodes a blob into: the layout's two fields and the variant's
// []string and []netip.Addr fields, the extras our decoder reports.
func target(layout string, t reflect.Type) reflect.Type {
	addr := reflect.TypeOf(netip.Addr{})
	if layout == "v02" {
		addr = reflect.TypeOf(net.IPNet{})
	}
	fields := []reflect.StructField{{Name: "OverlayAddr", Type: addr}, {Name: "PubKey", Type: reflect.TypeOf("")}}
	for i := 0; t != nil && i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Type == reflect.TypeOf([]string{}) || f.Type == reflect.TypeOf([]netip.Addr{}) {
			fields = append(fields, reflect.StructField{Name: f.Name, Type: f.Type})
		}
	}
	return reflect.StructOf(fields)
}

// decoded reports what Go decoded from blob: into Go wesher's own struct (its error decides
// whether a wesher node is usable) and into the target struct with the extras.
func decoded(blob []byte, layout string, t reflect.Type) map[string]interface{} {
	v := map[string]interface{}{"layout": layout, "error": "", "overlay": "", "pubkey": ""}
	var wesher interface{} = &nodeMeta{}
	if layout == "v02" {
		wesher = &nodeMetaV02{}
	}
	if err := gob.NewDecoder(bytes.NewReader(blob)).Decode(wesher); err != nil {
		v["error"] = err.Error()
		return v
	}
	got := reflect.New(target(layout, t))
	if err := gob.NewDecoder(bytes.NewReader(blob)).Decode(got.Interface()); err != nil {
		v["error"] = "with extras: " + err.Error()
		return v
	}
	s := got.Elem()
	if layout == "v02" {
		v["overlay"] = s.Field(0).Interface().(net.IPNet).IP.String()
	} else {
		v["overlay"] = s.Field(0).Interface().(netip.Addr).String()
	}
	v["pubkey"] = s.Field(1).String()
	extras := []map[string]interface{}{}
	for i := 2; i < s.NumField(); i++ {
		e := map[string]interface{}{"name": s.Type().Field(i).Name}
		var items []string
		switch x := s.Field(i).Interface().(type) {
		case []string:
			e["kind"] = "strings"
			for _, str := range x {
				items = append(items, hex.EncodeToString([]byte(str)))
			}
		case []netip.Addr:
			e["kind"] = "addrs"
			for _, a := range x {
				items = append(items, a.String())
			}
		}
		if len(items) > 0 {
			e["items"] = items
			extras = append(extras, e)
		}
	}
	v["extras"] = extras
	return v
}

// emit encodes shift other types first, so that this process numbers the variants' types from
// another id: past 127 the ids take two bytes, past 32767 three.
func emit(w *json.Encoder, shift int) {
	other := gob.NewEncoder(io.Discard)
	for n := 1; n <= shift; n++ {
		t := reflect.StructOf([]reflect.StructField{{Name: fmt.Sprint("F", n), Type: reflect.TypeOf(false)}})
		if err := other.Encode(reflect.New(t).Elem().Interface()); err != nil {
			panic(err)
		}
	}
	for _, vr := range variants() {
		var buf bytes.Buffer
		if err := gob.NewEncoder(&buf).Encode(vr.value); err != nil {
			panic(fmt.Sprintf("%s: %v", vr.name, err))
		}
		v := decoded(buf.Bytes(), vr.layout, reflect.TypeOf(vr.value))
		v["name"] = vr.name
		v["hex"] = hex.EncodeToString(buf.Bytes())
		if err := w.Encode(v); err != nil {
			panic(err)
		}
	}
}

func decode(w *json.Encoder) {
	lines := bufio.NewScanner(os.Stdin)
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		blob, err := hex.DecodeString(fields[0])
		if err != nil {
			panic(err)
		}
		var extra []reflect.StructField
		for _, f := range fields[1:] {
			name, kind, _ := strings.Cut(f, ":")
			t := reflect.TypeOf([]string{})
			if kind == "a" {
				t = reflect.TypeOf([]netip.Addr{})
			}
			extra = append(extra, reflect.StructField{Name: name, Type: t})
		}
		if err := w.Encode(decoded(blob, "v03", reflect.StructOf(extra))); err != nil {
			panic(err)
		}
	}
	if err := lines.Err(); err != nil {
		panic(err)
	}
}

func main() {
	w := json.NewEncoder(os.Stdout)
	switch {
	case len(os.Args) == 3 && os.Args[1] == "emit":
		shift, err := strconv.Atoi(os.Args[2])
		if err != nil {
			panic(err)
		}
		emit(w, shift)
	case len(os.Args) == 2 && os.Args[1] == "decode":
		decode(w)
	default:
		fmt.Fprintln(os.Stderr, "usage: gobgen emit SHIFT | gobgen decode")
		os.Exit(2)
	}
}

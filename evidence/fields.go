package evidence

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
)

// Field is one key an evidence line can carry. The table below is the one
// definition of a line's keys: the Writer writes them by these names, the
// report reads them back by them, and tests check lines against it
// (CheckLine), so a key cannot be spelled one way here and another there.
//
// Adding a field: one constant below NumFields, one row in fieldTable.
type Field uint8

// The fields, in the order the writer writes them. FieldNone is no field:
// an unknown key, or "no length companion" in FieldSpec.Len.
const (
	FieldNone Field = iota
	FieldTime
	FieldEvent
	FieldHost
	FieldNetwork
	FieldPort
	FieldSubscriber
	FieldNATInside
	FieldSubscriberCandidates
	FieldSignature
	FieldFamily
	FieldEvidence
	FieldProof
	FieldCount
	FieldLast
	FieldNames
	FieldSensor
	FieldSerial
	FieldQName
	FieldQNameLen
	FieldQType
	FieldTransport
	FieldRule
	FieldResolver
	FieldResolverLen
	FieldFile
	FieldFileLen
	FieldMode
	FieldModeLen
	FieldOp
	FieldServer
	FieldIntercepted
	FieldRole
	FieldPeer
	FieldPassed
	FieldProto
	FieldDstPort
	FieldPCAP
	FieldPacket
	FieldLevel

	NumFields // the number of fields, FieldNone included: arrays indexed by Field
)

// JSONKind is the JSON type a field's value has.
type JSONKind uint8

const (
	JSONString JSONKind = iota + 1
	JSONNumber          // a non-negative integer
	JSONBool
)

func (k JSONKind) String() string {
	switch k {
	case JSONString:
		return "string"
	case JSONNumber:
		return "number"
	case JSONBool:
		return "bool"
	}
	return "none"
}

// FieldSpec describes one field.
type FieldSpec struct {
	Name string
	Kind JSONKind
	// Len is the field holding this value's length in bytes as received,
	// written only when the value was cut to MaxStringLen; FieldNone when
	// the value is never cut.
	Len Field
	// Text marks strings someone outside chose (a client, a capture, a
	// signature file): the writer escapes them (see Escape) and cuts them
	// to MaxStringLen.
	Text bool
}

var fieldTable = [NumFields]FieldSpec{
	FieldTime:                 {Name: "time", Kind: JSONString},                   // the first sighting, TimeFormat
	FieldEvent:                {Name: "event", Kind: JSONString},                  // a Kind, or a service line's event
	FieldHost:                 {Name: "host", Kind: JSONString},                   // the host to notify; absent on network lines
	FieldNetwork:              {Name: "network", Kind: JSONString},                // network lines: the /24 or /48 folded, in place of host
	FieldPort:                 {Name: "port", Kind: JSONNumber},                   // the host's source port
	FieldSubscriber:           {Name: "subscriber", Kind: JSONString, Text: true}, // who the host, port and time name (RADIUS, NAT logs, --subscribers)
	FieldNATInside:            {Name: "nat_inside", Kind: JSONString},             // the inside address[:port] NAT resolved host:port to
	FieldSubscriberCandidates: {Name: "subscriber_candidates", Kind: JSONNumber},  // several matched: how many; no subscriber then
	FieldSignature:            {Name: "signature", Kind: JSONString, Text: true},
	FieldFamily:               {Name: "family", Kind: JSONString, Text: true},
	FieldEvidence:             {Name: "evidence", Kind: JSONString}, // strong or weak
	FieldProof:                {Name: "proof", Kind: JSONString},    // a Proof's name
	FieldCount:                {Name: "count", Kind: JSONNumber},    // sightings folded into the line
	FieldLast:                 {Name: "last", Kind: JSONString},     // the last folded sighting, when after time
	FieldNames:                {Name: "names", Kind: JSONNumber},    // summary lines: distinct names among the sightings folded
	FieldSensor:               {Name: "sensor", Kind: JSONString, Text: true},
	FieldSerial:               {Name: "serial", Kind: JSONNumber}, // the signature set's serial
	FieldQName:                {Name: "qname", Kind: JSONString, Text: true, Len: FieldQNameLen},
	FieldQNameLen:             {Name: "qname_len", Kind: JSONNumber},
	FieldQType:                {Name: "qtype", Kind: JSONString, Text: true},
	FieldTransport:            {Name: "transport", Kind: JSONString, Text: true},
	FieldRule:                 {Name: "rule", Kind: JSONString, Text: true},
	FieldResolver:             {Name: "resolver", Kind: JSONString, Text: true, Len: FieldResolverLen},
	FieldResolverLen:          {Name: "resolver_len", Kind: JSONNumber},
	FieldFile:                 {Name: "file", Kind: JSONString, Text: true, Len: FieldFileLen},
	FieldFileLen:              {Name: "file_len", Kind: JSONNumber},
	FieldMode:                 {Name: "mode", Kind: JSONString, Text: true, Len: FieldModeLen},
	FieldModeLen:              {Name: "mode_len", Kind: JSONNumber},
	FieldOp:                   {Name: "op", Kind: JSONString, Text: true},
	FieldServer:               {Name: "server", Kind: JSONString}, // address:port
	FieldIntercepted:          {Name: "intercepted", Kind: JSONBool},
	FieldRole:                 {Name: "role", Kind: JSONString, Text: true},
	FieldPeer:                 {Name: "peer", Kind: JSONString},
	FieldPassed:               {Name: "passed", Kind: JSONBool},
	FieldProto:                {Name: "proto", Kind: JSONString, Text: true},
	FieldDstPort:              {Name: "dst_port", Kind: JSONNumber},
	FieldPCAP:                 {Name: "pcap", Kind: JSONString, Text: true},
	FieldPacket:               {Name: "packet", Kind: JSONNumber},
	FieldLevel:                {Name: "level", Kind: JSONString}, // service lines only: what marks them
}

// fieldByName is the table inverted, built from it once.
var fieldByName = func() map[string]Field {
	m := make(map[string]Field, NumFields)
	for f := FieldNone + 1; f < NumFields; f++ {
		m[fieldTable[f].Name] = f
	}
	return m
}()

// Spec returns the field's row of the table.
func (f Field) Spec() FieldSpec {
	if f < NumFields {
		return fieldTable[f]
	}
	return FieldSpec{}
}

// Name is the field's key in a line.
func (f Field) Name() string {
	if f < NumFields {
		return fieldTable[f].Name
	}
	return ""
}

func (f Field) String() string { return f.Name() }

// FieldByName returns the field with key name, or FieldNone. It costs no
// allocation when name is converted from a byte slice at the call.
func FieldByName(name string) Field { return fieldByName[name] }

// Fields returns every field in table order.
func Fields() []Field {
	out := make([]Field, 0, NumFields-1)
	for f := FieldNone + 1; f < NumFields; f++ {
		out = append(out, f)
	}
	return out
}

// CheckLine checks one evidence line, decoded by encoding/json into a map
// (numbers as float64 or json.Number), against the table: every key is a
// field and every value of the field's JSON kind. Service lines (no host
// and no network) carry keys of their own and are not checked.
func CheckLine(m map[string]any) error {
	_, host := m[FieldHost.Name()]
	_, network := m[FieldNetwork.Name()]
	if !host && !network {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := FieldByName(k)
		if f == FieldNone || f == FieldLevel {
			return fmt.Errorf("evidence: key %q is not an evidence field", k)
		}
		if got := kindOf(m[k]); got != f.Spec().Kind {
			return fmt.Errorf("evidence: %s is a %s, want a %s", k, got, f.Spec().Kind)
		}
	}
	return nil
}

func kindOf(v any) JSONKind {
	switch v := v.(type) {
	case string:
		return JSONString
	case bool:
		return JSONBool
	case float64:
		if v >= 0 && v == float64(uint64(v)) {
			return JSONNumber
		}
	case json.Number:
		if _, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return JSONNumber
		}
	}
	return 0
}

// Package storepb is the wire protocol between the slipstream host and a
// store plugin process: the generated gRPC service and messages
// (store.proto), and what both ends share about them: the go-plugin
// handshake, the protocol version, message limits, capability names and the
// packed encoding of a batch's mutations. The plugin side is package sdk,
// the host side internal/pluginhost; nothing else imports this package.
package storepb

import (
	"fmt"

	"github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the version of this protocol, negotiated in the
// go-plugin handshake through its versioned plugin sets. A change an older
// peer cannot read adds a version: the host then offers both, and a plugin
// serves the newest it has.
const ProtocolVersion = 2

// Handshake guards against running a plugin binary by hand and against a
// host and a plugin that are not slipstream's.
var Handshake = plugin.HandshakeConfig{
	MagicCookieKey:   "SLIPSTREAM_STORE_PLUGIN",
	MagicCookieValue: "d8f4c1e2-fold-store",
}

// PluginName is the key the store is dispensed under.
const PluginName = "store"

// MaxMessageBytes bounds one gRPC message in either direction: room for the
// largest NATS payload (64 MiB) plus its key and framing.
const MaxMessageBytes = 80 << 20

// ApplyChunkBytes is the payload size above which a batch is sent as several
// messages (ApplyStream, ApplyPipe) instead of one.
const ApplyChunkBytes = 4 << 20

// Capability names in InfoResponse.capabilities, one per optional interface
// of sdk's Store.
const (
	CapCompact  = "compact"   // sdk.Compacter
	CapBulkLoad = "bulk-load" // sdk.Loader
	CapSnapshot = "snapshot"  // sdk.Snapshotter
)

// ProfileEnv names an environment variable that, set to a path in the
// host's environment, makes every plugin write a CPU profile of itself to
// PATH.PID until it exits (go tool pprof reads it).
const ProfileEnv = "SLIPSTREAM_PLUGIN_CPUPROFILE"

// Pack lays n mutations out as one Packed: five allocations for the whole
// run instead of one message per mutation, on this side and on the other.
// at returns mutation i; op is OP_PUT or OP_DELETE.
func Pack(n int, at func(i int) (op Op, key, value []byte, revision uint64)) *Packed {
	size := 0
	for i := range n {
		_, k, v, _ := at(i)
		size += len(k) + len(v)
	}
	p := &Packed{
		Ops:          make([]byte, n),
		KeyLengths:   make([]uint32, n),
		ValueLengths: make([]uint32, n),
		Revisions:    make([]uint64, n),
		Data:         make([]byte, 0, size),
	}
	for i := range n {
		op, k, v, rev := at(i)
		p.Ops[i] = byte(op)
		p.KeyLengths[i], p.ValueLengths[i], p.Revisions[i] = uint32(len(k)), uint32(len(v)), rev
		p.Data = append(append(p.Data, k...), v...)
	}
	return p
}

// Check reports whether p is well formed: four counts that agree, lengths
// that add up to exactly the data, and ops that are puts or deletes. It
// returns the number of mutations.
func (p *Packed) Check() (int, error) {
	n := len(p.GetOps())
	if len(p.GetKeyLengths()) != n || len(p.GetValueLengths()) != n || len(p.GetRevisions()) != n {
		return 0, fmt.Errorf("packed mutations: %d ops, %d key lengths, %d value lengths, %d revisions",
			n, len(p.GetKeyLengths()), len(p.GetValueLengths()), len(p.GetRevisions()))
	}
	for i := range n {
		if op := Op(p.Ops[i]); op != Op_OP_PUT && op != Op_OP_DELETE {
			return 0, fmt.Errorf("packed mutations: mutation %d has op %d", i, p.Ops[i])
		}
	}
	if err := checkData(p.KeyLengths, p.ValueLengths, p.GetData()); err != nil {
		return 0, fmt.Errorf("packed mutations: %w", err)
	}
	return n, nil
}

// checkData reports whether keys[i] and values[i] bytes, for every i, add
// up to exactly the bytes of data (the two have one length).
func checkData(keys, values []uint32, data []byte) error {
	total := uint64(0)
	for i := range keys {
		total += uint64(keys[i]) + uint64(values[i])
	}
	if total != uint64(len(data)) {
		return fmt.Errorf("lengths add up to %d bytes, data holds %d", total, len(data))
	}
	return nil
}

// Each calls fn for every mutation of a p that Check accepted, in order.
// Keys and values are slices of p.Data, capped at their length (full slice
// expressions) so that appending to one cannot write over the next.
func (p *Packed) Each(fn func(op Op, key, value []byte, revision uint64)) {
	data := p.GetData()
	for i := range p.GetOps() {
		k, v := int(p.KeyLengths[i]), int(p.ValueLengths[i])
		fn(Op(p.Ops[i]), data[:k:k], data[k:k+v:k+v], p.Revisions[i])
		data = data[k+v:]
	}
}

// Add appends an entry to p, copying key and value into its data.
func (p *PackedEntries) Add(key, value []byte, revision uint64) {
	p.KeyLengths = append(p.KeyLengths, uint32(len(key)))
	p.ValueLengths = append(p.ValueLengths, uint32(len(value)))
	p.Revisions = append(p.Revisions, revision)
	p.Data = append(append(p.Data, key...), value...)
}

// Len is the number of entries in p.
func (p *PackedEntries) Len() int { return len(p.GetRevisions()) }

// Check reports whether p is well formed: three counts that agree and
// lengths that add up to exactly the data. It returns the number of entries.
func (p *PackedEntries) Check() (int, error) {
	n := len(p.GetRevisions())
	if len(p.GetKeyLengths()) != n || len(p.GetValueLengths()) != n {
		return 0, fmt.Errorf("packed entries: %d key lengths, %d value lengths, %d revisions",
			len(p.GetKeyLengths()), len(p.GetValueLengths()), n)
	}
	if err := checkData(p.KeyLengths, p.ValueLengths, p.GetData()); err != nil {
		return 0, fmt.Errorf("packed entries: %w", err)
	}
	return n, nil
}

// Each calls fn for every entry of a p that Check accepted, in order, and
// stops at the first error fn returns. Keys and values are slices of
// p.Data, capped at their length.
func (p *PackedEntries) Each(fn func(key, value []byte, revision uint64) error) error {
	data := p.GetData()
	for i := range p.GetRevisions() {
		k, v := int(p.KeyLengths[i]), int(p.ValueLengths[i])
		if err := fn(data[:k:k], data[k:k+v:k+v], p.Revisions[i]); err != nil {
			return err
		}
		data = data[k+v:]
	}
	return nil
}

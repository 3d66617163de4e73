package dnsblock

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// cache holds forwarded answers as wire bytes, so a hit is a copy and a few
// patches (ID, question case, TTLs) with no allocation. It is sharded to
// keep lock contention off the hot path and bounded both in entries and in
// bytes (a hostile zone's answers can be 64 KB each) by evicting an expired
// entry when it can, an arbitrary one otherwise.
type cache struct {
	shards   []cacheShard
	perShard int
	perBytes int // byte budget of one shard
	seed     maphash.Seed
	base     time.Time // monotonic origin of the entries' times
	maxTTL   uint32
	maxNeg   uint32
}

type cacheShard struct {
	mu    sync.RWMutex
	m     map[string]*cacheEntry
	bytes int
	_     [32]byte // keep shards on their own cache lines
}

// cacheEntry is immutable once stored, but for unlisted. Its key, answer
// and TTL table are one allocation, and the entry fits one 64-byte line: in
// the server a hit finds them out of the CPU caches (the kernel's receive
// and send path run in between), and each separate piece was one more load
// from memory (BenchmarkCacheHitMany, docs/performance.md).
type cacheEntry struct {
	// unlisted is the generation (setGenerations) of the signature set
	// that last found the question name unlisted; 0: none yet. The name
	// decides the match, and the name is in the key: while that set is in
	// service, a hit needs no lookup in the signature table.
	unlisted atomic.Uint64
	stored   int64 // nanoseconds since cache.base
	expires  int64
	// buf is the key (the shard's map key points into it), then the
	// answer with ID zero, then per TTL in it the offset and the value,
	// capped, as two 32-bit numbers (ttlRecord bytes).
	buf     []byte
	wireEnd int32 // the answer is buf[keyLen:wireEnd]
	cost    int32 // bytes counted against the budget
	keyLen  uint16
	check   bool // the answer names more than the question: policy must look at it on every hit
}

// ttlRecord is the size of one TTL's offset and value in cacheEntry.buf.
const ttlRecord = 8

// wire is the cached answer, ID zero.
func (e *cacheEntry) wire() []byte { return e.buf[e.keyLen:e.wireEnd] }

// Cache key flags: answers differ by these bits of the query.
const (
	keyDO = 1 << iota
	keyCD
	keyRD
	keyEDNS
	keyAD // RFC 6840 §5.7: AD in the answer depends on AD in the query
	// keyWire: the name in the key is the lower-case wire form, not the
	// dotted text (a label holds a '.', so the text is ambiguous).
	keyWire
)

// entryOverhead approximates what an entry costs beyond its answer, key
// and TTL tables: the entry struct, slice headers and the map slot.
const entryOverhead = 160

func newCache(size, bytes int, maxTTL, maxNeg time.Duration) *cache {
	if size <= 0 || bytes <= 0 {
		return nil
	}
	n := 64
	// Fewer shards for a small cache: each must hold a few entries, and a
	// few of the largest (64 KB) answers.
	for n > 1 && (size/n < 64 || bytes/n < 256<<10) {
		n /= 2
	}
	c := &cache{
		shards:   make([]cacheShard, n),
		perShard: (size + n - 1) / n,
		perBytes: bytes / n,
		seed:     maphash.MakeSeed(),
		base:     time.Now(),
		maxTTL:   uint32(maxTTL / time.Second),
		maxNeg:   uint32(maxNeg / time.Second),
	}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*cacheEntry)
	}
	return c
}

func (c *cache) now() int64 { return int64(time.Since(c.base)) }

// appendKey builds the cache key of q: the lower-case question name, type,
// class and the flag bits answers depend on. The name is parseQuery's
// lower-case dotted text, one copy, unless a label holds a '.'; then the
// key has the wire form, lowered byte by byte, and says so in its flags.
func appendKey(dst []byte, q *query) []byte {
	var f byte
	if q.cut < 0 {
		dst = append(dst, q.text...)
	} else {
		for _, b := range q.qname {
			dst = append(dst, lower(b))
		}
		f |= keyWire
	}
	dst = binary.BigEndian.AppendUint16(dst, q.qtype)
	dst = binary.BigEndian.AppendUint16(dst, q.qclass)
	if q.do {
		f |= keyDO
	}
	if q.flags&flagCD != 0 {
		f |= keyCD
	}
	if q.flags&flagRD != 0 {
		f |= keyRD
	}
	if q.edns {
		f |= keyEDNS
	}
	if q.flags&flagAD != 0 {
		f |= keyAD
	}
	return append(dst, f)
}

func (c *cache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)&uint64(len(c.shards)-1)]
}

// get returns the live entry for key.
func (c *cache) get(key []byte, now int64) *cacheEntry {
	s := c.shard(key)
	s.mu.RLock()
	e := s.m[bstr(key)]
	s.mu.RUnlock()
	if e == nil || now >= e.expires {
		return nil
	}
	return e
}

// put stores a copy of resp, which info describes, for info.ttl seconds
// (capped).
func (c *cache) put(key []byte, resp []byte, info *respInfo, now int64) {
	ttl := info.ttl
	limit := c.maxTTL
	if info.negative {
		limit = c.maxNeg // NXDOMAIN and NODATA alike (RFC 2308 §5)
	}
	ttl = min(ttl, limit)
	// The allocator rounds a large answer up to whole pages: count that.
	size := len(key) + len(resp) + ttlRecord*len(info.ttlOffs)
	cost := roundAlloc(size) + entryOverhead
	if ttl == 0 || cost > c.perBytes {
		return
	}
	buf := make([]byte, 0, size)
	buf = append(buf, key...)
	buf = append(buf, resp...)
	buf[len(key)], buf[len(key)+1] = 0, 0
	for _, off := range info.ttlOffs {
		t := binary.BigEndian.Uint32(resp[off:])
		if t > 1<<31-1 {
			t = 0
		}
		buf = binary.LittleEndian.AppendUint32(buf, uint32(off))
		buf = binary.LittleEndian.AppendUint32(buf, min(t, limit)) // no record outlives the cap its entry has
	}
	e := &cacheEntry{
		buf:     buf,
		wireEnd: int32(len(key) + len(resp)),
		keyLen:  uint16(len(key)),
		stored:  now,
		expires: now + int64(ttl)*int64(time.Second),
		cost:    int32(cost),
		check:   info.check,
	}
	k := bstr(buf[:len(key)])
	s := c.shard(key)
	s.mu.Lock()
	if old, ok := s.m[k]; ok {
		delete(s.m, k)
		s.bytes -= int(old.cost)
	}
	for len(s.m) > 0 && (len(s.m) >= c.perShard || s.bytes+cost > c.perBytes) {
		c.evict(s, now)
	}
	s.m[k] = e
	s.bytes += cost
	s.mu.Unlock()
}

// evict drops one entry from a full shard: an expired one among the first
// few the map offers, else the first (map order is random).
func (c *cache) evict(s *cacheShard, now int64) {
	var victim string
	n := 0
	for k, e := range s.m {
		if n == 0 {
			victim = k
		}
		if now >= e.expires {
			victim = k
			break
		}
		if n++; n >= 8 {
			break
		}
	}
	s.bytes -= int(s.m[victim].cost)
	delete(s.m, victim)
}

// roundAlloc approximates the bytes the Go allocator takes for n: small
// objects fit size classes within 1/8, large ones take 8 KiB pages.
func roundAlloc(n int) int {
	if n > 32<<10 {
		return (n + 8<<10 - 1) &^ (8<<10 - 1)
	}
	return n + n/8
}

// size counts the bytes held against the budget.
func (c *cache) size() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += s.bytes
		s.mu.RUnlock()
	}
	return n
}

// len counts the entries (for tests and stats).
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// appendHit writes the cached answer for q: its ID, the client's spelling of
// the question, and every TTL lowered by the entry's age.
func (e *cacheEntry) appendHit(dst []byte, q *query, now int64) []byte {
	dst = append(dst[:0], e.buf[e.keyLen:e.wireEnd]...)
	binary.BigEndian.PutUint16(dst, q.id)
	copy(dst[headerLen:], q.qname)
	// A batch's clock (scratch.now) may be read just before a forward
	// stored the entry: an age below zero is zero.
	age := uint32(max(now-e.stored, 0) / int64(time.Second))
	for tab := e.buf[e.wireEnd:]; len(tab) >= ttlRecord; tab = tab[ttlRecord:] {
		off := binary.LittleEndian.Uint32(tab)
		t := binary.LittleEndian.Uint32(tab[4:])
		if t > age {
			t -= age
		} else {
			t = 0
		}
		binary.BigEndian.PutUint32(dst[off:], t)
	}
	return dst
}

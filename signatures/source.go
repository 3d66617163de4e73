package signatures

// Source yields the signature set in service: what every matcher consumes
// (the DNS shim, the TFTP sinkhole and interceptor, the packet matcher, the
// dnstap input, the RPZ primary). Current is called once per query or
// packet, so a reload is seen by the next one and never half-way through
// one. *Store is the Source serve uses.
type Source interface {
	Current() *Set
}

package signatures

import (
	"iter"
	"net/netip"
)

// RPZPolicy is what one response policy record says about its owner.
type RPZPolicy uint8

const (
	// RPZNXDomain is "CNAME .": the name does not exist.
	RPZNXDomain RPZPolicy = iota
	// RPZNoData is "CNAME *.": the name exists with no records.
	RPZNoData
	// RPZLocalData is an A or AAAA record with a sinkhole address.
	RPZLocalData
)

// RPZRecord is one record of the response policy zone. Owner is relative
// to the zone ("name" or "*.name"), so the file export and the live primary
// can put it under whatever origin they serve.
type RPZRecord struct {
	Owner     string
	Policy    RPZPolicy
	Addr      netip.Addr // RPZLocalData: the sinkhole address (IPv4 means A, IPv6 AAAA)
	Signature *Signature // the signature the record comes from
}

// RPZRecords yields the policy records of the set, signature by signature in
// file order. It is the one place that decides what the zone holds: the
// file export and the live primary both read it, so a resolver gets the
// same policy whichever way it takes the zone. Records are produced one at
// a time, so a million-name zone is never held in memory twice.
func RPZRecords(s *Set, sinkhole []netip.Addr) iter.Seq[RPZRecord] {
	return func(yield func(RPZRecord) bool) {
		for si := range s.file.Signatures {
			sig := &s.file.Signatures[si]
			for _, d := range sig.Domains {
				r := RPZRecord{Owner: d.Pattern(), Signature: sig}
				switch {
				case d.Action == NXDomain:
					r.Policy = RPZNXDomain
				case d.Action == NoData || len(sinkhole) == 0:
					r.Policy = RPZNoData
				default:
					// A name with only A local data answers NODATA for
					// AAAA, as the shim does.
					r.Policy = RPZLocalData
					for _, ip := range sinkhole {
						r.Addr = ip.Unmap()
						if !yield(r) {
							return
						}
					}
					continue
				}
				if !yield(r) {
					return
				}
			}
		}
	}
}

// The SOA and NS of the policy zone. The NS is a placeholder RPZ requires
// and resolvers never query; refresh and retry bound how late a secondary
// that missed a NOTIFY learns of a new serial.
const (
	RPZTTL     = 60
	RPZNS      = "localhost."
	RPZMbox    = "hostmaster.localhost."
	RPZRefresh = 3600
	RPZRetry   = 600
	RPZExpire  = 86400
	RPZMinTTL  = 60
)

// RPZSerial is the SOA serial of the set's zone. SOA serials are 32 bits; a
// longer file serial is taken modulo 2^32.
func RPZSerial(s *Set) uint32 { return uint32(s.Serial()) }

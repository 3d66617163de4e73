package feed

import (
	"time"

	"wormsink/signatures"
)

// Release is a signature file the feed took: verified, and parsed.
type Release struct {
	Comment Comment
	KeyID   uint64
	Set     *signatures.Set
}

// Open checks a fetched signature file and its .minisig, in an order that
// never hands unverified bytes to the YAML parser: the size, the signature
// by a trusted key, the trusted comment's form, its name and expiry, then
// the file itself and its agreement with the comment. name is the file's
// name on the mirror; now decides expiry. The serial floor (rollback) is
// the caller's, who knows what is in service.
func Open(keys []PublicKey, name string, data, sig []byte, now time.Time, maxSize int64) (*Release, error) {
	if maxSize > 0 && int64(len(data)) > maxSize {
		return nil, refuse(Oversize, "%s: %d bytes, over the limit of %d", name, len(data), maxSize)
	}
	v, err := Verify(keys, data, sig)
	if err != nil {
		return nil, refuse(Signature, "%s: %v", name, err)
	}
	c, err := ParseComment(v.TrustedComment)
	if err != nil {
		return nil, refuse(Signature, "%s: %w: %v", name, ErrSignature, err)
	}
	if c.File != name {
		return nil, refuse(Signature, "%s: %w: the trusted comment names file %q", name, ErrSignature, c.File)
	}
	if !now.Before(c.Expires) {
		return nil, refuse(Freeze, "%s: serial %d expired at %s (a frozen or replayed feed)", name, c.Serial, c.Expires.Format(time.RFC3339))
	}
	set, err := signatures.Parse(name, data)
	if err != nil {
		return nil, refuse(Parse, "%v", err)
	}
	if set.Serial() != c.Serial {
		return nil, refuse(Signature, "%s: %w: the trusted comment says serial %d, the file %d", name, ErrSignature, c.Serial, set.Serial())
	}
	// A file may leave its expiry to the signature; one it states must be
	// the signed one.
	if !set.Expires().IsZero() && !set.Expires().Equal(c.Expires) {
		return nil, refuse(Signature, "%s: %w: the trusted comment says expires %s, the file %s", name, ErrSignature,
			c.Expires.Format(time.RFC3339), set.Expires().Format(time.RFC3339))
	}
	return &Release{Comment: c, KeyID: v.KeyID, Set: set}, nil
}

package sandbox

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"

	"github.com/klavi-billing/billingd/klavi"
)

// ValidID reports whether id can be a consent, payment or application id: the
// client's own rule, klavi.CheckID (1..256 printable characters, no '/' and no white
// space). Ids are opaque: Klavi's schema gives a URN pattern while its examples are
// UUIDs, so the sandbox takes either, and anything else of that shape.
func ValidID(id string) bool { return klavi.CheckID(id) == nil }

// Id kinds, which keep the counters' id spaces apart.
const (
	idConsent = "consent"
	idPayment = "payment"
	idInstant = "instant"
)

// newID is the id of the nth thing of kind: a version 4 UUID derived from
// (Seed, kind, n), or with IDsURN urn:sandbox:<kind>-<n>. Payments and instant
// payments share one counter.
func (s *Server) newID(kind string, n int) string {
	if s.opts.IDs == IDsURN {
		if kind == idConsent {
			return fmt.Sprintf("urn:sandbox:consent-%06d", n)
		}
		return fmt.Sprintf("urn:sandbox:%s-%08d", kind, n)
	}
	return seededUUID(s.opts.Seed, kind, n)
}

// seededUUID derives a version 4 (random) UUID from (seed, kind, n): the 122 random
// bits come from a hash, so a run with the same seed issues the same ids.
func seededUUID(seed uint64, kind string, n int) string {
	h := fnv.New64a()
	h.Write([]byte(kind))
	a := mix(seed ^ h.Sum64() ^ uint64(n)*0x9e3779b97f4a7c15)
	b := mix(a ^ 0xd6e8feb86659fd93 ^ uint64(n))
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], a)
	binary.BigEndian.PutUint64(u[8:], b)
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	x := hex.EncodeToString(u[:])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

package snapshot

import "hash/maphash"

// liveKeys counts the keys alive at the end of the key bucket's
// revision-ordered puts and deletes: etcdutl's total_keys. etcdutl holds
// every key in a map (228 MiB of anonymous memory for 2M keys, make
// bench); here a key is held as its seeded 64-bit hash, about 14 bytes a
// key in Go's map. Two keys of one snapshot share a hash with odds of
// about n²/2⁶⁵ (1 in 10⁷ for 2M keys), and would be counted once.
type liveKeys struct {
	seed maphash.Seed
	set  map[uint64]struct{}
}

func newLiveKeys() *liveKeys {
	return &liveKeys{seed: maphash.MakeSeed(), set: map[uint64]struct{}{}}
}

// apply records a put of key, or its deletion when tombstone is true.
func (k *liveKeys) apply(key []byte, tombstone bool) {
	h := maphash.Bytes(k.seed, key)
	if tombstone {
		delete(k.set, h)
	} else {
		k.set[h] = struct{}{}
	}
}

func (k *liveKeys) count() int { return len(k.set) }

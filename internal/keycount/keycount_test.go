package keycount

import (
	"math/rand/v2"
	"os"
	"testing"
)

// TestKeySetCounts runs the same puts and deletes through key sets that
// spill at different sizes (so counted in one pass or in many) and checks
// each count against a plain map, and that the spill file is gone after
// close.
func TestKeySetCounts(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var ops []keyOp
	want := map[[16]byte]bool{}
	for i := 0; i < 20000; i++ {
		var id [16]byte
		id[0], id[1] = byte(rng.IntN(256)), byte(rng.IntN(20)) // 5120 distinct keys
		del := rng.IntN(4) == 0
		ops = append(ops, keyOp{del, id})
		if del {
			delete(want, id)
		} else {
			want[id] = true
		}
	}
	tests := []struct {
		name      string
		limit     int
		feed      bool // through a Feed, as the snapshot status does
		wantSpill bool
	}{
		{"in memory", 1 << 20, false, false},
		{"spills at once", 0, false, true},
		{"spills midway", 1000, false, true},
		{"spills near the end", len(want) - 1, false, true},
		{"fed, in memory", 1 << 20, true, false},
		{"fed, spills midway", 1000, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(tt.limit)
			if err := replay(s, ops, tt.feed); err != nil {
				t.Fatal(err)
			}
			n, err := s.Count()
			if err != nil || n != len(want) {
				t.Fatalf("count = %d, %v; want %d", n, err, len(want))
			}
			if (s.spilled != nil) != tt.wantSpill {
				t.Fatalf("spilled %v, want spilling %v", s.spilled != nil, tt.wantSpill)
			}
			s.Close()
			if s.spilled != nil {
				if _, err := os.Stat(s.spilled.Name()); !os.IsNotExist(err) {
					t.Fatalf("spill file %s left behind: %v", s.spilled.Name(), err)
				}
			}
		})
	}
}

// replay applies ops to s directly or through a Feed.
func replay(s *Set, ops []keyOp, feed bool) error {
	if feed {
		f := s.Feed()
		for _, o := range ops {
			f.addID(o.del, o.id)
		}
		return f.Finish()
	}
	for _, o := range ops {
		var err error
		if o.del {
			err = s.del(o.id)
		} else {
			err = s.put(o.id)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

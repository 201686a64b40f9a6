package snapshot

import "testing"

// TestLiveKeys replays revision-ordered puts and deletes and checks the
// count of keys alive at the end.
func TestLiveKeys(t *testing.T) {
	type op struct {
		key       string
		tombstone bool
	}
	tests := []struct {
		name string
		ops  []op
		want int
	}{
		{"none", nil, 0},
		{"puts of distinct keys", []op{{"a", false}, {"b", false}, {"c", false}}, 3},
		{"a key put twice counts once", []op{{"a", false}, {"a", false}}, 1},
		{"a deleted key is gone", []op{{"a", false}, {"b", false}, {"a", true}}, 1},
		{"put again after its deletion", []op{{"a", false}, {"a", true}, {"a", false}}, 1},
		{"a tombstone of an unseen key", []op{{"x", true}, {"a", false}}, 1},
		{"the empty key is a key", []op{{"", false}, {"a", false}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newLiveKeys()
			for _, o := range tt.ops {
				k.apply([]byte(o.key), o.tombstone)
			}
			if got := k.count(); got != tt.want {
				t.Fatalf("count = %d, want %d", got, tt.want)
			}
		})
	}
}

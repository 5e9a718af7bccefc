package message

import (
	"encoding/hex"
	"sync"
	"testing"
)

func TestIDForms(t *testing.T) {
	id := ID{Epoch: 1452613435, Seq: 320146}
	if s := id.String(); s != "14526134350000000000320146" {
		t.Fatalf("String() = %s", s)
	}
	b := id.Binary()
	if hex.EncodeToString(b[:]) != id.String() {
		t.Fatalf("Binary() = %x, want the digits read as hex", b)
	}
	back, err := IDFromBinary(b[:])
	if err != nil || back != id {
		t.Fatalf("IDFromBinary = %v, %v", back, err)
	}
	parsed, err := ParseID(id.String())
	if err != nil || parsed != id {
		t.Fatalf("ParseID = %v, %v", parsed, err)
	}
	for _, bad := range []string{"", "1452613435000000000032014", "145261343500000000003201460", "1452613435000000000032014a", "-452613435000000000032014"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
	if _, err := IDFromBinary([]byte{0xab, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}); err == nil {
		t.Error("IDFromBinary accepted non-decimal nibbles")
	}
}

func TestOrderMatchesTextOrder(t *testing.T) {
	ids := []ID{{}, {Epoch: 1, Seq: 9}, {Epoch: 1, Seq: 10}, {Epoch: 2, Seq: 0}, {Epoch: 9_999_999_999, Seq: 1}}
	for i := 1; i < len(ids); i++ {
		a, b := ids[i-1], ids[i]
		if !a.Less(b) || b.Less(a) || a.Compare(a) != 0 {
			t.Fatalf("%v vs %v", a, b)
		}
		if a.String() >= b.String() {
			t.Fatalf("text order disagrees: %s >= %s", a, b)
		}
	}
}

func TestGeneratorIsMonotonicUnderConcurrency(t *testing.T) {
	g, err := NewGenerator(1_700_000_000, 41)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 1000
	got := make([][]ID, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				got[w] = append(got[w], g.Next())
			}
		}()
	}
	wg.Wait()
	seen := map[ID]bool{}
	for _, ids := range got {
		for i, id := range ids {
			if seen[id] || id.Seq <= 41 || (i > 0 && !ids[i-1].Less(id)) {
				t.Fatalf("id %v repeated, too small or out of order", id)
			}
			seen[id] = true
		}
	}
	if last := g.Last(); last.Seq != 41+workers*each {
		t.Fatalf("Last() = %v", last)
	}
	if _, err := NewGenerator(10_000_000_000, 0); err == nil {
		t.Fatal("an 11-digit epoch was accepted")
	}
}

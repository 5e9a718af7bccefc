package broker

import (
	"slices"

	"github.com/pushpull/pushpull/internal/message"
)

// Paginate builds a page from per-channel reads. Each of perChannel is one
// channel's stored entries after the mid, ascending by id, read with room for
// one more than limit.PerChannel so that a channel with more is seen. Both
// engines use it, so both cut pages the same way.
func Paginate(perChannel [][]Entry, limit HistoryLimit) Page {
	var p Page
	// A channel cut at its limit leaves a hole after its last kept entry:
	// the page may only reach that far, or the next read would skip what
	// the channel still holds.
	var bound message.ID
	cut := false
	n := 0
	for i, l := range perChannel {
		if limit.PerChannel > 0 && len(l) > limit.PerChannel {
			l = l[:limit.PerChannel]
			perChannel[i] = l
			if last := l[len(l)-1].Msg.ID; !cut || last.Less(bound) {
				bound = last
			}
			cut = true
		}
		n += len(l)
	}
	out := make([]Entry, 0, n)
	for _, l := range perChannel {
		out = append(out, l...)
	}
	slices.SortStableFunc(out, func(a, c Entry) int { return a.Msg.ID.Compare(c.Msg.ID) })
	if cut {
		end, _ := slices.BinarySearchFunc(out, bound, func(e Entry, id message.ID) int {
			if e.Msg.ID.Compare(id) <= 0 {
				return -1
			}
			return 1
		})
		out = out[:end]
		p.More, p.Next = true, bound
	}
	if limit.Total > 0 && len(out) > limit.Total {
		// Keep whole messages: a message's entries in several channels go
		// together, or the next read (after its id) would skip the rest.
		end := limit.Total
		for end > 0 && out[end].Msg.ID == out[end-1].Msg.ID {
			end--
		}
		if end == 0 {
			// One message to more channels than the limit: send it whole.
			for end < len(out) && out[end].Msg.ID == out[0].Msg.ID {
				end++
			}
		}
		p.More = p.More || end < len(out)
		out = out[:end]
		if p.More {
			p.Next = out[end-1].Msg.ID
		}
	}
	p.Entries = out
	if !p.More && len(out) > 0 {
		p.Next = out[len(out)-1].Msg.ID
	}
	return p
}

package pullclient

import (
	"bytes"
	"encoding/hex"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pushpull/pushpull/internal/wire/pb"
)

// FuzzEachOutgoing: whatever bytes a server sends, the in-place reader
// neither panics nor reads outside them, and where the generated decoder
// accepts a batch and the reader does too, both see the same messages.
func FuzzEachOutgoing(f *testing.F) {
	spec, _ := hex.DecodeString(specBatch)
	f.Add(spec)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		var got []OutgoingView
		err := EachOutgoing(data, func(v OutgoingView) error {
			// The views point into data, valid only during the call.
			got = append(got, OutgoingView{ID: bytes.Clone(v.ID), Body: bytes.Clone(v.Body), Expiry: v.Expiry,
				Created: v.Created, SenderType: v.SenderType, SenderID: bytes.Clone(v.SenderID)})
			return nil
		})
		var batch pb.ResponseBatch
		if err != nil || proto.Unmarshal(data, &batch) != nil {
			return
		}
		var want []*pb.OutgoingMessage
		for _, r := range batch.GetResponses() {
			want = append(want, r.GetOutgoingMessages().GetMessages()...)
		}
		if len(got) != len(want) {
			t.Fatalf("reader saw %d messages, the generated decoder %d", len(got), len(want))
		}
		for i, w := range want {
			g := got[i]
			if !bytes.Equal(g.ID, w.GetId()) || string(g.Body) != w.GetBody() || g.Expiry != w.GetExpiry() ||
				g.Created != w.GetCreated() || int32(g.SenderType) != int32(w.GetSender().GetType()) ||
				!bytes.Equal(g.SenderID, w.GetSender().GetId()) {
				t.Fatalf("message %d: reader %+v, generated decoder %v", i, g, w)
			}
		}
	})
}

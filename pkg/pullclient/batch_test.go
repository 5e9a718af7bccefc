package pullclient

import (
	"encoding/hex"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pushpull/pushpull/internal/wire/pb"
)

// specBatch is the ResponseBatch test vector made with the b24jssdk model
// (spec/protocol.md §8.4): one message, id 17000000000000000000000042,
// expiry 86400, created 1700000000, sender BACKEND.
const specBatch = "0a7b0a790a770a0d1700000000000000000000004212597b226d6f64756c655f6964223a226170706c69636174696f6e222c22636f6d6d616e64223a2270696e67222c22706172616d73223a7b2261223a317d2c226578747261223a7b227265766973696f6e5f776562223a31397d7d1880a3052500f153652a020802"

func TestEachOutgoingReadsTheSpecVector(t *testing.T) {
	data, _ := hex.DecodeString(specBatch)
	msgs, err := decodeProtobuf(data)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	m := msgs[0]
	if m.MID != "17000000000000000000000042" || m.Expiry.Seconds() != 86400 || m.Created.Unix() != 1700000000 ||
		m.Sender != (Sender{Type: SenderBackend}) || m.ModuleID != "application" || m.Command != "ping" || string(m.Params) != `{"a":1}` {
		t.Errorf("message %+v", m)
	}
}

// TestEachOutgoingAgreesWithProto: a batch with several responses (one of
// them channel stats), a client sender and unknown fields reads as the
// generated decoder reads it.
func TestEachOutgoingAgreesWithProto(t *testing.T) {
	out := func(id byte, body string) *pb.OutgoingMessage {
		return &pb.OutgoingMessage{Id: []byte{0x17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, id}, Body: body, Expiry: 60,
			Created: 1700000001, Sender: &pb.Sender{Type: pb.SenderType_CLIENT, Id: []byte{0xab, 0xcd}}}
	}
	batch := &pb.ResponseBatch{Responses: []*pb.Response{
		{Command: &pb.Response_OutgoingMessages{OutgoingMessages: &pb.OutgoingMessagesResponse{Messages: []*pb.OutgoingMessage{out(1, `{"n":1}`), out(2, `{"n":2}`)}}}},
		{Command: &pb.Response_ChannelStats{ChannelStats: &pb.ChannelStatsResponse{}}},
		{Command: &pb.Response_OutgoingMessages{OutgoingMessages: &pb.OutgoingMessagesResponse{Messages: []*pb.OutgoingMessage{out(3, `{"n":3}`)}}}},
	}}
	data, err := proto.Marshal(batch)
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, 0x78, 0x01) // field 15, varint: unknown, skipped
	var got []string
	err = EachOutgoing(data, func(v OutgoingView) error {
		if v.Expiry != 60 || v.Created != 1700000001 || v.SenderType != SenderClient || hex.EncodeToString(v.SenderID) != "abcd" {
			t.Errorf("view %+v", v)
		}
		got = append(got, hex.EncodeToString(v.ID)+" "+string(v.Body))
		return nil
	})
	want := []string{"17000000000000000000000001 {\"n\":1}", "17000000000000000000000002 {\"n\":2}", "17000000000000000000000003 {\"n\":3}"}
	if err != nil || len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("got %q, %v", got, err)
	}
}

func TestEachOutgoingRefusesGarbage(t *testing.T) {
	for _, bad := range []string{"0aff", "0a030a010a", "0a050a030a0108", "ff"} {
		data, _ := hex.DecodeString(bad)
		if err := EachOutgoing(data, func(OutgoingView) error { return nil }); !errors.Is(err, ErrBadBatch) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	stop := errors.New("stop")
	data, _ := hex.DecodeString(specBatch)
	if err := EachOutgoing(data, func(OutgoingView) error { return stop }); err != stop {
		t.Errorf("callback error: %v", err)
	}
}

func TestEachOutgoingDoesNotAllocate(t *testing.T) {
	data, _ := hex.DecodeString(specBatch)
	n := 0
	fn := func(v OutgoingView) error { n += len(v.Body); return nil }
	if allocs := testing.AllocsPerRun(100, func() { _ = EachOutgoing(data, fn) }); allocs != 0 {
		t.Errorf("%.1f allocations per batch", allocs)
	}
}

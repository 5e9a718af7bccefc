package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire/pb"
)

// The first vector of spec/protocol.md §8.4, reproduced by the hand encoder.
func TestOutgoingMessageVector(t *testing.T) {
	m := &message.Message{
		ID:      message.ID{Epoch: 1700000000, Seq: 42},
		Body:    []byte(`{"module_id":"application","command":"ping","params":{"a":1},"extra":{"revision_web":19}}`),
		Expiry:  86400,
		Created: time.Unix(1700000000, 0),
		Sender:  message.Sender{Type: message.SenderBackend},
	}
	elems := AppendOutgoingMessage(nil, m)
	got := append(AppendResponseBatchHeader(nil, len(elems)), elems...)
	want := "0a7b0a790a770a0d1700000000000000000000004212597b226d6f64756c655f6964223a226170706c69636174696f6e222c22636f6d6d616e64223a2270696e67222c22706172616d73223a7b2261223a317d2c226578747261223a7b227265766973696f6e5f776562223a31397d7d1880a3052500f153652a020802"
	if hex.EncodeToString(got) != want {
		t.Fatalf("got  %x\nwant %s", got, want)
	}
}

// The hand encoder must agree with proto.Marshal for every shape of message.
func TestOutgoingMessageMatchesGenerated(t *testing.T) {
	pub := channel.ID{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6}
	msgs := []*message.Message{
		{ID: message.ID{Epoch: 1795742664, Seq: 1}, Body: []byte(`{}`), Expiry: 0, Created: time.Unix(1795742664, 0), Sender: message.Sender{Type: message.SenderBackend}},
		{ID: message.ID{Epoch: 1795742664, Seq: 9_999_999_999_999_999}, Body: []byte(`{"x":"` + strings.Repeat("y", 300) + `"}`), Expiry: 86400, Created: time.Unix(1795742664, 0), Sender: message.Sender{Type: message.SenderClient, ID: pub}},
		{ID: message.ID{Epoch: 1, Seq: 2}, Body: nil, Created: time.Unix(0, 0)},
	}
	var elems []byte
	var want pb.OutgoingMessagesResponse
	for _, m := range msgs {
		one := AppendOutgoingMessage(nil, m)
		elems = append(elems, one...)
		id := m.ID.Binary()
		om := &pb.OutgoingMessage{Id: id[:], Body: string(m.Body), Expiry: m.Expiry, Created: uint32(m.Created.Unix()), Sender: &pb.Sender{Type: pb.SenderType(m.Sender.Type)}}
		if m.Sender.Type == message.SenderClient {
			om.Sender.Id = m.Sender.ID[:]
		}
		want.Messages = append(want.Messages, om)
		single, err := proto.Marshal(&pb.OutgoingMessagesResponse{Messages: []*pb.OutgoingMessage{om}})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(one, single) {
			t.Fatalf("hand %x\n gen %x", one, single)
		}
	}
	batch := append(AppendResponseBatchHeader(nil, len(elems)), elems...)
	var got pb.ResponseBatch
	if err := proto.Unmarshal(batch, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.GetResponses()) != 1 || !proto.Equal(got.GetResponses()[0].GetOutgoingMessages(), &want) {
		t.Fatalf("decoded %v", &got)
	}
	for _, om := range got.GetResponses()[0].GetOutgoingMessages().GetMessages() {
		if om.GetSender() == nil {
			t.Fatal("a message without sender: clients would drop it")
		}
	}
}

func TestDecodeRequestBatchRefusesBadInput(t *testing.T) {
	good, err := proto.Marshal(&pb.RequestBatch{Requests: []*pb.Request{{Command: &pb.Request_IncomingMessages{IncomingMessages: &pb.IncomingMessagesRequest{
		Messages: []*pb.IncomingMessage{{Body: `{"s":"AB"}`}},
	}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := DecodeRequestBatch(good); err != nil || b.GetRequests()[0].GetIncomingMessages().GetMessages()[0].GetBody() != `{"s":"AB"}` {
		t.Fatalf("good batch: %v %v", b, err)
	}
	for name, data := range map[string][]byte{
		"invalid utf-8": bytes.Replace(good, []byte("AB"), []byte{0xff, 0xfe}, 1),
		"truncated":     good[:len(good)-3],
		"bad tag":       {0xff, 0xff, 0xff},
	} {
		if _, err := DecodeRequestBatch(data); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func FuzzDecodeRequestBatch(f *testing.F) {
	for _, v := range []string{
		"0a5d0a5b0a590a280a100123456789abcdef0123456789abcdef1a1400112233445566778899aabbccddeeff001122331a2b7b226d6f64756c655f6964223a2278222c22636f6d6d616e64223a2279222c22706172616d73223a7b7d7d2000",
		"0a1812160a140a100123456789abcdef0123456789abcdef1001",
		"",
	} {
		b, _ := hex.DecodeString(v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeRequestBatch(data)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes and decodes to the same thing.
		again, err := proto.Marshal(b)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var b2 pb.RequestBatch
		if err := proto.Unmarshal(again, &b2); err != nil || !proto.Equal(b, &b2) {
			t.Fatalf("round trip differs: %v", err)
		}
	})
}

func BenchmarkAppendOutgoingMessage(b *testing.B) {
	m := &message.Message{ID: message.ID{Epoch: 1795742664, Seq: 12345}, Body: []byte(`{"module_id":"application","command":"bench","params":{"p":"` + strings.Repeat("x", 40) + `"}}`),
		Expiry: 86400, Created: time.Unix(1795742664, 0), Sender: message.Sender{Type: message.SenderBackend}}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendOutgoingMessage(buf[:0], m)
	}
}

func BenchmarkProtoMarshalOutgoingMessage(b *testing.B) {
	om := &pb.OutgoingMessage{Id: make([]byte, 13), Body: `{"module_id":"application","command":"bench","params":{"p":"` + strings.Repeat("x", 40) + `"}}`,
		Expiry: 86400, Created: 1795742664, Sender: &pb.Sender{Type: pb.SenderType_BACKEND}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := proto.Marshal(om); err != nil {
			b.Fatal(err)
		}
	}
}

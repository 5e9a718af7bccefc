package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire/pb"
)

// The first vector made with the b24jssdk model (pb/pull_test.go), reproduced
// byte for byte by the hand encoder and the batch header.
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

var testPublicID = channel.ID{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6}

// testMessages covers both sender types, expiry 0 and > 0, an empty body, a
// body long enough for a two-byte length, and the largest id.
func testMessages() []*message.Message {
	created := time.Unix(1795742664, 0)
	return []*message.Message{
		{ID: message.ID{Epoch: 1795742664, Seq: 1}, Body: []byte(`{}`), Expiry: 0, Created: created,
			Sender: message.Sender{Type: message.SenderBackend}},
		{ID: message.ID{Epoch: 1795742664, Seq: 2}, Body: []byte(`{"a":1}`), Expiry: 86400, Created: created,
			Sender: message.Sender{Type: message.SenderBackend}},
		{ID: message.ID{Epoch: 1795742664, Seq: 3}, Body: []byte(`{"b":2}`), Expiry: 0, Created: created,
			Sender: message.Sender{Type: message.SenderClient, ID: testPublicID}},
		{ID: message.ID{Epoch: 9_999_999_999, Seq: 9_999_999_999_999_999}, Body: []byte(`{"x":"` + strings.Repeat("y", 300) + `"}`),
			Expiry: 3600, Created: created, Sender: message.Sender{Type: message.SenderClient, ID: testPublicID}},
		{ID: message.ID{Epoch: 1, Seq: 2}, Body: nil, Created: time.Unix(0, 0), Sender: message.Sender{Type: message.SenderBackend}},
	}
}

// A batch of hand-encoded messages decodes with the generated code to exactly
// what was encoded, field by field, and with a sender on every message.
func TestOutgoingMessageBatchDecodes(t *testing.T) {
	msgs := testMessages()
	var elems []byte
	for _, m := range msgs {
		elems = AppendOutgoingMessage(elems, m)
	}
	batch := append(AppendResponseBatchHeader(nil, len(elems)), elems...)

	var got pb.ResponseBatch
	if err := proto.Unmarshal(batch, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.GetResponses()) != 1 || got.GetResponses()[0].GetOutgoingMessages() == nil {
		t.Fatalf("want one outgoingMessages response, got %v", &got)
	}
	outs := got.GetResponses()[0].GetOutgoingMessages().GetMessages()
	if len(outs) != len(msgs) {
		t.Fatalf("decoded %d messages, want %d", len(outs), len(msgs))
	}
	for i, m := range msgs {
		om := outs[i]
		if id, err := message.IDFromBinary(om.GetId()); err != nil || id != m.ID {
			t.Errorf("%d: id %x = %v (%v), want %v", i, om.GetId(), id, err, m.ID)
		}
		if om.GetBody() != string(m.Body) {
			t.Errorf("%d: body %q, want %q", i, om.GetBody(), m.Body)
		}
		if om.GetExpiry() != m.Expiry {
			t.Errorf("%d: expiry %d, want %d", i, om.GetExpiry(), m.Expiry)
		}
		if int64(om.GetCreated()) != m.Created.Unix() {
			t.Errorf("%d: created %d, want %d", i, om.GetCreated(), m.Created.Unix())
		}
		if om.Sender == nil {
			t.Fatalf("%d: no sender; clients would drop the message", i)
		}
		if om.Sender.GetType() != pb.SenderType(m.Sender.Type) {
			t.Errorf("%d: sender type %v, want %v", i, om.Sender.GetType(), m.Sender.Type)
		}
		wantSenderID := []byte(nil)
		if m.Sender.Type == message.SenderClient {
			wantSenderID = m.Sender.ID[:]
		}
		if !bytes.Equal(om.Sender.GetId(), wantSenderID) {
			t.Errorf("%d: sender id %x, want %x", i, om.Sender.GetId(), wantSenderID)
		}
	}
}

// The hand encoder writes the very bytes proto.Marshal writes, so there is
// one encoding of a message whichever path produced it.
func TestOutgoingMessageMatchesGenerated(t *testing.T) {
	msgs := append(testMessages(),
		// A sender of unknown type is still present, as an empty message.
		&message.Message{ID: message.ID{Epoch: 1, Seq: 1}, Body: []byte(`{}`), Created: time.Unix(5, 0)})
	for i, m := range msgs {
		id := m.ID.Binary()
		om := &pb.OutgoingMessage{Id: id[:], Body: string(m.Body), Expiry: m.Expiry,
			Created: uint32(m.Created.Unix()), Sender: &pb.Sender{Type: pb.SenderType(m.Sender.Type)}}
		if m.Sender.Type == message.SenderClient {
			om.Sender.Id = m.Sender.ID[:]
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.OutgoingMessagesResponse{Messages: []*pb.OutgoingMessage{om}})
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendOutgoingMessage(nil, m); !bytes.Equal(got, want) {
			t.Errorf("%d: hand %x\n    gen %x", i, got, want)
		}
	}
}

// created is fixed32 seconds: times it cannot hold are clamped, and an unset
// time is 0 rather than whatever its negative seconds wrap to.
func TestOutgoingMessageCreatedRange(t *testing.T) {
	for _, tc := range []struct {
		at   time.Time
		want uint32
	}{
		{time.Time{}, 0},
		{time.Unix(-1, 0), 0},
		{time.Unix(1700000000, 999_999_999), 1700000000},
		{time.Unix(math.MaxUint32, 0), math.MaxUint32},
		{time.Unix(math.MaxUint32+1, 0), math.MaxUint32},
	} {
		m := &message.Message{ID: message.ID{Epoch: 1, Seq: 1}, Created: tc.at, Sender: message.Sender{Type: message.SenderBackend}}
		var om pb.OutgoingMessagesResponse
		if err := proto.Unmarshal(AppendOutgoingMessage(nil, m), &om); err != nil {
			t.Fatal(err)
		}
		if got := om.GetMessages()[0].GetCreated(); got != tc.want {
			t.Errorf("created %v: got %d, want %d", tc.at, got, tc.want)
		}
	}
}

// The header frames exactly elementsLen bytes, also where the varint lengths
// grow a byte. The element bytes are opaque here, so they are only counted.
func TestResponseBatchHeaderLengths(t *testing.T) {
	for _, n := range []int{0, 1, 124, 125, 126, 127, 128, 16380, 16381, 16382, 16383, 16384, 1 << 21} {
		batch := append(AppendResponseBatchHeader(nil, n), make([]byte, n)...)
		num, typ, tagLen := protowire.ConsumeTag(batch)
		response, m := protowire.ConsumeBytes(batch[max(tagLen, 0):])
		if num != 1 || typ != protowire.BytesType || m < 0 || tagLen+m != len(batch) {
			t.Fatalf("n=%d: ResponseBatch.responses framing wrong", n)
		}
		num, typ, tagLen = protowire.ConsumeTag(response)
		elems, m := protowire.ConsumeBytes(response[max(tagLen, 0):])
		if num != 1 || typ != protowire.BytesType || m < 0 || tagLen+m != len(response) || len(elems) != n {
			t.Fatalf("n=%d: Response.outgoingMessages framing wrong", n)
		}
	}
}

// Delivery encoding must not allocate when dst has room: it runs once per
// published message, and batches are assembled in reused buffers.
func TestAppendOutgoingMessageAllocs(t *testing.T) {
	buf := make([]byte, 0, 1024)
	for _, m := range testMessages() {
		if n := testing.AllocsPerRun(100, func() { buf = AppendOutgoingMessage(buf[:0], m) }); n != 0 {
			t.Errorf("AppendOutgoingMessage allocates %v times", n)
		}
		if n := testing.AllocsPerRun(100, func() { buf = AppendResponseBatchHeader(buf[:0], 1000) }); n != 0 {
			t.Errorf("AppendResponseBatchHeader allocates %v times", n)
		}
	}
}

func TestDecodeRequestBatch(t *testing.T) {
	raw, _ := hex.DecodeString("0a5d0a5b0a590a280a100123456789abcdef0123456789abcdef1a1400112233445566778899aabbccddeeff001122331a2b7b226d6f64756c655f6964223a2278222c22636f6d6d616e64223a2279222c22706172616d73223a7b7d7d2000")
	b, err := DecodeRequestBatch(raw)
	if err != nil {
		t.Fatal(err)
	}
	msgs := b.GetRequests()[0].GetIncomingMessages().GetMessages()
	if len(msgs) != 1 || msgs[0].GetBody() != `{"module_id":"x","command":"y","params":{}}` || len(msgs[0].GetReceivers()) != 1 {
		t.Fatalf("decoded %v", b)
	}
	// Unknown fields (here field 15, varint) are skipped, not refused.
	if _, err := DecodeRequestBatch(append(raw, 0x78, 0x01)); err != nil {
		t.Fatalf("unknown field: %v", err)
	}
	// So is a known field with the wrong wire type (requests as fixed32):
	// the Go decoder treats it as an unknown field, leaving no requests.
	if b, err := DecodeRequestBatch([]byte{0x0d, 0, 0, 0, 0}); err != nil || len(b.GetRequests()) != 0 {
		t.Fatalf("wrong wire type: %v, %v", b, err)
	}
}

// Every proto3 string of a request must be valid UTF-8: bodies are relayed to
// browsers as JSON text, and Bitrix's PHP module refuses such bodies too.
func TestDecodeRequestBatchRefusesBadInput(t *testing.T) {
	const marker = "\x01MARK\x01"
	encode := func(r *pb.Request) []byte {
		b, err := proto.Marshal(&pb.RequestBatch{Requests: []*pb.Request{r}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	invalid := func(good []byte) []byte {
		if bytes.Count(good, []byte(marker)) != 1 {
			t.Fatalf("marker not found once in %x", good)
		}
		return bytes.Replace(good, []byte(marker), []byte("\xff\xfe\xfd\xfc\xfb\xfa"), 1)
	}
	cases := map[string]*pb.Request{
		"body": {Command: &pb.Request_IncomingMessages{IncomingMessages: &pb.IncomingMessagesRequest{
			Messages: []*pb.IncomingMessage{{Body: `{"s":"` + marker + `"}`}}}}},
		"type": {Command: &pb.Request_IncomingMessages{IncomingMessages: &pb.IncomingMessagesRequest{
			Messages: []*pb.IncomingMessage{{Body: `{}`, Type: marker}}}}},
		"registration": {Command: &pb.Request_Registration{Registration: &pb.RegisterRequest{Host: marker}}},
	}
	for name, r := range cases {
		good := encode(r)
		if _, err := DecodeRequestBatch(good); err != nil {
			t.Fatalf("%s: valid UTF-8 refused: %v", name, err)
		}
		if _, err := DecodeRequestBatch(invalid(good)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: invalid UTF-8: err = %v, want ErrBadRequest", name, err)
		}
	}
	good := encode(cases["body"])
	for name, data := range map[string][]byte{
		"truncated":        good[:len(good)-3],
		"bad tag":          {0xff, 0xff, 0xff},
		"length too large": {0x0a, 0x7f, 0x00},
	} {
		if _, err := DecodeRequestBatch(data); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: err = %v, want ErrBadRequest", name, err)
		}
	}
}

func TestEncodeResponseBatch(t *testing.T) {
	id := []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	got, err := EncodeResponseBatch(&pb.ResponseBatch{Responses: []*pb.Response{
		{Command: &pb.Response_ChannelStats{ChannelStats: &pb.ChannelStatsResponse{Channels: []*pb.ChannelStats{{Id: id, IsPrivate: true, IsOnline: true}}}}},
		{Command: &pb.Response_ServerStats{ServerStats: &pb.JsonResponse{Json: "[]"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// The last vector made with the b24jssdk model (pb/pull_test.go).
	if want := "0a1a12180a160a100123456789abcdef0123456789abcdef100118010a061a040a025b5d"; hex.EncodeToString(got) != want {
		t.Fatalf("got  %x\nwant %s", got, want)
	}
}

func FuzzDecodeRequestBatch(f *testing.F) {
	for _, v := range []string{
		"0a5d0a5b0a590a280a100123456789abcdef0123456789abcdef1a1400112233445566778899aabbccddeeff001122331a2b7b226d6f64756c655f6964223a2278222c22636f6d6d616e64223a2279222c22706172616d73223a7b7d7d2000",
		"0a1812160a140a100123456789abcdef0123456789abcdef1001",
		"0a021a00", // serverStats
		"",
	} {
		b, _ := hex.DecodeString(v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeRequestBatch(data)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) || b != nil {
				t.Fatalf("error %v does not wrap ErrBadRequest or batch %v returned with it", err, b)
			}
			return
		}
		// Whatever decodes re-encodes and decodes to the same thing, so
		// nothing accepted is half understood.
		again, err := proto.Marshal(b)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		b2, err := DecodeRequestBatch(again)
		if err != nil || !proto.Equal(b, b2) {
			t.Fatalf("round trip differs: %v", err)
		}
	})
}

// benchMessage has a 100-byte body, a typical small Bitrix event.
func benchMessage() *message.Message {
	body := `{"module_id":"application","command":"bench","params":{"p":"` + strings.Repeat("x", 37) + `"}}`
	return &message.Message{ID: message.ID{Epoch: 1795742664, Seq: 12345}, Body: []byte(body),
		Expiry: 86400, Created: time.Unix(1795742664, 0), Sender: message.Sender{Type: message.SenderBackend}}
}

func BenchmarkAppendOutgoingMessage(b *testing.B) {
	m := benchMessage()
	if len(m.Body) != 100 {
		b.Fatalf("body is %d bytes", len(m.Body))
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendOutgoingMessage(buf[:0], m)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkProtoMarshalOutgoingMessage is the generated-code alternative for
// the same message, for comparison.
func BenchmarkProtoMarshalOutgoingMessage(b *testing.B) {
	m := benchMessage()
	id := m.ID.Binary()
	om := &pb.OutgoingMessage{Id: id[:], Body: string(m.Body), Expiry: m.Expiry,
		Created: uint32(m.Created.Unix()), Sender: &pb.Sender{Type: pb.SenderType(m.Sender.Type)}}
	b.ReportAllocs()
	var out []byte
	for b.Loop() {
		var err error
		if out, err = proto.Marshal(om); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(out)))
}

package redis

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

func TestCodecRoundTrip(t *testing.T) {
	pub := channel.ID{1, 2, 3}
	m := &message.Message{
		ID:         message.ID{Epoch: 1700000000, Seq: 42},
		Receivers:  []message.Receiver{{ID: channel.ID{9}}, {ID: pub, Public: true}},
		Body:       []byte(`{"module_id":"test","command":"x","params":{}}`),
		Created:    time.UnixMicro(1700000000123456),
		Expiry:     86400,
		Sender:     message.Sender{Type: message.SenderClient, ID: pub, UserID: -7},
		UserParams: map[channel.ID][]byte{{5}: []byte(`{"a":1}`)},
		Dictionary: []byte(`{"d":2}`),
	}
	s := m.ID.String() + string(appendTail(nil, m))
	got, err := decode(s)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != m.ID || !got.Created.Equal(m.Created) || got.Expiry != m.Expiry || got.Sender != m.Sender ||
		!bytes.Equal(got.Body, m.Body) || len(got.Receivers) != 2 || got.Receivers[1] != m.Receivers[1] || got.Receivers[0] != m.Receivers[0] ||
		string(got.UserParams[channel.ID{5}]) != `{"a":1}` || len(got.UserParams) != 1 || string(got.Dictionary) != `{"d":2}` {
		t.Fatalf("decoded %+v, want %+v", got, m)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("decoded %+v, want all of %+v", got, m)
	}
}

func TestDecodeRejectsCorrupt(t *testing.T) {
	m := &message.Message{ID: message.ID{Epoch: 1700000000, Seq: 1}, Receivers: []message.Receiver{{ID: channel.ID{1}}},
		Sender: message.Sender{Type: message.SenderBackend}}
	good := m.ID.String() + string(appendTail(nil, m))
	for name, s := range map[string]string{
		"empty":         "",
		"only mid":      m.ID.String(),
		"bad mid":       "x" + good[1:],
		"bad version":   good[:26] + "\x07" + good[27:],
		"huge params":   good[:len(good)-2] + "\xff\x0f",
		"truncated":     good[:len(good)-10],
		"huge receiver": good[:26] + "\x01\x01\x00\x02\xff\xff\xff\xff\x0f",
	} {
		if _, err := decode(s); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	m := &message.Message{ID: message.ID{Epoch: 1700000000, Seq: 7}, Receivers: []message.Receiver{{ID: channel.ID{1}, Public: true}},
		Body: []byte(`{}`), Sender: message.Sender{Type: message.SenderClient}, Expiry: 5, Created: time.Unix(1700000000, 0)}
	f.Add(m.ID.String() + string(appendTail(nil, m)))
	// Every field set, so that the round trip covers each from the start.
	full := &message.Message{ID: message.ID{Epoch: 1700000000, Seq: 8},
		Receivers: []message.Receiver{{ID: channel.ID{1}}, {ID: channel.ID{2}, Public: true}},
		Body:      []byte(`{"a":1}`), Created: time.UnixMicro(1700000000123456), Expiry: 86400,
		Sender:     message.Sender{Type: message.SenderClient, ID: channel.ID{3}, UserID: -7},
		UserParams: map[channel.ID][]byte{{5}: []byte(`{"u":5}`), {6}: []byte(`{"u":6}`)},
		Dictionary: []byte(`{"d":1}`)}
	f.Add(full.ID.String() + string(appendTail(nil, full)))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := decode(s)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes, but for a
		// non-canonical varint or flag, which it normalises.
		again, err := decode(got.ID.String() + string(appendTail(nil, got)))
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip changed the message: %+v -> %+v", got, again)
		}
	})
}

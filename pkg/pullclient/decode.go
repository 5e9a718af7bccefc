package pullclient

import (
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/pushpull/pushpull/internal/wire"
)

// decoder turns one WebSocket message or long-poll body into messages. A
// partly broken delivery yields the messages that decoded and an error
// describing the rest, which the client logs and skips, as the official
// clients skip what they cannot parse.
type decoder func(data []byte) ([]Message, error)

// decoderFor picks the decoder of the wire format a config asks for.
func decoderFor(version int, format Format) decoder {
	switch {
	case version >= 5:
		return decodeRPC
	case version == 4:
		return decodeProtobuf
	case format == FormatJSON:
		return func(data []byte) ([]Message, error) { return fromFrames(wire.ParseJSONArray(data)) }
	}
	return func(data []byte) ([]Message, error) { return fromFrames(wire.ParseTextFrames(data)) }
}

func fromFrames(frames []wire.TextFrame, err error) ([]Message, error) {
	out := make([]Message, 0, len(frames))
	for _, f := range frames {
		m := Message{MID: f.MID, Channel: f.Channel}
		if t, terr := f.Created(); terr == nil {
			m.Created = t
		}
		m.fillBody(f.Text)
		out = append(out, m)
	}
	return out, err
}

// decodeProtobuf reads a version 4 ResponseBatch. Responses other than
// outgoingMessages (channel stats answers) carry no messages.
func decodeProtobuf(data []byte) ([]Message, error) {
	var out []Message
	err := EachOutgoing(data, func(v OutgoingView) error {
		m := Message{
			// The 13 id bytes are the 26 digits read as hex.
			MID:    hex.EncodeToString(v.ID),
			Expiry: time.Duration(v.Expiry) * time.Second,
			Sender: Sender{Type: v.SenderType},
		}
		if len(v.SenderID) > 0 {
			m.Sender.ID = hex.EncodeToString(v.SenderID)
		}
		if v.Created != 0 {
			m.Created = time.Unix(int64(v.Created), 0)
		}
		m.fillBody(v.Body)
		out = append(out, m)
		return nil
	})
	// What came before a broken part is kept, as with text frames.
	return out, err
}

// decodeRPC reads version 5 incoming.message notifications.
func decodeRPC(data []byte) ([]Message, error) {
	in, err := wire.ParseIncomingMessages(data)
	out := make([]Message, 0, len(in))
	for _, im := range in {
		m := Message{MID: im.MID, UserParams: im.UserParams, Dictionary: im.Dictionary}
		var s struct {
			Type SenderType      `json:"type"`
			ID   json.RawMessage `json:"id"`
		}
		if len(im.Sender) > 0 && json.Unmarshal(im.Sender, &s) == nil {
			m.Sender.Type = s.Type
			var id string
			if json.Unmarshal(s.ID, &id) == nil {
				m.Sender.ID = id
			} else if len(s.ID) > 0 {
				m.Sender.ID = string(s.ID) // a number
			}
		}
		m.fillBody(im.Body)
		out = append(out, m)
	}
	return out, err
}

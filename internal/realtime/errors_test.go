package realtime

import (
	"net/http"
	"testing"
)

// The texts are the wire contract (docs/protocol.md, "Errors"); 4011 in
// particular has no other test that reaches it.
func TestProtoErrorTexts(t *testing.T) {
	for _, tc := range []struct {
		err    *protoError
		want   string
		status int
	}{
		{errWrongChannelID, "4010: Wrong Channel Id.", http.StatusBadRequest},
		{errLastMessages, "4011: Couldn't get last messages.", http.StatusBadRequest},
		{errPublicRequired, "4012: Public Channel Id is Required.", http.StatusBadRequest},
		{errWrongRequestData, "4013: Wrong Request Data.", http.StatusBadRequest},
		{errCommandNotAllowed, "4014: Request command is not allowed.", http.StatusBadRequest},
		{errWrongRequestCommand, "4015: Wrong Request Command.", http.StatusBadRequest},
		{errTooManyMessages, "4016: Request exceeded the maximum number of messages.", http.StatusBadRequest},
		{errNoChannelsFound, "4017: No channels found.", http.StatusBadRequest},
		{errTooManyChannelsReq, "4018: Request exceeded the maximum number of channels.", http.StatusBadRequest},
		{errInvalidChannelID, "4019: Request has an invalid channel id.", http.StatusBadRequest},
		{errPrivateNotAllowed, "4020: Private channel is not allowed.", http.StatusBadRequest},
		{errInvalidSignature, "4021: Channel has an invalid signature.", http.StatusBadRequest},
		{errWrongSignature, "4026: Wrong request signature.", http.StatusBadRequest},
		{errPublishRate, "4028: Too many messages, slow down.", http.StatusTooManyRequests},
		{errTooManyConnections, "4029: Too many connections", http.StatusTooManyRequests},
		{errEmptyRequest, "4022: Empty request.", http.StatusBadRequest},
		{errVerificationQuery, "4024: A verification query is required.", http.StatusBadRequest},
		{errClientIDRequired, "4025: Client Id is required.", http.StatusBadRequest},
		{errBadJSONRequest, "4032: Bad JSON request.", http.StatusBadRequest},
		{errNoMethodProperty, "4033: JSON object doesn't have 'method' property.", http.StatusBadRequest},
		{errNoParamsProperty, "4034: JSON object doesn't have 'params' property.", http.StatusBadRequest},
		{errUnknownCommand, "4035: Unknown command.", http.StatusBadRequest},
		{errWrongClientID, "4036: Wrong Client Id.", http.StatusBadRequest},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
		if got := tc.err.httpStatus(); got != tc.status {
			t.Errorf("%s: httpStatus() = %d, want %d", tc.want, got, tc.status)
		}
	}
}

package realtime

import (
	"regexp"
	"testing"
)

// goWords are what encoding/json's and strconv's own error texts are made
// of; a client must never see them.
var goWords = regexp.MustCompile(`Go |struct|uint|int64|int32|float64|json:|realtime\.|wire\.|\[\]|map\[|strconv`)

// A version 5 client's calls with params of the wrong type are answered in
// the protocol's words, naming the member.
func TestV5ClientParamErrorsNameNoGoTypes(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dialRPC(t, "token="+ts.tokenFor(1)+"&jsonRpc=true")
	ts.waitUser(t, 1, 1)
	cases := []struct{ method, params, want string }{
		{"publish", `{"userList":[2],"body":{},"expiry":-1}`, "expiry must be a whole number from 0 to 4294967295"},
		{"publish", `{"userList":[2],"body":{},"expiry":1e100}`, "expiry must be a whole number from 0 to 4294967295"},
		{"publish", `{"userList":[2],"body":{},"expiry":true}`, "expiry must be a whole number from 0 to 4294967295"},
		{"publish", `{"userList":{"a":1},"body":{}}`, "userList must be an array"},
		{"publish", `{"userList":["x"],"body":{}}`, "user ids must be integers"},
		{"publish", `{"channelList":[{"publicId":1}],"body":{}}`, "4021: Channel has an invalid signature."},
		{"getUsersLastSeen", `{"userList":"1,2"}`, "userList must be an array"},
		{"getUsersLastSeen", `{"userList":[{"id":1}]}`, "user ids must be integers"},
		{"subscribeStatusChange", `{"userId":[1]}`, "user ids must be integers"},
		{"subscribeStatusChange", `{"userId":"9223372036854775808"}`, "user ids must be integers"},
		{"publish", `[1]`, "params must be an object"},
	}
	for _, tc := range cases {
		r := c.call(t, tc.method, tc.params)
		if r.Error == nil || r.Error.Code != -32602 || r.Error.Message != tc.want {
			t.Errorf("%s %s: %+v, want -32602 %q", tc.method, tc.params, r.Error, tc.want)
		} else if goWords.MatchString(r.Error.Message) {
			t.Errorf("%s %s: message %q names Go", tc.method, tc.params, r.Error.Message)
		}
	}
}

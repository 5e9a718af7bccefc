package realtime

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
)

func TestVerifiedListsKeyBySignerAndCopy(t *testing.T) {
	var v verifiedLists
	a := channel.NewSigner([]byte("key-a"), channel.SHA1)
	b := channel.NewSigner([]byte("key-a"), channel.SHA1) // same key, another signer (a reload)
	elems := []channel.Element{{ID: channel.ID{1}}}
	v.put(a, "raw", elems)
	got, ok := v.get(a, "raw")
	if !ok || len(got) != 1 || got[0].ID != (channel.ID{1}) {
		t.Fatalf("get after put: %v %v", got, ok)
	}
	got[0].ID = channel.ID{2} // a session scoping its copy
	if again, _ := v.get(a, "raw"); again[0].ID != (channel.ID{1}) {
		t.Fatalf("a caller's change reached the remembered list: %v", again)
	}
	if _, ok := v.get(b, "raw"); ok {
		t.Fatal("a list verified by one signer was taken as verified by another")
	}
	if _, ok := v.get(a, "other"); ok {
		t.Fatal("another list was taken as verified")
	}
}

func TestVerifiedListsBounded(t *testing.T) {
	var v verifiedLists
	s := channel.NewSigner([]byte("k"), channel.SHA1)
	for i := range maxVerifiedLists + 100 {
		v.put(s, strconv.Itoa(i), nil)
	}
	if n := len(v.m); n > maxVerifiedLists {
		t.Fatalf("%d lists remembered, at most %d", n, maxVerifiedLists)
	}
	v.put(s, strings.Repeat("x", maxVerifiedListLen+1), nil)
	if _, ok := v.get(s, strings.Repeat("x", maxVerifiedListLen+1)); ok {
		t.Fatal("a list longer than maxVerifiedListLen was remembered")
	}
}

// A list that passed once does not let a tampered list through: only exact
// lists that passed are remembered.
func TestLongPollTamperedListRefusedAfterGoodOne(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.PollTimeout = 50 * time.Millisecond })
	ch := newChannel(t)
	q := ts.subQuery([]channel.ID{ch}, "")
	for range 2 {
		resp, _ := longPoll(t, ts.URL+"/sub/?"+q)
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("good list: %d", resp.StatusCode)
		}
	}
	signed := ts.signer.SignChannel(ch)
	tampered := signed[:len(signed)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", signed[len(signed)-1])+1)%16])
	resp, body := longPoll(t, ts.URL+"/sub/?CHANNEL_ID="+url.QueryEscape(tampered)+"&revision=19")
	if resp.StatusCode == http.StatusNotModified || resp.StatusCode == http.StatusOK || !strings.HasPrefix(body, "4010") {
		t.Fatalf("tampered list after a good one: %d %q", resp.StatusCode, body)
	}
}

package bench

import (
	"testing"
	"time"
)

// TestStormRecoversExactlyWhatWasMissed runs a small storm against an
// in-process server: every subscriber must get every publish sent while it
// was away, once, through the replay after reconnecting with its mid.
func TestStormRecoversExactlyWhatWasMissed(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{ModeFanout, ModePrivate} {
		cfg := testConfig(startServer(t))
		cfg.Mode = mode
		cfg.Storm = true
		cfg.StormWindow = 200 * time.Millisecond
		cfg.Rate, cfg.Duration = 20, 500*time.Millisecond // 10 missed, well within the replay cap
		res, err := Run(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		perPublish := int64(20)
		if mode == ModePrivate {
			perPublish = 1
		}
		checkDelivered(t, res, perPublish)
		st := res.Storm
		if st == nil {
			t.Fatal("no storm result")
		}
		if st.Dropped != 20 || st.Reconnected != 20 || st.Failed != 0 || len(st.Errors) != 0 {
			t.Errorf("%s storm: %+v", mode, st)
		}
		if st.MissedPerClient != res.Publish.Sent {
			t.Errorf("%s storm: missed %d per client, sent %d", mode, st.MissedPerClient, res.Publish.Sent)
		}
		if st.RSSSteady <= 0 || st.RSSPeak <= 0 || st.PeakRatio <= 0 || st.RecoverSec <= 0 {
			t.Errorf("%s storm figures not filled in: %+v", mode, st)
		}
	}
}

func TestStormConfig(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1")
	cfg.Storm = true
	cfg.Transport = TransportLP
	if err := cfg.Check(); err == nil {
		t.Error("a long-polling storm was accepted")
	}
	cfg.Transport = TransportWS
	if err := cfg.Check(); err != nil {
		t.Errorf("a WebSocket storm was refused: %v", err)
	}
}

func TestSubtractCounts(t *testing.T) {
	got := subtractCounts(
		[]ErrorCount{{"timeout", 3}, {"refused", 1}, {"reset", 2}},
		[]ErrorCount{{"timeout", 3}, {"reset", 1}},
	)
	want := []ErrorCount{{"refused", 1}, {"reset", 1}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

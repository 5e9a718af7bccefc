package redistest

import "testing"

func TestStartStopKeepsData(t *testing.T) {
	s := Start(t)
	if r, err := s.Do("SET", "k", "v"); err != nil || r != "+OK" {
		t.Fatalf("SET = %q, %v", r, err)
	}
	s.Stop()
	if err := ping(s.Addr); err == nil {
		t.Fatal("server still answers after Stop")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Do("GET", "k"); err != nil || r != "$1" {
		t.Fatalf("GET after restart = %q, %v; want the value kept", r, err)
	}
}

package memory

import (
	"context"
	"testing"

	"github.com/pushpull/pushpull/internal/broker/brokertest"
)

func BenchmarkHistory(b *testing.B) {
	br, err := New(Options{HistoryPerChannel: 1000}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close(context.Background())
	brokertest.BenchHistory(b, br)
}

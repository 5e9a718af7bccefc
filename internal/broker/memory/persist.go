package memory

import (
	"bufio"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

const (
	stateFile    = "ids.json"
	snapshotFile = "history.snapshot"
	// snapshotVersion changes whenever the snapshot layout does; a snapshot of
	// another version is refused rather than misread.
	snapshotVersion = 1
)

// idState is what keeps message ids monotonic across restarts. Clean is true
// only between a graceful shutdown and the next start: then the counter
// continues. After a crash the counter is unknown, so a new epoch (the start
// time, greater than the old one) is taken; ids still only grow.
type idState struct {
	Epoch uint64 `json:"epoch"`
	Last  uint64 `json:"last"`
	Clean bool   `json:"clean"`
}

type snapshot struct {
	Version  int
	Messages []snapMessage
	Channels []snapChannel
	// Seen is the users' last-seen times. Added within version 1: gob
	// leaves it empty when reading an older snapshot.
	Seen []snapSeen
}

type snapSeen struct {
	User channel.ID
	Unix int64
}

type snapMessage struct {
	Epoch, Seq uint64
	Receivers  []message.Receiver
	Body       []byte
	Created    int64 // unix nanoseconds
	Expiry     uint32
	SenderType int32
	SenderID   channel.ID
	// Added within version 1; gob leaves them zero in older snapshots.
	SenderUser int64
	UserParams map[channel.ID][]byte
	Dictionary []byte
}

type snapChannel struct {
	ID       channel.ID
	Messages []int // indexes into snapshot.Messages, ascending by id
}

func (b *Broker) restore() error {
	if b.opt.DataDir == "" {
		g, err := message.NewGenerator(uint64(b.now().Unix()), 0)
		b.gen = g
		return err
	}
	if err := os.MkdirAll(b.opt.DataDir, 0o700); err != nil {
		return fmt.Errorf("memory broker: create data dir: %w", err)
	}
	st, err := readState(filepath.Join(b.opt.DataDir, stateFile))
	if err != nil {
		return err
	}
	next := idState{Epoch: st.Epoch, Last: st.Last}
	if !st.Clean {
		// First start, or the last run did not shut down cleanly.
		next = idState{Epoch: max(uint64(b.now().Unix()), st.Epoch+1)}
		if st.Epoch != 0 {
			b.log.Warn("previous run did not shut down cleanly; starting a new message id epoch",
				"old_epoch", st.Epoch, "new_epoch", next.Epoch)
		}
	}
	if b.gen, err = message.NewGenerator(next.Epoch, next.Last); err != nil {
		return fmt.Errorf("memory broker: %w", err)
	}
	// Mark the state dirty before serving: a crash from here on must not
	// reuse the counter.
	if err := writeState(b.opt.DataDir, next); err != nil {
		return err
	}
	n, err := b.loadSnapshot(filepath.Join(b.opt.DataDir, snapshotFile))
	if err != nil {
		return err
	}
	if n > 0 {
		b.log.Info("restored history snapshot", "messages", n, "channels", len(b.history))
	}
	return nil
}

func readState(path string) (idState, error) {
	var st idState
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("memory broker: read id state: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("memory broker: id state %s is corrupt: %w", path, err)
	}
	return st, nil
}

func writeState(dir string, st idState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("memory broker: encode id state: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, stateFile), data)
}

func (b *Broker) loadSnapshot(path string) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("memory broker: open snapshot: %w", err)
	}
	defer f.Close()
	var snap snapshot
	if err := gob.NewDecoder(bufio.NewReader(f)).Decode(&snap); err != nil {
		return 0, fmt.Errorf("memory broker: snapshot %s is corrupt (move it away to start without history): %w", path, err)
	}
	if snap.Version != snapshotVersion {
		return 0, fmt.Errorf("memory broker: snapshot %s has version %d, want %d", path, snap.Version, snapshotVersion)
	}
	now := b.now()
	msgs := make([]*message.Message, len(snap.Messages))
	for i, sm := range snap.Messages {
		msgs[i] = &message.Message{
			ID:         message.ID{Epoch: sm.Epoch, Seq: sm.Seq},
			Receivers:  sm.Receivers,
			Body:       sm.Body,
			Created:    time.Unix(0, sm.Created),
			Expiry:     sm.Expiry,
			Sender:     message.Sender{Type: message.SenderType(sm.SenderType), ID: sm.SenderID, UserID: sm.SenderUser},
			UserParams: sm.UserParams,
			Dictionary: sm.Dictionary,
		}
	}
	b.seenMu.Lock()
	for _, s := range snap.Seen {
		b.seen[s.User] = s.Unix
	}
	b.seenMu.Unlock()
	restored := 0
	for _, sc := range snap.Channels {
		l := &channelLog{}
		for _, i := range sc.Messages {
			if i < 0 || i >= len(msgs) {
				return 0, fmt.Errorf("memory broker: snapshot %s refers to message %d of %d", path, i, len(msgs))
			}
			if m := msgs[i]; b.expiresAt(m).After(now) {
				l.msgs = append(l.msgs, m)
			}
		}
		slices.SortFunc(l.msgs, entriesByID)
		if over := len(l.msgs) - b.opt.HistoryPerChannel; over > 0 {
			l.msgs = l.msgs[over:]
		}
		if len(l.msgs) > 0 {
			b.history[sc.ID] = l
			restored += len(l.msgs)
		}
	}
	b.stored = restored
	if b.opt.MaxStored > 0 {
		for ch, l := range b.history {
			for _, m := range l.msgs {
				b.order = append(b.order, storedEntry{ch: ch, id: m.ID})
			}
		}
		slices.SortFunc(b.order, func(a, c storedEntry) int { return a.id.Compare(c.id) })
		b.enforceMaxStored()
	}
	return restored, nil
}

// persist writes the snapshot, then the clean id state. The order matters: a
// crash between the two leaves the state dirty, so the next start takes a new
// epoch and still restores the snapshot.
func (b *Broker) persist() error {
	if b.opt.DataDir == "" {
		return nil
	}
	snap := snapshot{Version: snapshotVersion}
	index := make(map[*message.Message]int)
	b.histMu.RLock()
	for ch, l := range b.history {
		sc := snapChannel{ID: ch, Messages: make([]int, 0, len(l.msgs))}
		for _, m := range l.msgs {
			i, ok := index[m]
			if !ok {
				i = len(snap.Messages)
				index[m] = i
				snap.Messages = append(snap.Messages, snapMessage{
					Epoch: m.ID.Epoch, Seq: m.ID.Seq, Receivers: m.Receivers, Body: m.Body,
					Created: m.Created.UnixNano(), Expiry: m.Expiry,
					SenderType: int32(m.Sender.Type), SenderID: m.Sender.ID, SenderUser: m.Sender.UserID,
					UserParams: m.UserParams, Dictionary: m.Dictionary,
				})
			}
			sc.Messages = append(sc.Messages, i)
		}
		snap.Channels = append(snap.Channels, sc)
	}
	b.histMu.RUnlock()
	b.seenMu.Lock()
	for u, t := range b.seen {
		snap.Seen = append(snap.Seen, snapSeen{User: u, Unix: t})
	}
	b.seenMu.Unlock()

	path := filepath.Join(b.opt.DataDir, snapshotFile)
	if err := writeAtomic(path, func(w *bufio.Writer) error { return gob.NewEncoder(w).Encode(&snap) }); err != nil {
		return err
	}
	last := b.gen.Last()
	st := idState{Epoch: last.Epoch, Last: last.Seq, Clean: true}
	if err := writeState(b.opt.DataDir, st); err != nil {
		return err
	}
	b.log.Info("saved history snapshot", "messages", len(snap.Messages), "channels", len(snap.Channels))
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	return writeAtomic(path, func(w *bufio.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeAtomic writes through a temporary file and renames it into place, so a
// reader sees the old file or the new one, never half of one.
func writeAtomic(path string, write func(*bufio.Writer) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriter(tmp)
	if err := write(w); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: makes the rename itself durable
		d.Close()
	}
	return nil
}

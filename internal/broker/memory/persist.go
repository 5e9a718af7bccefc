package memory

import (
	"bufio"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	// another version is refused rather than misread. Version 1 was one gob
	// value holding everything; version 2 is a stream of records, written
	// one at a time, so that saving takes little memory besides the history.
	snapshotVersion = 2
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

// snapshot is the first gob value of a snapshot file. In version 1 it holds
// everything; in version 2 only Version, and snapRecords follow.
type snapshot struct {
	Version  int
	Messages []snapMessage
	Channels []snapChannel
	// Seen is the users' last-seen times. Added within version 1: gob
	// leaves it empty when reading an older snapshot.
	Seen []snapSeen
}

// snapHeader is how version 2 starts: it decodes as a snapshot.
type snapHeader struct {
	Version int
}

// snapRecord is one value of a version 2 snapshot after its header: every
// message comes before the channels that list it.
type snapRecord struct {
	Message *snapMessage
	Channel *snapChannel
	Seen    *snapSeen
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
	Messages []int // version 1: indexes into snapshot.Messages, ascending by id
	// Version 2: the ids of the channel's messages, ascending.
	Epochs, Seqs []uint64
	// The newest message dropped to bound history, and until when it
	// counts as lost (unix nanoseconds); zero if none.
	LostEpoch, LostSeq uint64
	LostUntil          int64
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
			b.log.Warn("previous run did not shut down cleanly (killed or crashed): its history is lost and a new message id epoch starts; stop the server with SIGTERM and give it longer than --shutdown-timeout",
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
	corrupt := func(err error) error {
		return fmt.Errorf("memory broker: snapshot %s is corrupt (move it away to start without history): %w", path, err)
	}
	dec := gob.NewDecoder(bufio.NewReader(f))
	var snap snapshot
	if err := dec.Decode(&snap); err != nil {
		return 0, corrupt(err)
	}
	var channels []snapChannel
	msgs := make(map[message.ID]*message.Message)
	switch snap.Version {
	case 1:
		byIndex := make([]*message.Message, len(snap.Messages))
		for i := range snap.Messages {
			m := snap.Messages[i].message()
			byIndex[i], msgs[m.ID] = m, m
		}
		for _, sc := range snap.Channels {
			for _, i := range sc.Messages {
				if i < 0 || i >= len(byIndex) {
					return 0, fmt.Errorf("memory broker: snapshot %s refers to message %d of %d", path, i, len(byIndex))
				}
				sc.Epochs = append(sc.Epochs, byIndex[i].ID.Epoch)
				sc.Seqs = append(sc.Seqs, byIndex[i].ID.Seq)
			}
			channels = append(channels, sc)
		}
		b.restoreSeen(snap.Seen)
	case snapshotVersion:
		for {
			var rec snapRecord
			err := dec.Decode(&rec)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return 0, corrupt(err)
			}
			switch {
			case rec.Message != nil:
				m := rec.Message.message()
				msgs[m.ID] = m
			case rec.Channel != nil:
				channels = append(channels, *rec.Channel)
			case rec.Seen != nil:
				b.restoreSeen([]snapSeen{*rec.Seen})
			}
		}
	default:
		return 0, fmt.Errorf("memory broker: snapshot %s has version %d, want %d", path, snap.Version, snapshotVersion)
	}
	now := b.now()
	restored := 0
	for _, sc := range channels {
		if len(sc.Epochs) != len(sc.Seqs) {
			return 0, corrupt(fmt.Errorf("channel %s lists %d epochs and %d counters", sc.ID, len(sc.Epochs), len(sc.Seqs)))
		}
		l := &channelLog{}
		if until := time.Unix(0, sc.LostUntil); sc.LostUntil != 0 && until.After(now) {
			l.lost, l.lostUntil = message.ID{Epoch: sc.LostEpoch, Seq: sc.LostSeq}, until
		}
		for i := range sc.Epochs {
			m := msgs[message.ID{Epoch: sc.Epochs[i], Seq: sc.Seqs[i]}]
			if m == nil {
				return 0, corrupt(fmt.Errorf("channel %s lists message %d/%d that it does not hold", sc.ID, sc.Epochs[i], sc.Seqs[i]))
			}
			if b.expiresAt(m).After(now) {
				l.msgs = append(l.msgs, m)
				l.bytes += messageSize(m)
				b.storedBytes += entryBytes(m) // dropOldest takes back what it drops
			}
		}
		slices.SortFunc(l.msgs, entriesByID)
		drop := max(len(l.msgs)-b.opt.HistoryPerChannel, 0)
		if b.opt.ChannelMaxBytes > 0 {
			for over := l.bytes - b.opt.ChannelMaxBytes; drop < len(l.msgs) && over > 0; drop++ {
				over -= messageSize(l.msgs[drop])
			}
		}
		if drop > 0 {
			b.dropOldest(l, drop)
		}
		if len(l.msgs) > 0 || !l.lost.IsZero() {
			b.history[sc.ID] = l
			restored += len(l.msgs)
		}
	}
	b.stored = restored
	if b.globalCaps() {
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

func (b *Broker) restoreSeen(seen []snapSeen) {
	b.seenMu.Lock()
	defer b.seenMu.Unlock()
	for _, s := range seen {
		b.seen[s.User] = s.Unix
	}
}

func (sm *snapMessage) message() *message.Message {
	return &message.Message{
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

func snapMessageOf(m *message.Message) snapMessage {
	return snapMessage{
		Epoch: m.ID.Epoch, Seq: m.ID.Seq, Receivers: m.Receivers, Body: m.Body,
		Created: m.Created.UnixNano(), Expiry: m.Expiry,
		SenderType: int32(m.Sender.Type), SenderID: m.Sender.ID, SenderUser: m.Sender.UserID,
		UserParams: m.UserParams, Dictionary: m.Dictionary,
	}
}

// persist writes the snapshot, then the clean id state. The order matters: a
// crash between the two leaves the state dirty, so the next start takes a new
// epoch and still restores the snapshot.
func (b *Broker) persist() error {
	if b.opt.DataDir == "" {
		return nil
	}
	path := filepath.Join(b.opt.DataDir, snapshotFile)
	var msgs, chans int
	err := writeAtomic(path, func(w *bufio.Writer) error {
		var err error
		msgs, chans, err = b.writeSnapshot(w)
		return err
	})
	if err != nil {
		return err
	}
	last := b.gen.Last()
	st := idState{Epoch: last.Epoch, Last: last.Seq, Clean: true}
	if err := writeState(b.opt.DataDir, st); err != nil {
		return err
	}
	b.log.Info("saved history snapshot", "messages", msgs, "channels", chans)
	return nil
}

// writeSnapshot streams the history to w one record at a time: besides the
// history itself it holds one record and the set of messages written, never a
// copy of the whole.
func (b *Broker) writeSnapshot(w io.Writer) (msgs, chans int, err error) {
	enc := gob.NewEncoder(w)
	if err := enc.Encode(snapHeader{Version: snapshotVersion}); err != nil {
		return 0, 0, fmt.Errorf("encode snapshot header: %w", err)
	}
	b.histMu.RLock()
	defer b.histMu.RUnlock()
	written := make(map[*message.Message]struct{})
	for ch, l := range b.history {
		for _, m := range l.msgs {
			if _, ok := written[m]; ok {
				continue
			}
			written[m] = struct{}{}
			sm := snapMessageOf(m)
			if err := enc.Encode(snapRecord{Message: &sm}); err != nil {
				return 0, 0, fmt.Errorf("encode message %s: %w", m.ID, err)
			}
		}
		sc := snapChannel{ID: ch, Epochs: make([]uint64, len(l.msgs)), Seqs: make([]uint64, len(l.msgs))}
		for i, m := range l.msgs {
			sc.Epochs[i], sc.Seqs[i] = m.ID.Epoch, m.ID.Seq
		}
		if !l.lost.IsZero() {
			sc.LostEpoch, sc.LostSeq, sc.LostUntil = l.lost.Epoch, l.lost.Seq, l.lostUntil.UnixNano()
		}
		if err := enc.Encode(snapRecord{Channel: &sc}); err != nil {
			return 0, 0, fmt.Errorf("encode channel: %w", err)
		}
		chans++
	}
	b.seenMu.Lock()
	defer b.seenMu.Unlock()
	for u, t := range b.seen {
		if err := enc.Encode(snapRecord{Seen: &snapSeen{User: u, Unix: t}}); err != nil {
			return 0, 0, fmt.Errorf("encode last seen: %w", err)
		}
	}
	return len(written), chans, nil
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

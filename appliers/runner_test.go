package appliers

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeMsg is a jetstream.Msg with only its delivery number.
type fakeMsg struct {
	jetstream.Msg
	consumerSeq uint64
}

func (m fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Consumer: m.consumerSeq}}, nil
}

func msgs(seqs ...uint64) []jetstream.Msg {
	out := make([]jetstream.Msg, len(seqs))
	for i, s := range seqs {
		out[i] = fakeMsg{consumerSeq: s}
	}
	return out
}

func TestDeliveryGap(t *testing.T) {
	for _, tc := range []struct {
		msgs []jetstream.Msg
		next uint64
		gap  bool
	}{
		{msgs(5, 6, 7), 5, false},
		{msgs(1), 1, false},
		{msgs(6, 7), 5, true},    // delivery 5 never arrived
		{msgs(5, 7, 8), 5, true}, // a hole inside the batch
		{msgs(4, 5), 5, true},    // numbering went backwards: not ours to trust
	} {
		if got := deliveryGap(tc.msgs, tc.next); got != tc.gap {
			t.Errorf("deliveryGap(%v, %d) = %v, want %v", tc.msgs, tc.next, got, tc.gap)
		}
	}
}

package streams

import (
	"fmt"

	"github.com/ferry-dev/ferry/streams/pb"
)

// FormatVersion is the version of the event format this build writes. Readers
// refuse a newer one rather than misread it.
const FormatVersion = 1

// ContentType is set as a message header so that other consumers can tell
// the payload's format without guessing.
const ContentType = "application/x-protobuf; proto=ferry.v1.Batch"

// Encode marshals events into one message payload.
func Encode(events ...*pb.Event) ([]byte, error) {
	if err := checkUTF8(events); err != nil {
		return nil, fmt.Errorf("encoding event batch: %w", err)
	}
	// The generated vtprotobuf marshaller writes the same bytes as
	// proto.Marshal, several times faster (see docs/FORMAT.md).
	b, err := (&pb.Batch{Version: FormatVersion, Events: events}).MarshalVT()
	if err != nil {
		return nil, fmt.Errorf("encoding event batch: %w", err)
	}
	return b, nil
}

// Decode unmarshals a message payload. The strings of the result share
// data's memory (no copy per column name and value), so data must not be
// modified while the batch is in use.
func Decode(data []byte) (*pb.Batch, error) {
	var b pb.Batch
	if err := b.UnmarshalVTUnsafe(data); err != nil {
		return nil, fmt.Errorf("decoding event batch: %w", err)
	}
	if err := checkUTF8(b.Events); err != nil {
		return nil, fmt.Errorf("decoding event batch: %w", err)
	}
	if b.Version == 0 || b.Version > FormatVersion {
		return nil, fmt.Errorf("decoding event batch: format version %d is not supported by this ferry (knows 1..%d)", b.Version, FormatVersion)
	}
	return &b, nil
}

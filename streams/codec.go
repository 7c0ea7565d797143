package streams

import (
	"fmt"

	"google.golang.org/protobuf/proto"

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
	b, err := proto.Marshal(&pb.Batch{Version: FormatVersion, Events: events})
	if err != nil {
		return nil, fmt.Errorf("encoding event batch: %w", err)
	}
	return b, nil
}

// Decode unmarshals a message payload.
func Decode(data []byte) (*pb.Batch, error) {
	var b pb.Batch
	if err := proto.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("decoding event batch: %w", err)
	}
	if b.Version == 0 || b.Version > FormatVersion {
		return nil, fmt.Errorf("decoding event batch: format version %d is not supported by this ferry (knows 1..%d)", b.Version, FormatVersion)
	}
	return &b, nil
}

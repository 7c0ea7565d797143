package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

func eventsCmd() *cobra.Command {
	var (
		cfgPath, source, table string
		keys                   []string
		follow                 bool
		fromSeq                uint64
	)
	cmd := &cobra.Command{
		Use:   "events --config F --source N [--table T] [--key col=value ...] [--follow] [--from-sequence N]",
		Short: "Print a source's events as JSON lines",
		Long: `Prints the events of a source's change stream as JSON lines, one event a
line: the stream sequence, subject, lane and storage time of its message, and
the event in protobuf's JSON form with the field names of ferry.proto
(docs/replay.md). --key keeps events whose key has these values (as text:
42, abc, 1.50, a UUID in its usual form). Without --follow it stops at the
end of the stream.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			if _, ok := cfg.Source(source); !ok {
				return usageErr(fmt.Errorf("--source %q: no such source in %s", source, cfgPath))
			}
			want := map[string]string{}
			for _, k := range keys {
				n, v, ok := strings.Cut(k, "=")
				if !ok || n == "" {
					return usageErr(fmt.Errorf("--key %q: want column=value", k))
				}
				want[n] = v
			}
			conn, err := streams.Connect(cmd.Context(), cfg.NATS, newLogger(cfg.Log))
			if err != nil {
				return err
			}
			defer conn.Close()
			w := bufio.NewWriter(cmd.OutOrStdout())
			defer w.Flush()
			return printEvents(cmd.Context(), conn.JS, w, source, table, want, follow, fromSeq)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "config file (YAML)")
	cmd.Flags().StringVar(&source, "source", "", "source name")
	cmd.Flags().StringVar(&table, "table", "", "only this table (as the source names it, e.g. public.orders)")
	cmd.Flags().StringArrayVar(&keys, "key", nil, "only events whose key column has this value: col=value (repeatable)")
	cmd.Flags().BoolVar(&follow, "follow", false, "keep printing new events until interrupted")
	cmd.Flags().Uint64Var(&fromSeq, "from-sequence", 0, "start at this stream sequence")
	_ = cmd.MarkFlagRequired("source")
	return cmd
}

// eventLine is one line of `ferry events`.
type eventLine struct {
	Seq     uint64          `json:"seq"`
	Subject string          `json:"subject"`
	Lane    int             `json:"lane"`
	Time    time.Time       `json:"time"`
	Event   json.RawMessage `json:"event"`
}

var eventJSON = protojson.MarshalOptions{UseProtoNames: true}

func printEvents(ctx context.Context, js jetstream.JetStream, w *bufio.Writer, source, table string, want map[string]string, follow bool, fromSeq uint64) error {
	filter := streams.EventSubjects(source)
	if table != "" {
		filter = "ferry.ev." + streams.Token(source) + "." + streams.Token(table) + ".*"
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}
	if fromSeq > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = fromSeq
	}
	cons, err := js.OrderedConsumer(ctx, streams.StreamName(source), cfg)
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", streams.StreamName(source), err)
	}
	if !follow {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("reading stream %s: %w", streams.StreamName(source), err)
		}
		if info.NumPending == 0 {
			return nil
		}
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("reading stream %s: %w", streams.StreamName(source), err)
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("reading message metadata: %w", err)
			}
			if err := printMessage(w, m, md, want); err != nil {
				return err
			}
			if md.NumPending == 0 && !follow {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("reading stream %s: %w", streams.StreamName(source), err)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func printMessage(w io.Writer, m jetstream.Msg, md *jetstream.MsgMetadata, want map[string]string) error {
	b, err := streams.Decode(m.Data())
	if err != nil {
		return fmt.Errorf("message %d on %s: %w", md.Sequence.Stream, m.Subject(), err)
	}
	_, lane, _ := streams.TableFromSubject(m.Subject())
	for _, e := range b.Events {
		if !keyMatches(e.GetKey(), want) {
			continue
		}
		ev, err := eventJSON.Marshal(e)
		if err != nil {
			return fmt.Errorf("message %d: %w", md.Sequence.Stream, err)
		}
		line, err := json.Marshal(eventLine{Seq: md.Sequence.Stream, Subject: m.Subject(), Lane: lane, Time: md.Timestamp.UTC(), Event: ev})
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s\n", line); err != nil {
			return err
		}
	}
	return nil
}

// keyMatches reports whether key has every wanted column at the wanted
// text.
func keyMatches(key *pb.Row, want map[string]string) bool {
	for n, v := range want {
		found := false
		for i, kn := range key.GetNames() {
			if kn == n && i < len(key.GetValues()) && plainText(key.GetValues()[i]) == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// plainText renders a key value the way a user types it.
func plainText(v *pb.Value) string {
	switch k := v.GetKind().(type) {
	case *pb.Value_Text:
		return k.Text
	case *pb.Value_Native:
		return k.Native
	case *pb.Value_Decimal:
		return k.Decimal
	case *pb.Value_Int:
		return strconv.FormatInt(k.Int, 10)
	case *pb.Value_Uint:
		return strconv.FormatUint(k.Uint, 10)
	case *pb.Value_Bool:
		return strconv.FormatBool(k.Bool)
	case *pb.Value_Uuid:
		if u := k.Uuid; len(u) == 16 {
			return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
		}
	}
	b, _ := protojson.Marshal(v)
	return string(b)
}

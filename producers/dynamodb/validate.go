package dynamodb

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/dynamo"
	"github.com/ferry-dev/ferry/validate"
)

func init() { validate.RegisterSource("dynamodb", openValidator) }

// validator reads a DynamoDB source for `ferry validate`: each table the
// producer moves, in parallel Scan segments (one range per segment), and
// items by key with BatchGetItem, for the lookups of the reverse pass,
// --live re-checks and --repair's fresh reads. Items are converted as the
// producer converts them (internal/dynamo), so a row reads as it travelled.
type validator struct {
	*dynamo.TableReader
	cfg config.Source
}

func openValidator(ctx context.Context, cfg config.Source, _ *slog.Logger) (validate.Source, error) {
	if len(cfg.Tables) == 0 {
		return nil, fmt.Errorf("source %s: tables: name at least one DynamoDB table", cfg.Name)
	}
	v := &validator{cfg: cfg, TableReader: &dynamo.TableReader{
		DB:       dynamodb.NewFromConfig(dynamo.AWSConfig(cfg.DynamoDB.AWSAccess)),
		Access:   cfg.DynamoDB.AWSAccess,
		Side:     "source " + cfg.Name,
		Segments: cfg.DynamoDB.ScanSegments,
	}}
	if err := v.Ping(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// Tables describes the tables the producer moves.
func (v *validator) Tables(ctx context.Context) ([]validate.Table, error) {
	var out []validate.Table
	for _, name := range v.cfg.Tables {
		t, err := v.Table(ctx, name)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// Close has nothing to release: the SDK client holds no connection of its own.
func (v *validator) Close() {}

package dynamodb

import (
	"context"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/dynamo"
	"github.com/ferry-dev/ferry/validate"
)

func init() {
	validate.RegisterTarget("dynamodb", openValidator)
	validate.RegisterTarget("alternator", openValidator)
}

// validator reads a DynamoDB or Alternator target for `ferry validate`:
// items by key with BatchGetItem (lookup mode: every source item is looked
// up), and the table in Scan segments for the reverse pass that finds the
// items only the target has. It only reads; unlike the applier it creates
// nothing. The engine gives it the table and key attribute names already
// renamed (targets[].tables, targets[].renames) and matches the items'
// other attributes to the source's by name, renames applied, as the
// applier writes them.
type validator struct {
	*dynamo.TableReader
}

func openValidator(ctx context.Context, cfg config.Target, _ *slog.Logger) (validate.Target, error) {
	v := &validator{&dynamo.TableReader{
		DB:     dynamodb.NewFromConfig(dynamo.AWSConfig(cfg.DynamoDB.AWSAccess)),
		Access: cfg.DynamoDB.AWSAccess,
		Side:   "target " + cfg.Name,
		// The target's table has no configured segment count; 8 is the
		// source's default.
		Segments: 8,
	}}
	if err := v.Ping(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// Close has nothing to release: the SDK client holds no connection of its own.
func (v *validator) Close() {}

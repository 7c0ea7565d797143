package dynamodb

import (
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ferry-dev/ferry/internal/dynamo"
	"github.com/ferry-dev/ferry/internal/preflight"
)

// CheckTables is `ferry check` for the target: the state table is there
// (open made it), and each source table either exists with the same key
// (after renames) or will be created from the source's description.
func (t *target) CheckTables(ctx context.Context, source string, tables []preflight.Table) []preflight.Finding {
	comp := preflight.TargetComponent(t.cfg.Name)
	fs := []preflight.Finding{{Component: comp, Check: "connection", Severity: preflight.OK,
		Message: fmt.Sprintf("%s answers at %s; lane watermarks in table %s", t.cfg.Type, dynamo.Where(t.dc.AWSAccess), t.dc.StateTable)}}
	for _, st := range tables {
		dst := t.tableName(st.Name)
		out, err := t.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(dst)})
		switch {
		case dynamo.IsNotFound(err):
			fs = append(fs, preflight.Finding{Component: comp, Check: "table", Severity: preflight.Warn,
				Message: fmt.Sprintf("table %s does not exist; ferry will create it from the source's description of %s (keys, indexes, billing mode, TTL)", dst, st.Name),
				Fix:     "nothing to do, or create the table yourself first"})
			continue
		case err != nil:
			fs = append(fs, preflight.Finding{Component: comp, Check: "table", Severity: preflight.Block,
				Message: fmt.Sprintf("describing table %s: %v", dst, dynamo.Scrub(err, t.dc.AWSAccess)), Fix: "check the target's endpoint, region and credentials"})
			continue
		}
		want := make([]string, len(st.Key))
		rename := t.renamer(st.Name, dst)
		for i, k := range st.Key {
			want[i] = k
			if rename != nil {
				want[i] = rename(k)
			}
		}
		var got []string
		for _, k := range out.Table.KeySchema {
			if k.KeyType == types.KeyTypeHash {
				got = append([]string{aws.ToString(k.AttributeName)}, got...)
			} else {
				got = append(got, aws.ToString(k.AttributeName))
			}
		}
		if !slices.Equal(got, want) {
			fs = append(fs, preflight.Finding{Component: comp, Check: "key", Severity: preflight.Block,
				Message: fmt.Sprintf("table %s has key %v but the source's %s has %v", dst, got, st.Name, want),
				Fix:     fmt.Sprintf("drop table %s so that ferry creates it with the source's key, or map the table elsewhere (targets[].tables)", dst)})
			continue
		}
		fs = append(fs, preflight.Finding{Component: comp, Check: "table", Severity: preflight.OK, Message: fmt.Sprintf("table %s exists with key %v", dst, got)})
	}
	return fs
}

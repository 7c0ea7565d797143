package dynamodb

import (
	"context"
	"fmt"

	"github.com/ferry-dev/ferry/internal/dynamo"
	"github.com/ferry-dev/ferry/internal/preflight"
)

// Check is `ferry check` for a DynamoDB source: the endpoint answers, each
// table exists, and for change capture each has a stream carrying new
// images (or ferry may turn one on).
func (p *producer) Check(ctx context.Context) ([]preflight.Finding, []preflight.Table) {
	comp := preflight.SourceComponent(p.cfg.Name)
	where := dynamo.Where(p.dc.AWSAccess)
	if err := p.Ping(ctx); err != nil {
		return []preflight.Finding{{Component: comp, Check: "connection", Severity: preflight.Block,
			Message: fmt.Sprintf("cannot reach DynamoDB at %s: %v", where, err),
			Fix:     "check sources[].dynamodb.endpoint/region and the credentials (accessKey/secretKey or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"}}, nil
	}
	fs := []preflight.Finding{{Component: comp, Check: "connection", Severity: preflight.OK, Message: "DynamoDB answers at " + where}}
	var tables []preflight.Table
	for _, name := range p.cfg.Tables {
		t, err := p.describe(ctx, name)
		if err != nil {
			fs = append(fs, preflight.Finding{Component: comp, Check: "table", Severity: preflight.Block, Message: dynamo.Scrub(err, p.dc.AWSAccess).Error(),
				Fix: "create the table or correct sources[].tables (names are case-sensitive)"})
			continue
		}
		fs = append(fs, preflight.Finding{Component: comp, Check: "table", Severity: preflight.OK,
			Message: fmt.Sprintf("table %s: key %v, about %d items", name, t.keyNames, t.desc.ItemCount)})
		if p.cfg.HasCDC() {
			fs = append(fs, p.checkStream(t))
		}
		pt := preflight.Table{Name: name, Key: t.keyNames, Changes: p.cfg.HasCDC()}
		for _, a := range t.desc.Attributes {
			pt.Columns = append(pt.Columns, preflight.Column{Name: a.Name, Type: a.Type, NotNull: contains(t.keyNames, a.Name)})
		}
		tables = append(tables, pt)
	}
	return fs, tables
}

func (p *producer) checkStream(t *table) preflight.Finding {
	f := preflight.Finding{Component: preflight.SourceComponent(p.cfg.Name), Check: "stream"}
	switch v := t.desc.StreamView; {
	case v == "NEW_IMAGE" || v == "NEW_AND_OLD_IMAGES":
		f.Severity, f.Message = preflight.OK, fmt.Sprintf("table %s has a %s stream", t.name, v)
	case v == "" && p.dc.EnableStream:
		f.Severity, f.Message = preflight.Warn, fmt.Sprintf("table %s has no stream; ferry will enable a NEW_IMAGE stream (enableStream: true)", t.name)
		f.Fix = "nothing to do; disable the stream yourself after the migration if it is not wanted"
	case v == "":
		f.Severity, f.Message = preflight.Block, fmt.Sprintf("table %s has no stream, and mode %s needs one", t.name, p.cfg.Mode)
		f.Fix = fmt.Sprintf("aws dynamodb update-table --table-name %s --stream-specification StreamEnabled=true,StreamViewType=NEW_IMAGE\nor set sources[].dynamodb.enableStream: true", t.name)
	default:
		f.Severity, f.Message = preflight.Block, fmt.Sprintf("table %s has a %s stream, which does not carry the items' new images", t.name, v)
		f.Fix = "disable the stream and enable it again with StreamViewType=NEW_IMAGE or NEW_AND_OLD_IMAGES"
	}
	return f
}

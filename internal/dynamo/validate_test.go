package dynamo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams/pb"
	"github.com/ferry-dev/ferry/validate"
)

// fakeBatchGet answers BatchGetItem like DynamoDB under pressure: of each
// request only the first 30 keys are served, the rest are returned as
// UnprocessedKeys. Each item has the key and one attribute.
type fakeBatchGet struct {
	mu       sync.Mutex
	requests []int // keys per request
}

func (f *fakeBatchGet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if !strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".BatchGetItem") {
		http.Error(w, "unexpected "+r.Header.Get("X-Amz-Target"), http.StatusBadRequest)
		return
	}
	var in struct {
		RequestItems map[string]struct {
			Keys []map[string]map[string]string
		}
	}
	if err := json.Unmarshal(body, &in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	keys := in.RequestItems["T"].Keys
	f.mu.Lock()
	f.requests = append(f.requests, len(keys))
	f.mu.Unlock()
	served, rest := keys[:min(30, len(keys))], keys[min(30, len(keys)):]
	var items []map[string]map[string]string
	for _, k := range served {
		items = append(items, map[string]map[string]string{"pk": k["pk"], "v": {"N": "1E+2"}})
	}
	out := map[string]any{"Responses": map[string]any{"T": items}}
	if len(rest) > 0 {
		out["UnprocessedKeys"] = map[string]any{"T": map[string]any{"Keys": rest}}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_ = json.NewEncoder(w).Encode(out)
}

// Lookup sends at most 100 keys a request, names no key twice, and asks
// again for the keys DynamoDB left unprocessed until every item is read.
func TestLookupRetriesUnprocessedKeys(t *testing.T) {
	fake := &fakeBatchGet{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	access := config.AWSAccess{Endpoint: srv.URL, AccessKey: "id", SecretKey: "secret"}
	r := &TableReader{DB: dynamodb.NewFromConfig(AWSConfig(access)), Access: access, Side: "target t"}
	tbl := validate.Table{Name: "T", Key: []string{"pk"}, Columns: []string{"pk"}, Schemaless: true}
	var keys []*pb.Row
	for i := range 250 {
		keys = append(keys, &pb.Row{Names: tbl.Key, Values: []*pb.Value{{Kind: &pb.Value_Text{Text: fmt.Sprint("k", i)}}}})
	}
	keys = append(keys, keys[7]) // a repeated key is asked once
	rows, err := r.Lookup(context.Background(), tbl, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 250 {
		t.Fatalf("got %d rows, want 250", len(rows))
	}
	seen := map[string]bool{}
	for _, row := range rows {
		if len(row.Names) != 2 || row.Names[0] != "pk" || row.Names[1] != "v" || row.Types[1] != "N" || row.Values[1].GetDecimal() != "100" {
			t.Fatalf("row %v: want the key first, then v as the decimal 100", row)
		}
		seen[row.Values[0].GetText()] = true
	}
	if len(seen) != 250 {
		t.Errorf("%d distinct items, want 250", len(seen))
	}
	total := 0
	for _, n := range fake.requests {
		if n > 100 {
			t.Errorf("a request named %d keys; BatchGetItem takes at most 100", n)
		}
		total += n
	}
	// 3 requests (100, 100, 50 keys) and their unprocessed keys again.
	if len(fake.requests) <= 3 || total <= 250 {
		t.Errorf("requests %v: the unprocessed keys were not asked again", fake.requests)
	}
}

func TestItemRowKeyFirst(t *testing.T) {
	row, err := ItemRow(Item{"b": &types.AttributeValueMemberS{Value: "x"}, "sk": &types.AttributeValueMemberN{Value: "2"},
		"a": &types.AttributeValueMemberNULL{Value: true}, "pk": &types.AttributeValueMemberS{Value: "p"}}, []string{"pk", "sk"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(row.Names, ","); got != "pk,sk,a,b" {
		t.Errorf("names %s, want the key first, then the rest sorted", got)
	}
	if _, err := ItemRow(Item{"pk": &types.AttributeValueMemberS{Value: "p"}}, []string{"pk", "sk"}); err == nil || !strings.Contains(err.Error(), "sk") {
		t.Errorf("an item without its range key: %v", err)
	}
}

func TestSegmentSpecRoundTrip(t *testing.T) {
	seg, total, err := parseSegment(segmentSpec(3, 8))
	if err != nil || seg != 3 || total != 8 {
		t.Fatalf("got %d of %d, %v", seg, total, err)
	}
	for _, bad := range []string{"", "segment 8 of 8", "segment -1 of 4", "3/8"} {
		if _, _, err := parseSegment(bad); err == nil {
			t.Errorf("%q parsed as a segment", bad)
		}
	}
}

package cqlcodec

import (
	"context"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"sync"

	"github.com/gocql/gocql"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams/pb"
)

// SplitRing cuts the whole Murmur3 ring into n token ranges (Start, End] of
// (nearly) equal width.
func SplitRing(n int) []config.TokenRange {
	if n < 1 {
		n = 1
	}
	width := new(big.Int).Sub(big.NewInt(math.MaxInt64), big.NewInt(math.MinInt64))
	out := make([]config.TokenRange, 0, n)
	prev := int64(math.MinInt64)
	for i := 1; i <= n; i++ {
		end := int64(math.MaxInt64)
		if i < n {
			b := new(big.Int).Mul(width, big.NewInt(int64(i)))
			b.Div(b, big.NewInt(int64(n)))
			b.Add(b, big.NewInt(math.MinInt64))
			end = b.Int64()
		}
		if end > prev {
			out = append(out, config.TokenRange{Start: prev, End: end})
		}
		prev = end
	}
	return out
}

// RangeSpec writes a token range as "<start>_<end>", the form ranges take
// in KV.
func RangeSpec(r config.TokenRange) string {
	return strconv.FormatInt(r.Start, 10) + "_" + strconv.FormatInt(r.End, 10)
}

// ParseRangeSpec reads what RangeSpec wrote.
func ParseRangeSpec(s string) (config.TokenRange, error) {
	a, b, ok := strings.Cut(s, "_")
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || end < start {
		return config.TokenRange{}, fmt.Errorf("bad token range %q", s)
	}
	return config.TokenRange{Start: start, End: end}, nil
}

// Iter is the part of *gocql.Iter a row decoder needs.
type Iter interface {
	Columns() []gocql.ColumnInfo
	Scan(dest ...any) bool
	Close() error
}

// LookupEach reads each key's row with query(n), a query whose bind
// markers are the first n key columns, in order; several keys at once. It
// collects the rows decode emits, whose first values are the key columns.
// CQL has no multi-column IN on Cassandra 2.1, and single-partition reads
// spread over the cluster's coordinators are what it serves best.
//
// A key whose clustering values are NULL is a partition's static-only row
// (CQL refuses NULL in a key restriction): it is read by its leading
// non-NULL values, and only a row whose other key values are NULL as well
// is kept.
func LookupEach(ctx context.Context, sess *gocql.Session, query func(n int) string, cons gocql.Consistency, keyNames []string, keys []*pb.Row,
	decode func(Iter, func(*pb.Row) error) error) ([]*pb.Row, error) {
	var (
		mu       sync.Mutex
		out      []*pb.Row
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, 16)
	)
	for _, k := range keys {
		if len(k.GetValues()) != len(keyNames) {
			return nil, fmt.Errorf("a key of %d values for %d key columns", len(k.GetValues()), len(keyNames))
		}
		var args []any
		for i, v := range k.GetValues() {
			if IsNull(v) {
				break
			}
			args = append(args, Bound{V: v, Col: keyNames[i]})
		}
		n := len(args)
		if n == 0 {
			return nil, fmt.Errorf("a key whose %s is NULL", keyNames[0])
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			iter := sess.Query(query(n), args...).WithContext(ctx).Consistency(cons).Idempotent(true).Iter()
			var rows []*pb.Row
			err := decode(iter, func(r *pb.Row) error {
				for i := n; i < len(keyNames); i++ {
					if !IsNull(r.GetValues()[i]) {
						return nil
					}
				}
				rows = append(rows, r)
				return nil
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			out = append(out, rows...)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, ctx.Err()
}

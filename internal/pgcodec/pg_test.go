package pgcodec

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/pgtest"
	"github.com/ferry-dev/ferry/streams/pb"
	"github.com/jackc/pgx/v5"
)

// These tests hold the codec against a real PostgreSQL: the text forms the
// table tests claim, Encode output read back by the server, and ScanTypes on
// a live catalog. Without a server they skip locally and fail in CI (see
// pgtest.Require).

// pgRejects lists codec cases whose text is this package's input but not
// PostgreSQL 15's: 'infinity' intervals arrived in 17, and array_in allows
// no spaces inside a "[lb:ub]" decoration.
var pgRejects = map[string]bool{
	"interval infinity (PG 17)":  true,
	"interval -infinity (PG 17)": true,
	"int4[] spaces":              true,
}

func connectPG(t *testing.T) *pgx.Conn {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	s := pgtest.StartT(t, pgtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := pgx.ParseConfig(s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range SessionParams {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	_, err = conn.Exec(ctx, `
		CREATE EXTENSION citext;
		CREATE TYPE public.mood AS ENUM ('sad', 'happy');
		CREATE SCHEMA app;
		CREATE TYPE app.date AS ENUM ('happy');
		CREATE DOMAIN app.posint AS integer CHECK (VALUE > 0);
		CREATE DOMAIN app.posint2 AS app.posint;
		CREATE DOMAIN app.intarr AS integer[];`)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func TestPostgresTextForms(t *testing.T) {
	conn := connectPG(t)
	ctx := context.Background()
	for _, c := range codecCases() {
		t.Run(c.name, func(t *testing.T) {
			want := c.text
			if c.out != "" {
				want = c.out
			}
			if !pgRejects[c.name] {
				got, err := pgRawPrint(ctx, conn, c.text, c.typ.Name)
				if err != nil {
					t.Fatalf("PostgreSQL reading %q as %s: %v", c.text, c.typ.Name, err)
				}
				if got != want {
					t.Fatalf("PostgreSQL prints %q as %q, the test claims %q", c.text, got, want)
				}
			}
			v, err := Decode(c.typ, []byte(c.text))
			if err != nil {
				t.Fatal(err)
			}
			enc, _, err := EncodeFor(c.typ, v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := pgRawPrint(ctx, conn, enc, c.typ.Name)
			if err != nil {
				t.Fatalf("PostgreSQL reading Encode output %q as %s: %v", enc, c.typ.Name, err)
			}
			if got != enc {
				t.Fatalf("Encode gave %q, PostgreSQL reads it back as %q", enc, got)
			}
		})
	}
}

// pgRawPrint has the server read text as a literal of type typ (the simple
// protocol inlines it as '...', so the type's input function sees it as is)
// and returns what the type's output function prints: no cast to text in
// between, as bool::text would say 'true' where boolout says 't'.
func pgRawPrint(ctx context.Context, conn *pgx.Conn, text, typ string) (string, error) {
	rows, err := conn.Query(ctx, "SELECT $1::"+typ, pgx.QueryExecModeSimpleProtocol, text)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return "", err
		}
		return "", fmt.Errorf("no row")
	}
	out := string(rows.RawValues()[0])
	rows.Close()
	return out, rows.Err()
}

// pgPrintAll has the server read each text as typ and returns its output
// text for each, in one round trip.
func pgPrintAll(t *testing.T, conn *pgx.Conn, texts []string, typ string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(),
		"SELECT x::"+typ+" FROM unnest($1::text[]) WITH ORDINALITY AS u(x, n) ORDER BY n",
		pgx.QueryResultFormats{pgx.TextFormatCode}, texts)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		out = append(out, string(rows.RawValues()[0]))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("reading %s values: %v", typ, err)
	}
	if len(out) != len(texts) {
		t.Fatalf("got %d rows for %d values", len(out), len(texts))
	}
	return out
}

// checkPrinted sends Encode output for vals as typ and requires the server
// to print exactly the same text, and Decode of it to give the same value.
func checkPrinted(t *testing.T, conn *pgx.Conn, typ *Type, vals []*pb.Value) {
	t.Helper()
	texts := make([]string, len(vals))
	for i, v := range vals {
		var err error
		if texts[i], _, err = EncodeFor(typ, v); err != nil {
			t.Fatal(err)
		}
	}
	printed := pgPrintAll(t, conn, texts, typ.Name)
	fails := 0
	for i := range texts {
		if printed[i] != texts[i] {
			t.Errorf("%s: Encode %q, PostgreSQL prints %q", typ.Name, texts[i], printed[i])
		} else if v, err := Decode(typ, []byte(printed[i])); err != nil || !identical(v, vals[i]) {
			t.Errorf("%s: %q decodes to %s (%v), want %s", typ.Name, printed[i], show(v), err, show(vals[i]))
		} else {
			continue
		}
		if fails++; fails > 10 {
			t.FailNow()
		}
	}
}

func TestPostgresRandomValues(t *testing.T) {
	conn := connectPG(t)
	r := rand.New(rand.NewPCG(11, 12))
	const n = 3000

	t.Run("float8", func(t *testing.T) {
		vals := []*pb.Value{vF64(math.NaN()), vF64(math.Inf(1)), vF64(math.Inf(-1)), vF64(negZero), vF64(5e-324)}
		for len(vals) < n {
			f := math.Float64frombits(r.Uint64())
			if r.IntN(2) == 0 {
				f = float64(r.Int64N(1e17)) / math.Pow(10, float64(r.IntN(25)))
			}
			if !math.IsNaN(f) {
				vals = append(vals, vF64(f))
			}
		}
		checkPrinted(t, conn, tFloat8, vals)
	})
	t.Run("float4", func(t *testing.T) {
		var vals []*pb.Value
		for len(vals) < n {
			f := math.Float32frombits(r.Uint32())
			if r.IntN(2) == 0 {
				f = float32(r.Int64N(1e9)) / float32(math.Pow(10, float64(r.IntN(12))))
			}
			if f == f {
				vals = append(vals, vF32(f))
			}
		}
		checkPrinted(t, conn, tFloat4, vals)
	})
	t.Run("timestamp", func(t *testing.T) {
		var plain, zoned []*pb.Value
		for i := 0; i < n; i++ {
			us := pgMinTimestampUS + int64(r.Uint64N(uint64(maxTimestampUS)-uint64(pgMinTimestampUS)))
			if i%2 == 0 {
				us = us / usPerSec * usPerSec
			}
			plain = append(plain, vTS(us, false))
			zoned = append(zoned, vTS(us, true))
		}
		checkPrinted(t, conn, tTimestamp, plain)
		checkPrinted(t, conn, tTimestamptz, zoned)
	})
	t.Run("date", func(t *testing.T) {
		lo, hi := int64(day(-4713, 11, 24)), int64(day(5874897, 12, 31))
		var vals []*pb.Value
		for i := 0; i < n; i++ {
			vals = append(vals, vDate(int32(lo+r.Int64N(hi-lo+1))))
		}
		checkPrinted(t, conn, tDate, vals)
	})
	t.Run("interval", func(t *testing.T) {
		var vals []*pb.Value
		for i := 0; i < n; i++ {
			iv := vIv(int32(r.Uint32()), int32(r.Uint32()), int64(r.Uint64()))
			switch i % 4 {
			case 1:
				iv = vIv(int32(r.IntN(48)-24), int32(r.IntN(60)-30), r.Int64N(4*usPerDay)-2*usPerDay)
			case 2:
				iv = vIv(0, 0, r.Int64N(2*usPerSec)-usPerSec)
			}
			vals = append(vals, iv)
		}
		checkPrinted(t, conn, tInterval, vals)
	})
	t.Run("timetz", func(t *testing.T) {
		const maxOff = 15*3600 + 59*60 + 59
		var vals []*pb.Value
		for i := 0; i < n; i++ {
			vals = append(vals, vTimeTZ(r.Int64N(usPerDay+1), int32(r.IntN(2*maxOff+1)-maxOff)))
		}
		checkPrinted(t, conn, tTimetz, vals)
	})
	t.Run("numeric", func(t *testing.T) {
		var vals []*pb.Value
		for i := 0; i < n; i++ {
			var b strings.Builder
			if r.IntN(2) == 0 {
				b.WriteByte('-')
			}
			b.WriteByte(byte('1' + r.IntN(9)))
			for k := r.IntN(60); k > 0; k-- {
				b.WriteByte(byte('0' + r.IntN(10)))
			}
			if r.IntN(3) > 0 {
				b.WriteByte('.')
				for k := 1 + r.IntN(40); k > 0; k-- {
					b.WriteByte(byte('0' + r.IntN(10)))
				}
			}
			vals = append(vals, vDec(b.String()))
		}
		checkPrinted(t, conn, tNumeric, vals)
	})
	t.Run("text[]", func(t *testing.T) {
		palette := []string{"a", "Z", "0", " ", "\t", "\n", "\r", "\v", "\f", `"`, `\`, "{", "}", ",", ";", "'", "NULL", "null",
			"é", "👍🏽", "ש", "[", "]", ":", "="}
		word := func() *pb.Value {
			if r.IntN(12) == 0 {
				return vNull()
			}
			var b strings.Builder
			for k := r.IntN(6); k > 0; k-- {
				b.WriteString(palette[r.IntN(len(palette))])
			}
			return vText(b.String())
		}
		var vals []*pb.Value
		for i := 0; i < 1000; i++ {
			dims := []int32{int32(1 + r.IntN(4))}
			if i%3 == 1 {
				dims = append(dims, int32(1+r.IntN(3)))
			}
			var lbs []int32
			if i%4 == 2 {
				lbs = make([]int32, len(dims))
				for k := range lbs {
					lbs[k] = int32(r.IntN(7) - 3)
				}
				if slices.Equal(lbs, []int32{1, 1}[:len(lbs)]) {
					lbs = nil // Decode leaves all-1 bounds out
				}
			}
			count := 1
			for _, d := range dims {
				count *= int(d)
			}
			elems := make([]*pb.Value, count)
			for k := range elems {
				elems[k] = word()
			}
			if i%50 == 0 {
				vals = append(vals, vArr(nil, nil))
			}
			vals = append(vals, vArr(dims, lbs, elems...))
		}
		checkPrinted(t, conn, tTextArr, vals)
	})
}

func TestPostgresScanTypes(t *testing.T) {
	conn := connectPG(t)
	ctx := context.Background()

	// One column per distinct type in the table tests, plus domains; row r
	// holds each type's r-th case (cycling).
	var (
		types  []*Type
		byType = map[*Type][]codecCase{}
	)
	for _, c := range codecCases() {
		if _, ok := byType[c.typ]; !ok {
			types = append(types, c.typ)
		}
		byType[c.typ] = append(byType[c.typ], c)
	}
	domains := []struct {
		name string
		base string // an array of a domain is an array type of its own
		typ  *Type
		text string
		want *pb.Value
	}{
		{"app.posint2", "int4", tInt4, "7", vInt(7)},
		{"app.posint[]", "_posint", tInt4Arr, "{1,NULL}", vArr([]int32{2}, nil, vInt(1), vNull())},
		{"app.intarr", "_int4", tInt4Arr, "[0:0]={5}", vArr([]int32{1}, []int32{0}, vInt(5))},
	}
	var ddl strings.Builder
	ddl.WriteString("CREATE TABLE public.t (dropped int")
	for i, typ := range types {
		fmt.Fprintf(&ddl, ", c%d %s", i, typ.Name)
	}
	for i, d := range domains {
		fmt.Fprintf(&ddl, ", d%d %s NOT NULL", i, d.name)
	}
	ddl.WriteString("); ALTER TABLE public.t DROP COLUMN dropped")
	if _, err := conn.Exec(ctx, ddl.String()); err != nil {
		t.Fatal(err)
	}

	rows, err := conn.Query(ctx, TypeQuery, "public.t")
	if err != nil {
		t.Fatal(err)
	}
	cols, err := ScanTypes(rows)
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) != len(types)+len(domains) {
		t.Fatalf("ScanTypes found %d columns, want %d", len(cols), len(types)+len(domains))
	}
	same := func(got, want *Type) bool {
		if got == nil || want == nil {
			return got == want
		}
		return got.Base == want.Base && got.Category == want.Category && got.delim() == want.delim() &&
			(got.OID == want.OID || want.OID >= firstNormalOID && got.OID >= firstNormalOID)
	}
	for i, typ := range types {
		c := cols[i]
		wantElem := typ.Elem
		if typ.isVector() {
			wantElem = nil // ScanTypes gives element types to true arrays only
		}
		if typ.OID == 0 {
			continue // a by-name test type; its Name is no format_type output
		}
		if c.Name != fmt.Sprintf("c%d", i) || c.NotNull || c.Type.Name != typ.Name || !same(c.Type, typ) || !same(c.Type.Elem, wantElem) {
			t.Errorf("column %d: got %+v (elem %+v), want %+v (elem %+v)", i, c.Type, c.Type.Elem, typ, typ.Elem)
		}
	}
	for i, d := range domains {
		c := cols[len(types)+i]
		if !c.NotNull || c.Type.Name != d.name || c.Type.Base != d.base || c.Type.kind() != d.typ.kind() ||
			(c.Type.Elem == nil) != (d.typ.Elem == nil) || c.Type.Elem != nil && c.Type.Elem.kind() != d.typ.Elem.kind() {
			t.Errorf("domain column %s: got %+v (elem %+v), want like %+v", d.name, c.Type, c.Type.Elem, d.typ)
		}
	}

	nrows := 0
	for _, cs := range byType {
		nrows = max(nrows, len(cs))
	}
	for r := 0; r < nrows; r++ {
		var args []any
		var ph []string
		for i, typ := range types {
			c := byType[typ][r%len(byType[typ])]
			text := c.text
			if pgRejects[c.name] {
				text = c.out
			}
			args = append(args, text)
			ph = append(ph, fmt.Sprintf("$%d::%s", i+1, typ.Name))
		}
		for _, d := range domains {
			args = append(args, d.text)
			ph = append(ph, fmt.Sprintf("$%d::%s", len(args), d.name))
		}
		if _, err := conn.Exec(ctx, "INSERT INTO public.t VALUES ("+strings.Join(ph, ", ")+")", append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...); err != nil {
			t.Fatalf("row %d: %v", r, err)
		}
	}

	sel, err := conn.Query(ctx, "SELECT * FROM public.t", pgx.QueryResultFormats{pgx.TextFormatCode})
	if err != nil {
		t.Fatal(err)
	}
	defer sel.Close()
	r := 0
	for ; sel.Next(); r++ {
		raw := sel.RawValues()
		for i, col := range cols {
			var want *pb.Value
			var what string
			if i < len(types) {
				c := byType[types[i]][r%len(byType[types[i]])]
				want, what = c.want, c.name
			} else {
				d := domains[i-len(types)]
				want, what = d.want, d.name
			}
			got, err := Decode(col.Type, raw[i])
			if err != nil || !identical(got, want) {
				t.Errorf("row %d %s (%s): Decode(%q) = %s, %v; want %s", r, col.Name, what, raw[i], show(got), err, show(want))
			}
		}
	}
	if err := sel.Err(); err != nil {
		t.Fatal(err)
	}
	if r != nrows {
		t.Fatalf("read %d rows, inserted %d", r, nrows)
	}
}

package postgres

import "testing"

// ordersTable is public.orders (id bigint primary key, customer text,
// qty integer, note varchar(10)).
func ordersTable(t *testing.T) *table {
	t.Helper()
	tb, err := newTable("public", "orders", []column{
		{name: "id", cast: "bigint", delim: ','},
		{name: "customer", cast: "text", delim: ','},
		{name: "qty", cast: "integer", delim: ','},
		{name: "note", cast: "character varying", delim: ','},
	}, []string{"id"})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// linesTable has a two-column key in an order other than the columns' and
// names that need quoting: "Sales"."Order Lines" ("Line" int, order_id bigint,
// sku text, primary key (order_id, "Line")).
func linesTable(t *testing.T) *table {
	t.Helper()
	tb, err := newTable("Sales", "Order Lines", []column{
		{name: "Line", cast: "integer", delim: ','},
		{name: "order_id", cast: "bigint", delim: ','},
		{name: "sku", cast: "text", delim: ','},
	}, []string{"order_id", "Line"})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestDetectDialect(t *testing.T) {
	for v, want := range map[string]dialect{
		"PostgreSQL 15.8 (Debian 15.8-0+deb12u1) on x86_64-pc-linux-gnu, compiled by gcc":    dialectPostgres,
		"CockroachDB CCL v23.2.4 (x86_64-pc-linux-gnu, built 2024/04/08 19:19:33, go1.21.9)": dialectCockroach,
	} {
		if got := detectDialect(v); got != want {
			t.Errorf("detectDialect(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestUpsertSQL(t *testing.T) {
	orders, lines := ordersTable(t), linesTable(t)
	cases := []struct {
		name string
		d    dialect
		tb   *table
		cols []int
		want string
	}{
		{"pg all columns", dialectPostgres, orders, []int{0, 1, 2, 3},
			`INSERT INTO "public"."orders" ("id", "customer", "qty", "note") OVERRIDING SYSTEM VALUE ` +
				`SELECT u."id"::bigint, u."customer"::text, u."qty"::integer, u."note"::character varying ` +
				`FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u("id", "customer", "qty", "note") ` +
				`ON CONFLICT ("id") DO UPDATE SET "customer" = excluded."customer", "qty" = excluded."qty", "note" = excluded."note"`},
		{"pg some columns", dialectPostgres, orders, []int{0, 2},
			`INSERT INTO "public"."orders" ("id", "qty") OVERRIDING SYSTEM VALUE ` +
				`SELECT u."id"::bigint, u."qty"::integer FROM unnest($1::text[], $2::text[]) AS u("id", "qty") ` +
				`ON CONFLICT ("id") DO UPDATE SET "qty" = excluded."qty"`},
		{"pg key only", dialectPostgres, orders, []int{0},
			`INSERT INTO "public"."orders" ("id") OVERRIDING SYSTEM VALUE ` +
				`SELECT u."id"::bigint FROM unnest($1::text[]) AS u("id") ON CONFLICT ("id") DO NOTHING`},
		{"pg composite key, quoting", dialectPostgres, lines, []int{0, 1, 2},
			`INSERT INTO "Sales"."Order Lines" ("Line", "order_id", "sku") OVERRIDING SYSTEM VALUE ` +
				`SELECT u."Line"::integer, u."order_id"::bigint, u."sku"::text ` +
				`FROM unnest($1::text[], $2::text[], $3::text[]) AS u("Line", "order_id", "sku") ` +
				`ON CONFLICT ("order_id", "Line") DO UPDATE SET "sku" = excluded."sku"`},
		{"crdb all columns", dialectCockroach, orders, []int{0, 1, 2, 3},
			`UPSERT INTO "public"."orders" ("id", "customer", "qty", "note") ` +
				`SELECT u."id"::bigint, u."customer"::text, u."qty"::integer, u."note"::character varying ` +
				`FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u("id", "customer", "qty", "note")`},
		{"crdb key only", dialectCockroach, orders, []int{0},
			`UPSERT INTO "public"."orders" ("id") SELECT u."id"::bigint FROM unnest($1::text[]) AS u("id")`},
		{"crdb composite key", dialectCockroach, lines, []int{0, 1, 2},
			`UPSERT INTO "Sales"."Order Lines" ("Line", "order_id", "sku") ` +
				`SELECT u."Line"::integer, u."order_id"::bigint, u."sku"::text ` +
				`FROM unnest($1::text[], $2::text[], $3::text[]) AS u("Line", "order_id", "sku")`},
	}
	for _, c := range cases {
		if got := upsertSQL(c.d, c.tb, c.cols); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

// Partial updates, deletes and key changes are the same on both dialects.
func TestUpdateDeleteSQL(t *testing.T) {
	orders, lines := ordersTable(t), linesTable(t)
	check := func(name, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
	check("partial", partialSQL(orders, []int{0, 2}),
		`UPDATE "public"."orders" AS t SET "qty" = u."qty"::integer `+
			`FROM unnest($1::text[], $2::text[]) AS u("id", "qty") WHERE t."id" = u."id"::bigint`)
	check("partial composite", partialSQL(lines, []int{0, 1, 2}),
		`UPDATE "Sales"."Order Lines" AS t SET "sku" = u."sku"::text `+
			`FROM unnest($1::text[], $2::text[], $3::text[]) AS u("Line", "order_id", "sku") `+
			`WHERE t."order_id" = u."order_id"::bigint AND t."Line" = u."Line"::integer`)
	check("partial key only", partialSQL(orders, []int{0}), "")
	check("delete", deleteSQL(orders),
		`DELETE FROM "public"."orders" AS t USING unnest($1::text[]) AS u("id") WHERE t."id" = u."id"::bigint`)
	check("delete composite", deleteSQL(lines),
		`DELETE FROM "Sales"."Order Lines" AS t USING unnest($1::text[], $2::text[]) AS u("order_id", "Line") `+
			`WHERE t."order_id" = u."order_id"::bigint AND t."Line" = u."Line"::integer`)
	check("rekey", rekeySQL(orders),
		`UPDATE "public"."orders" AS t SET "id" = u.n1::bigint `+
			`FROM unnest($1::text[], $2::text[]) AS u(o1, n1) WHERE t."id" = u.o1::bigint`)
	check("rekey composite", rekeySQL(lines),
		`UPDATE "Sales"."Order Lines" AS t SET "order_id" = u.n1::bigint, "Line" = u.n2::integer `+
			`FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(o1, o2, n1, n2) `+
			`WHERE t."order_id" = u.o1::bigint AND t."Line" = u.o2::integer`)
}

func TestSplitTable(t *testing.T) {
	for _, c := range []struct{ in, cfg, schema, name string }{
		{"public.orders", "", "public", "orders"},
		{"public.orders", "mig", "mig", "orders"},
		{"orders", "", "", "orders"},
		{"orders", "mig", "mig", "orders"},
		{"app.weird.name", "", "app", "weird.name"},
	} {
		s, n := splitTable(c.in, c.cfg)
		if s != c.schema || n != c.name {
			t.Errorf("splitTable(%q, %q) = %q, %q; want %q, %q", c.in, c.cfg, s, n, c.schema, c.name)
		}
	}
}

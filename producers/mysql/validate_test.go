package mysql

import (
	"testing"

	"google.golang.org/protobuf/proto"
)

// A key value, converted as the producer converts it, must go back into a
// statement as an argument that the server reads as the same value: range
// bounds and lookups depend on it.
func TestKeyArgsReadBackAsTheSameValue(t *testing.T) {
	col := func(dataType, columnType string) *column {
		return &column{Name: "k", DataType: dataType, ColumnType: columnType, Charset: "utf8mb4", Scale: 4}
	}
	for _, c := range []struct {
		col *column
		raw any
	}{
		{col("bigint", "bigint"), int64(-9223372036854775808)},
		{&column{DataType: "bigint", ColumnType: "bigint unsigned", Unsigned: true}, uint64(18446744073709551615)},
		{col("decimal", "decimal(18,4)"), "-12.5000"},
		{col("varchar", "varchar(20)"), "héllo ☃"},
		{col("varbinary", "varbinary(8)"), []byte{0, 0xFF, 0x80}},
		{col("date", "date"), "1000-01-01"},
		{col("datetime", "datetime(6)"), "2024-02-29 12:34:56.789012"},
		{col("datetime", "datetime"), "1970-01-01 00:00:00"},
		{col("timestamp", "timestamp(3)"), "2038-01-19 03:14:07.5"},
		{col("time", "time(6)"), "23:59:59.999999"},
		{col("time", "time"), "-838:59:59"},
		{col("time", "time"), "100:00:00"},
		{col("year", "year"), int64(2155)},
	} {
		want, err := convert(c.col, c.raw, false, false)
		if err != nil {
			t.Fatalf("%s %v: %v", c.col.ColumnType, c.raw, err)
		}
		arg, err := keyArg(c.col, want)
		if err != nil {
			t.Fatalf("%s %v: %v", c.col.ColumnType, c.raw, err)
		}
		got, err := convert(c.col, arg, false, false)
		if err != nil || !proto.Equal(got, want) {
			t.Errorf("%s %v: argument %#v reads back as %v (%v), want %v", c.col.ColumnType, c.raw, arg, got, err, want)
		}
	}
	if _, err := keyArgs(&table{Name: "t", Columns: []column{*col("varchar", "varchar(2)")}, Key: []int{0}}, nil); err == nil {
		t.Error("a key without values was accepted")
	}
}

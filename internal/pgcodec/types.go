// Package pgcodec converts between PostgreSQL's text I/O format and the
// lossless typed values of the ferry event format (pb.Value), in both
// directions.
//
// The text forms depend on session settings, so every session that produces
// text for Decode (queries and the pgoutput replication stream alike) and
// every session that feeds Encode output back in must run with
// SessionParams. Decode rejects text whose meaning depends on other settings
// (say IntervalStyle=postgres) rather than guess; it does accept harmless
// variants, such as timestamptz with any numeric offset.
package pgcodec

import (
	"fmt"

	"github.com/jackc/pgx/v5"
)

// SessionParams are the GUCs every ferry PostgreSQL session runs with, keyed
// as pgconn.Config.RuntimeParams expects. Decode and Encode rely on them:
//   - DateStyle ISO prints dates year-first with " BC" as a suffix; MDY only
//     matters for ambiguous input, which Encode never produces.
//   - IntervalStyle iso_8601 is the only style whose output keeps months,
//     days and microseconds apart with their own signs and reads back
//     without normalisation.
//   - TimeZone UTC makes timestamptz print with "+00", so no local-time
//     offsets (historic LMT such as -04:56:02) appear.
//   - extra_float_digits=3 selects the shortest exact float output.
//   - bytea_output hex is compact and unambiguous.
var SessionParams = map[string]string{
	"DateStyle":          "ISO, MDY",
	"IntervalStyle":      "iso_8601",
	"TimeZone":           "UTC",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
}

// Type describes a column type as read from pg_catalog (see TypeQuery).
type Type struct {
	// OID of the base type, after domains are resolved. Built-in types
	// (OID below 16384) are recognised by OID; 0 means "unknown, go by Base".
	OID uint32
	// Name is format_type() of the declared type, e.g. "numeric(12,2)",
	// "integer[]", "public.mood" (schema-qualified when not on the
	// search_path), "timestamp with time zone"; a domain keeps its own name
	// here. It is what a writer casts to.
	Name string
	// Base is pg_type.typname of the (domain-resolved) base type, e.g.
	// "int4", "numeric", "_int4", "mood".
	Base string
	// Category is pg_type.typcategory ('A' array, 'E' enum, 'N' numeric, ...).
	Category byte
	// Elem is the element type of an array (domain-resolved), nil otherwise.
	Elem *Type
	// Delim is the array delimiter (',' for all but box, which uses ';').
	// 0 means ','.
	Delim byte
}

// Column is one live column of a table, as TypeQuery returns it.
type Column struct {
	Name    string
	Type    *Type
	NotNull bool
}

// TypeQuery returns, for $1 = a table as regclass text ('schema.table'), one
// row per live column in attnum order; ScanTypes reads the rows.
//
// Domains (also domains over domains, and arrays of domains) resolve to
// their base type, so a domain column decodes exactly like its base type.
// Only true arrays get an element type: int2vector and oidvector also have
// category 'A' and an element type, but print as space-separated lists.
// Every column is cast to text, int8 or bool and made non-null, so they scan
// into plain Go strings and integers (the "char" columns would otherwise need
// pgx's special handling).
const TypeQuery = `
WITH RECURSIVE dom(oid, base) AS (
    SELECT t.oid, t.typbasetype FROM pg_catalog.pg_type t WHERE t.typtype = 'd'
  UNION ALL
    SELECT d.oid, t.typbasetype
    FROM dom d JOIN pg_catalog.pg_type t ON t.oid = d.base
    WHERE t.typtype = 'd'
), resolved(oid, base) AS (
    SELECT d.oid, d.base
    FROM dom d JOIN pg_catalog.pg_type t ON t.oid = d.base
    WHERE t.typtype <> 'd'
)
SELECT a.attname::text,
       pg_catalog.format_type(a.atttypid, a.atttypmod),
       a.attnotnull,
       bt.oid::int8,
       bt.typname::text,
       bt.typcategory::text,
       bt.typdelim::text,
       COALESCE(et.oid::int8, 0),
       COALESCE(pg_catalog.format_type(et0.oid, NULL), ''),
       COALESCE(et.typname::text, ''),
       COALESCE(et.typcategory::text, ''),
       COALESCE(et.typdelim::text, '')
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type bt
  ON bt.oid = COALESCE((SELECT r.base FROM resolved r WHERE r.oid = a.atttypid), a.atttypid)
LEFT JOIN pg_catalog.pg_type et0
  ON et0.oid = bt.typelem
 AND bt.typcategory = 'A'
 AND bt.typlen = -1
 AND bt.oid NOT IN ('pg_catalog.int2vector'::pg_catalog.regtype, 'pg_catalog.oidvector'::pg_catalog.regtype)
LEFT JOIN pg_catalog.pg_type et
  ON et.oid = COALESCE((SELECT r.base FROM resolved r WHERE r.oid = et0.oid), et0.oid)
WHERE a.attrelid = $1::pg_catalog.regclass
  AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY a.attnum`

// ScanTypes reads the result of TypeQuery. It closes rows.
func ScanTypes(rows pgx.Rows) ([]Column, error) {
	defer rows.Close()
	var cols []Column
	for rows.Next() {
		var (
			name, typName, baseName, baseCat, baseDelim string
			elemName, elemBase, elemCat, elemDelim      string
			notNull                                     bool
			baseOID, elemOID                            int64
		)
		if err := rows.Scan(&name, &typName, &notNull, &baseOID, &baseName, &baseCat, &baseDelim,
			&elemOID, &elemName, &elemBase, &elemCat, &elemDelim); err != nil {
			return nil, fmt.Errorf("pgcodec: scanning column types: %w", err)
		}
		t := &Type{
			OID:      uint32(baseOID),
			Name:     typName,
			Base:     baseName,
			Category: firstByte(baseCat),
			Delim:    firstByte(baseDelim),
		}
		if elemOID != 0 {
			t.Elem = &Type{
				OID:      uint32(elemOID),
				Name:     elemName,
				Base:     elemBase,
				Category: firstByte(elemCat),
				Delim:    firstByte(elemDelim),
			}
			// array_in and array_out split on the element type's delimiter.
			t.Delim = t.Elem.Delim
		}
		cols = append(cols, Column{Name: name, Type: t, NotNull: notNull})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgcodec: reading column types: %w", err)
	}
	return cols, nil
}

func firstByte(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}

// delim is the array delimiter of t.
func (t *Type) delim() byte {
	switch {
	case t == nil:
		return ','
	case t.Delim != 0:
		return t.Delim
	case t.Elem != nil && t.Elem.Delim != 0:
		return t.Elem.Delim
	}
	return ','
}

// label names t in error messages.
func (t *Type) label() string {
	switch {
	case t == nil:
		return "<nil type>"
	case t.Name != "":
		return t.Name
	case t.Base != "":
		return t.Base
	}
	return fmt.Sprintf("oid %d", t.OID)
}

// kind is how a type's text is decoded.
type kind uint8

const (
	kNative kind = iota
	kBool
	kInt
	kOID
	kFloat4
	kFloat8
	kNumeric
	kText
	kBytea
	kTimestamp
	kTimestamptz
	kDate
	kTime
	kTimetz
	kInterval
	kUUID
	kJSON
	kArray
)

// firstNormalOID is where user-defined (and extension) OIDs start; below it
// an OID names the same built-in type in every database.
const firstNormalOID = 16384

var kindByOID = map[uint32]kind{
	16:   kBool,
	17:   kBytea,
	18:   kText, // "char"
	19:   kText, // name
	20:   kInt,  // int8
	21:   kInt,  // int2
	23:   kInt,  // int4
	25:   kText,
	26:   kOID,
	114:  kJSON,
	700:  kFloat4,
	701:  kFloat8,
	1042: kText, // bpchar
	1043: kText, // varchar
	1082: kDate,
	1083: kTime,
	1114: kTimestamp,
	1184: kTimestamptz,
	1186: kInterval,
	1266: kTimetz,
	1700: kNumeric,
	2950: kUUID,
	3802: kJSON, // jsonb
}

var kindByName = map[string]kind{
	"bool":        kBool,
	"bytea":       kBytea,
	"char":        kText,
	"name":        kText,
	"int8":        kInt,
	"int2":        kInt,
	"int4":        kInt,
	"text":        kText,
	"oid":         kOID,
	"json":        kJSON,
	"float4":      kFloat4,
	"float8":      kFloat8,
	"bpchar":      kText,
	"varchar":     kText,
	"date":        kDate,
	"time":        kTime,
	"timestamp":   kTimestamp,
	"timestamptz": kTimestamptz,
	"interval":    kInterval,
	"timetz":      kTimetz,
	"numeric":     kNumeric,
	"uuid":        kUUID,
	"jsonb":       kJSON,
	"citext":      kText,
}

// isVector reports int2vector and oidvector: category 'A' with an element
// type, yet printed as space-separated lists rather than array literals.
func (t *Type) isVector() bool {
	return t.OID == 22 || t.OID == 30 || t.Base == "int2vector" || t.Base == "oidvector"
}

// kind picks the decoder for t. Built-in types go by OID, because a user
// type may share a built-in's typname in another schema (an enum called
// "date"). Extension types have no fixed OID, so citext goes by name.
func (t *Type) kind() kind {
	if t.Category == 'A' && t.Elem != nil && !t.isVector() {
		return kArray
	}
	switch {
	case t.OID != 0 && t.OID < firstNormalOID:
		return kindByOID[t.OID]
	case t.OID == 0:
		return kindByName[t.Base]
	case t.Base == "citext":
		return kText
	}
	return kNative
}

package preflight

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ferry-dev/ferry/config"
)

// PostgresConnectFix says how to fix a failed connection to a PostgreSQL
// (or CockroachDB) server. It lives here because the PostgreSQL source and
// target both need it and connectors may not import each other. dsnKey is
// the config key of the DSN ("sources[].dsn").
func PostgresConnectFix(err error, dsnKey string) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28P01": // invalid_password
			return fmt.Sprintf("the server refused the password: fix the user and password in %s", dsnKey)
		case "28000": // invalid_authorization_specification: no pg_hba.conf entry, or no such role
			return fmt.Sprintf("allow this host, user and database in the server's pg_hba.conf (then SELECT pg_reload_conf();), or fix the user in %s", dsnKey)
		case "3D000": // invalid_catalog_name
			return fmt.Sprintf("create the database (CREATE DATABASE ...;) or fix the database name in %s", dsnKey)
		case "53300": // too_many_connections
			return "the server has no free connections: close idle sessions or raise max_connections (ALTER SYSTEM SET max_connections = ...; then restart PostgreSQL)"
		case "42501": // insufficient_privilege
			return fmt.Sprintf("the role lacks a privilege named in the message: grant it, or connect as another role in %s", dsnKey)
		}
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "not a valid postgresql connection string"), strings.Contains(msg, "invalid dsn"):
		return fmt.Sprintf("write %s as postgres://user:password@host:5432/database?sslmode=... or as key=value pairs (host=... dbname=...)", dsnKey)
	case strings.Contains(msg, "connection refused"):
		return fmt.Sprintf("nothing listens there: start the server, or fix the host and port in %s", dsnKey)
	case strings.Contains(msg, "no such host"), strings.Contains(msg, "server misbehaving"):
		return fmt.Sprintf("the host name does not resolve: fix the host in %s", dsnKey)
	case strings.Contains(msg, "timeout"), strings.Contains(msg, "deadline exceeded"), strings.Contains(msg, "i/o timeout"):
		return fmt.Sprintf("the server did not answer in time: check the host and port in %s and that no firewall drops the connection", dsnKey)
	case strings.Contains(msg, "tls"), strings.Contains(msg, "ssl"), strings.Contains(msg, "certificate"):
		return fmt.Sprintf("fix the TLS settings in %s (sslmode, sslrootcert, sslcert, sslkey) to match the server's", dsnKey)
	}
	return fmt.Sprintf("check %s (host, port, database, user, password) and that the server accepts connections from this host", dsnKey)
}

// PostgresAddress is where a DSN points, as host:port/database, for
// messages: built from the parsed fields, so no password can slip in. A DSN
// that does not parse is shown through config.Redact.
func PostgresAddress(dsn string) string {
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return config.Redact(dsn)
	}
	return fmt.Sprintf("%s/%s", net.JoinHostPort(pc.Host, strconv.Itoa(int(pc.Port))), pc.Database)
}

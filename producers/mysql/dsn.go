package mysql

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// dsn is a parsed source address. Both URL form
// (mysql://user:pass@host:3306/db) and go-sql-driver form
// (user:pass@tcp(host:3306)/db) are accepted.
type dsn struct {
	User, Password string
	Host           string
	Port           uint16
	DB             string
}

func (d dsn) Addr() string { return net.JoinHostPort(d.Host, strconv.Itoa(int(d.Port))) }

// redacted renders the address without its password, for messages.
func (d dsn) redacted() string {
	u := d.User
	if d.Password != "" {
		u += ":xxxxx"
	}
	return fmt.Sprintf("mysql://%s@%s/%s", u, d.Addr(), d.DB)
}

func parseDSN(s string) (dsn, error) {
	var d dsn
	if strings.HasPrefix(s, "mysql://") || strings.HasPrefix(s, "mariadb://") {
		u, err := url.Parse(s)
		if err != nil {
			return d, fmt.Errorf("not a valid mysql:// URL")
		}
		d.User = u.User.Username()
		d.Password, _ = u.User.Password()
		d.Host = u.Hostname()
		port := u.Port()
		if port == "" {
			port = "3306"
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return d, fmt.Errorf("port %q is not a number", port)
		}
		d.Port = uint16(p)
		d.DB = strings.TrimPrefix(u.Path, "/")
	} else {
		// user[:password]@proto(addr)/dbname[?params]
		at := strings.LastIndex(s, "@")
		if at < 0 {
			return d, fmt.Errorf("expected mysql://user@host:port/db or user@tcp(host:port)/db")
		}
		cred, rest := s[:at], s[at+1:]
		if c := strings.IndexByte(cred, ':'); c >= 0 {
			d.User, d.Password = cred[:c], cred[c+1:]
		} else {
			d.User = cred
		}
		open, closeP := strings.IndexByte(rest, '('), strings.IndexByte(rest, ')')
		if open < 0 || closeP < open || rest[:open] != "tcp" {
			return d, fmt.Errorf("expected tcp(host:port) after the @")
		}
		addr := rest[open+1 : closeP]
		rest = rest[closeP+1:]
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			host, port = addr, "3306"
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return d, fmt.Errorf("port %q is not a number", port)
		}
		d.Host, d.Port = host, uint16(p)
		d.DB = strings.TrimPrefix(rest, "/")
	}
	if q := strings.IndexByte(d.DB, '?'); q >= 0 {
		d.DB = d.DB[:q]
	}
	if d.DB == "" {
		return d, fmt.Errorf("no database named (…/dbname)")
	}
	if d.Host == "" {
		d.Host = "127.0.0.1"
	}
	if d.User == "" {
		d.User = "root"
	}
	return d, nil
}

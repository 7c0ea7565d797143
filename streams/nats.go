package streams

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/config"
)

// Conn is a connection to the event log: the NATS connection, its JetStream
// context, and the embedded server when ferry runs one.
type Conn struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	cfg      config.NATS
	embedded *server.Server
	log      *slog.Logger
}

// Connect opens the event log described by cfg. With an empty URL it starts
// the embedded server (file store in cfg.DataDir, clients on cfg.Listen) and
// connects through that loopback address, so that it runs the same code path
// as an external server and other ferry processes can share it.
func Connect(ctx context.Context, cfg config.NATS, log *slog.Logger) (*Conn, error) {
	c := &Conn{cfg: cfg, log: log}
	url := cfg.URL
	if url == "" {
		// Another ferry process of this pipeline may host the embedded
		// server already (say `ferry produce` beside `ferry apply`): use
		// it rather than fight over the port and the data dir.
		url = "nats://" + cfg.Listen
		if !reachable(cfg.Listen) {
			srv, err := StartEmbedded(cfg)
			if err != nil && !waitReachable(ctx, cfg.Listen, 15*time.Second) {
				// Not a ferry still starting its server either.
				return nil, err
			}
			if err == nil {
				c.embedded = srv
				url = srv.ClientURL()
				log.Info("embedded NATS started", "listen", url, "dataDir", cfg.DataDir)
			}
		}
		if c.embedded == nil {
			log.Info("using the embedded NATS of another ferry process", "listen", cfg.Listen)
		}
	}
	opts := []nats.Option{
		nats.Name("ferry"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLS.CAFile))
	}
	if cfg.TLS.CertFile != "" || cfg.TLS.KeyFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLS.CertFile, cfg.TLS.KeyFile))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connecting to NATS at %s: %w", redactURL(url), err)
	}
	c.NC = nc
	// A lost acknowledgement fails its future after the timeout instead of
	// leaving the producer waiting forever.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(time.Minute))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	c.JS = js
	// Fail now, naming the server, rather than on the first publish.
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(actx); err != nil {
		c.Close()
		return nil, fmt.Errorf("JetStream at %s is not available (is the server started with -js?): %w", redactURL(url), err)
	}
	return c, nil
}

// reachable reports whether something accepts connections on addr.
func reachable(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// waitReachable waits up to d for something to accept connections on addr:
// another ferry that holds the data dir may still be starting its server.
func waitReachable(ctx context.Context, addr string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if reachable(addr) {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StartEmbedded runs a NATS server with JetStream inside this process.
func StartEmbedded(cfg config.NATS) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats.listen %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats.listen %q: bad port", cfg.Listen)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("nats.dataDir %s: %w", cfg.DataDir, err)
	}
	// nats-server does not lock its store; two servers on one data dir
	// would corrupt it. The lock lives as long as this process.
	lock, err := os.OpenFile(filepath.Join(cfg.DataDir, "ferry.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("nats.dataDir %s: %w", cfg.DataDir, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("nats.dataDir %s is in use by another ferry process (its embedded NATS); connect to that one (nats.listen) or use another data dir", cfg.DataDir)
	}
	opts := &server.Options{
		ServerName: "ferry",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		MaxPayload: cfg.MaxPayload,
		NoSigs:     true,
		NoLog:      true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("starting embedded NATS: %w", err)
	}
	go func() {
		srv.WaitForShutdown()
		lock.Close() // releases the lock
	}()
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("embedded NATS did not start listening on %s (is the port in use by another ferry?)", cfg.Listen)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded NATS: JetStream did not start (data dir %s)", cfg.DataDir)
	}
	return srv, nil
}

// Embedded reports whether this connection runs its own server.
func (c *Conn) Embedded() bool { return c.embedded != nil }

// Close drains the connection and stops the embedded server, if any.
func (c *Conn) Close() {
	if c.NC != nil {
		_ = c.NC.Drain()
		// Drain is asynchronous; wait for it so that pending acks are sent.
		for i := 0; i < 100 && !c.NC.IsClosed(); i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if c.embedded != nil {
		c.embedded.Shutdown()
		c.embedded.WaitForShutdown()
	}
}

func redactURL(u string) string { return config.Redact(u) }

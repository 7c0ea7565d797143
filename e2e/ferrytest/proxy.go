package ferrytest

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections from a local port to a server, and can cut
// every connection it carries at once: the "close the socket" fault for
// servers that have no way to end a client's session from inside (an HTTP
// emulator, a database without a kill command the test can aim).
// Connections made after a cut are forwarded again, as after a network
// blip.
type Proxy struct {
	Port int
	Addr string // 127.0.0.1:Port

	target string
	ln     net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// StartProxy listens on a free port and forwards to target (host:port). It
// stops when the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("starting a proxy to %s: %v", target, err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.Port = ln.Addr().(*net.TCPAddr).Port
	p.Addr = fmt.Sprintf("127.0.0.1:%d", p.Port)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
	})
	return p
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *Proxy) forward(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	p.conns[client], p.conns[server] = struct{}{}, struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, client)
		delete(p.conns, server)
		p.mu.Unlock()
		client.Close()
		server.Close()
	}()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(server, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, server); done <- struct{}{} }()
	<-done
}

// Cut closes every connection the proxy carries now and returns how many
// client connections that was.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			// A reset rather than an orderly close: what a dropped
			// connection looks like to the client.
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
	return n
}

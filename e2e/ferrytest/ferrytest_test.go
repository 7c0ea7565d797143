package ferrytest

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// An echo server behind the proxy: a cut ends the live connection, and a new
// one goes through again.
func TestProxyCut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	p := StartProxy(t, ln.Addr().String())
	echo := func(c net.Conn) error {
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := bufio.NewReader(c).ReadString('\n')
		return err
	}
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echo(c); err != nil {
		t.Fatalf("echo through the proxy: %v", err)
	}
	if n := p.Cut(); n != 1 {
		t.Fatalf("cut %d connections, want 1", n)
	}
	if err := echo(c); err == nil {
		t.Fatal("the connection still works after the cut")
	}
	c2, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := echo(c2); err != nil {
		t.Fatalf("a new connection after the cut: %v", err)
	}
}

// A seed picks its fault, so a replayed seed strikes the same one, and
// consecutive seeds cycle through all faults.
func TestFaultOf(t *testing.T) {
	seen := map[Fault]bool{}
	for seed := uint64(1000); seed < 1000+uint64(len(AllFaults)); seed++ {
		f := FaultOf(seed, AllFaults)
		if FaultOf(seed, AllFaults) != f {
			t.Fatal("FaultOf is not a function of the seed")
		}
		seen[f] = true
	}
	if len(seen) != len(AllFaults) {
		t.Fatalf("%d consecutive seeds picked %d faults, want all", len(AllFaults), len(seen))
	}
	if got := FaultOf(7, []Fault{NATSRestart}); got != NATSRestart {
		t.Fatalf("FaultOf with one fault = %s", got)
	}
}

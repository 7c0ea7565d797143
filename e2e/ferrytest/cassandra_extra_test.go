package ferrytest

import (
	"net"
	"os"
	"testing"
)

// PeerPorts finds a connection this process holds, by the port it goes to.
func TestPeerPorts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ports, err := PeerPorts(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	want := ln.Addr().(*net.TCPAddr).Port
	for _, port := range ports {
		if port == want {
			return
		}
	}
	t.Fatalf("the connection to port %d is not among %v", want, ports)
}

package demo

import (
	"fmt"
	"net"
	"net/http"
	"time"
)

// backendGreeting is what the built-in HTTP app answers.
const backendGreeting = "hello from the server app"

// backends are the "server app": an HTTP server and a UDP echo, both plain
// and on loopback, reachable only through the server proxy in a real setup.
type backends struct {
	httpLn net.Listener
	http   *http.Server
	udp    net.PacketConn
}

func startBackends() (*backends, error) {
	b := &backends{}
	var err error
	if b.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	b.http = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s (you asked for %s)\n", backendGreeting, r.URL.Path)
		})}
	go b.http.Serve(b.httpLn)
	if b.udp, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
		b.close()
		return nil, err
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := b.udp.ReadFrom(buf)
			if err != nil {
				return
			}
			b.udp.WriteTo(append([]byte("echo: "), buf[:n]...), from)
		}
	}()
	return b, nil
}

func (b *backends) close() {
	if b.http != nil {
		b.http.Close()
	}
	if b.udp != nil {
		b.udp.Close()
	}
}

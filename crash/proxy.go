package main

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// proxy is a TCP proxy on 127.0.0.1 in front of one upstream address. cut
// resets every proxied connection and closes the listener, so that new
// connections are refused; allow listens again on the same port.
type proxy struct {
	addr     string // 127.0.0.1:PORT, fixed for the proxy's life
	upstream string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool // true: the client side
	total int               // connections accepted
}

func newProxy(upstream string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{addr: ln.Addr().String(), upstream: upstream, conns: map[net.Conn]bool{}}
	p.serve(ln)
	return p, nil
}

func (p *proxy) url() string { return "nats://" + p.addr }

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.handle(c)
		}
	}()
}

// track adds c to the proxied connections; client says it is the client
// side. It refuses when the proxy was cut meanwhile.
func (p *proxy) track(c net.Conn, client bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	p.conns[c] = client
	return true
}

func (p *proxy) handle(client net.Conn) {
	if !p.track(client, true) {
		reset(client)
		return
	}
	up, err := net.DialTimeout("tcp", p.upstream, 2*time.Second)
	if err != nil || !p.track(up, false) {
		if up != nil {
			reset(up)
		}
		p.drop(client)
		return
	}
	p.mu.Lock()
	p.total++
	p.mu.Unlock()
	var once sync.Once
	done := func() { once.Do(func() { p.drop(client); p.drop(up) }) }
	go func() { _, _ = io.Copy(up, client); done() }()
	_, _ = io.Copy(client, up)
	done()
}

func (p *proxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	reset(c)
}

// reset closes c with a RST rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// cut closes the listener and resets every proxied connection, both
// halves. It returns how many connections (client side) it cut.
func (p *proxy) cut() int {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	conns := p.conns
	p.conns = map[net.Conn]bool{}
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	n := 0
	for c, client := range conns {
		reset(c)
		if client {
			n++
		}
	}
	return n
}

// allow listens again on the proxy's port.
func (p *proxy) allow() error {
	var err error
	for range 100 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(ln)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("proxy: listen again on %s: %w", p.addr, err)
}

func (p *proxy) close() { p.cut() }

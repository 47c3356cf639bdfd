//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/khadga/khadga/internal/rawsock"
)

// client is the load client of one combination: how it dials both servers,
// and (through benchConn.plain) how its connections write and read.
//
//   - tuned: lean, because the load client shares the two cores with the
//     server it measures, and every microsecond it spends per signal is
//     one the server cannot have. Sockets read and write with raw system
//     calls (rawio.go), buffers are 2 KiB and pooled, the write deadline
//     moves half-way rather than per signal, and over ws the relay phases
//     read with the bench's own frame reader (rawread.go). Over wss the
//     raw system calls sit under crypto/tls and gorilla reads the frames
//     into one reused buffer.
//   - plain: gorilla/websocket as users run it: websocket.DefaultDialer's
//     settings (default buffer sizes), a write deadline and one
//     WriteMessage per signal, a ReadMessage loop.
type client struct {
	mode   string
	scheme string
	dialer *websocket.Dialer
	// http reaches khadga's API and readiness check, trusting what the
	// dialer trusts.
	http *http.Client
}

// presence says whether this client's connections open the presence
// feed: the plain client, as users' clients, does; the tuned one does not.
func (c *client) presence() bool { return c.mode == clientPlain }

// newClient builds the client of combination cb. roots are the
// certificates trusted for wss (nil: the system's): the bench's own
// self-signed one, never InsecureSkipVerify.
func newClient(cb combo, roots *x509.CertPool) *client {
	tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	c := &client{mode: cb.Client, scheme: cb.Scheme}
	if cb.Client == clientPlain {
		d := *websocket.DefaultDialer
		d.TLSClientConfig = tc
		c.dialer = &d
	} else {
		c.dialer = tunedDialer(tc)
	}
	c.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	return c
}

// tunedDialer keeps the bench's own memory modest at 10,000 connections
// (small buffers; a 1 KiB signal fits) and its CPU low (raw system calls).
func tunedDialer(tc *tls.Config) *websocket.Dialer {
	return &websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return rawsock.Wrap(c), nil
		},
		TLSClientConfig:  tc,
		HandshakeTimeout: 30 * time.Second,
		ReadBufferSize:   2048,
		WriteBufferSize:  2048,
		WriteBufferPool:  &sync.Pool{},
	}
}

// httpScheme is the scheme of the servers' HTTP side: https with wss.
func (c *client) httpScheme() string {
	if c.scheme == schemeWSS {
		return "https"
	}
	return "http"
}

// conn wraps a connection this client dialed.
func (c *client) conn(ws *websocket.Conn, id string) *benchConn {
	return &benchConn{ws: ws, id: id, plain: c.mode == clientPlain}
}

// close releases the client's idle HTTP connections.
func (c *client) close() { c.http.CloseIdleConnections() }

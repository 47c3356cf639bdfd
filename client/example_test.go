package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// Example shows the event style: everything a room reports arrives on
// Room.Events, in order. Two users join a room, connect peer to peer, and
// one sends the other a chat message.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	server, stop := exampleServer(ctx) // a khadga server on 127.0.0.1
	defer stop()

	// Loopback candidates only, so that the example runs anywhere.
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })

	alice, err := client.Dial(ctx, server, client.Credentials{Username: "alice", Password: "correct horse battery"}, client.WithSettingEngine(se))
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := client.Dial(ctx, server, client.Credentials{Username: "bob", Password: "correct horse battery"}, client.WithSettingEngine(se))
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	aliceRoom, err := alice.Join(ctx, "lobby")
	if err != nil {
		log.Fatal(err)
	}
	bobRoom, err := bob.Join(ctx, "lobby")
	if err != nil {
		log.Fatal(err)
	}

	// Alice says hello as soon as the peer connection to bob is open.
	for ev := range aliceRoom.Events() {
		if c, ok := ev.(*client.PeerConnected); ok {
			fmt.Println("alice is connected to", c.Member.User)
			if _, err := aliceRoom.Send("hello, bob"); err != nil {
				log.Fatal(err)
			}
			break
		}
	}
	for ev := range bobRoom.Events() {
		switch ev := ev.(type) {
		case *client.MemberJoined:
			fmt.Println("bob sees", ev.Member.User, "in the room")
		case *client.Message:
			fmt.Printf("%s says %q\n", ev.From.User, ev.Text)
			return
		}
	}
	// Output:
	// alice is connected to bob
	// bob sees alice in the room
	// alice says "hello, bob"
}

// exampleServer starts a signaling server with users alice and bob.
func exampleServer(ctx context.Context) (url string, stop func()) {
	dir, err := os.MkdirTemp("", "khadga-example")
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv, err := signaling.New(signaling.Config{DataDir: dir, Password: signalingtest.CheapPassword}, ln)
	if err != nil {
		log.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(sctx) }()
	url = "http://" + ln.Addr().String()
	for _, u := range []string{"alice", "bob"} {
		body, _ := json.Marshal(map[string]string{"username": u, "password": "correct horse battery"})
		resp, err := http.Post(url+"/api/register", "application/json", bytes.NewReader(body))
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			log.Fatalf("register %s: %s", u, resp.Status)
		}
	}
	return url, func() { cancel(); <-done; os.RemoveAll(dir) }
}

package client

import (
	"testing"

	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
)

func TestNetUnset(t *testing.T) {
	var se webrtc.SettingEngine
	if !netUnset(&se) {
		t.Fatal("a fresh SettingEngine reports a network set: pion's field moved, and the client lost its socket buffers")
	}
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	se.SetNet(n)
	if netUnset(&se) {
		t.Fatal("a caller's network would be replaced")
	}
}

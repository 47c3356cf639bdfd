package main

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestConfigLayers: each command's defaults (the per-command timeout
// included), then KHADGA_PEER_* variables, then flags; KHADGA_USER and
// KHADGA_PEER_CONFIG keep their old meaning.
func TestConfigLayers(t *testing.T) {
	e := &env{stderr: new(strings.Builder), configDir: ""}
	var s sendConfig
	rest, err := parse(e, &s, &s.common, 5*time.Minute, peerCommand(e, "send", "send", "", ""), []string{"f.txt", "--room", "r", "--to", "bob"})
	if err != nil || len(rest) != 1 || s.Timeout != 5*time.Minute || s.LogLevel != slog.LevelWarn {
		t.Fatalf("send defaults: %+v %q %v", s, rest, err)
	}

	t.Setenv("KHADGA_PEER_TIMEOUT", "1m")
	t.Setenv("KHADGA_PEER_RELAY", "true")
	t.Setenv("KHADGA_PEER_CONFIG", "/tokens/from/env")
	t.Setenv("KHADGA_USER", "alice")
	var l loginConfig
	if _, err := parse(e, &l, &l.common, 0, peerCommand(e, "login", "login", "", ""), []string{"--server", "http://x", "--timeout", "2m"}); err != nil {
		t.Fatal(err)
	}
	if l.Timeout != 2*time.Minute || !l.Relay || l.ConfigDir != "/tokens/from/env" || l.User != "alice" {
		t.Errorf("login: timeout %v relay %v config %q user %q", l.Timeout, l.Relay, l.ConfigDir, l.User)
	}

	var v videoConfig
	_, err = parse(e, &v, &v.common, 0, peerCommand(e, "video", "video", "", ""), []string{"--room", "r", "--pattern"})
	var ce *codeError
	if !errors.As(err, &ce) || ce.code != exitUsage || !strings.Contains(err.Error(), "--pattern needs --to") {
		t.Errorf("video --pattern without --to: %v", err)
	}
	t.Setenv("KHADGA_PEER_TIMEOUT", "soon")
	_, err = parse(e, &v, &v.common, 0, peerCommand(e, "video", "video", "", ""), []string{"--room", "r", "--record-to", "d"})
	if !errors.As(err, &ce) || ce.code != exitUsage || !strings.Contains(err.Error(), `KHADGA_PEER_TIMEOUT: "soon"`) {
		t.Errorf("a bad KHADGA_PEER_TIMEOUT: %v", err)
	}
}

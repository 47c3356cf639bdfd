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

// TestTimeoutGiven: only a --timeout the user gave (flag or environment)
// bounds transfers; a command's default bounds the wait alone, so that
// it never cuts a large transfer.
func TestTimeoutGiven(t *testing.T) {
	e := &env{stderr: new(strings.Builder)}
	args := []string{"--room", "r"}
	cases := []struct {
		name  string
		env   string
		args  []string
		want  time.Duration
		given bool
	}{
		{"default", "", args, 10 * time.Minute, false},
		{"flag", "", append(args, "--timeout", "3s"), 3 * time.Second, true},
		{"flag equal to the default", "", append(args, "--timeout", "10m"), 10 * time.Minute, true},
		{"never", "", append(args, "--timeout", "0"), 0, true},
		{"environment", "1m", args, time.Minute, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("KHADGA_PEER_TIMEOUT", tc.env)
			}
			var c recvConfig
			if _, err := parse(e, &c, &c.common, 10*time.Minute, peerCommand(e, "recv", "recv", "", ""), tc.args); err != nil {
				t.Fatal(err)
			}
			if c.Timeout != tc.want || c.timeoutSet != tc.given {
				t.Errorf("timeout %v given %v, want %v given %v", c.Timeout, c.timeoutSet, tc.want, tc.given)
			}
		})
	}
	var c recvConfig
	_, err := parse(e, &c, &c.common, 10*time.Minute, peerCommand(e, "recv", "recv", "", ""), append(args, "--timeout", "-5s"))
	var ce *codeError
	if !errors.As(err, &ce) || ce.code != exitUsage || !strings.Contains(err.Error(), "must not be negative") {
		t.Errorf("a negative --timeout: %v", err)
	}
}

package main

import (
	"errors"
	"flag"
	"github.com/khadga/khadga/signaling/cluster"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/config"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/signaling/store/kvstore"
	"github.com/khadga/khadga/turn"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "khadga.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadServe loads serve's configuration from args without starting it.
func loadServe(t *testing.T, args ...string) (*serveConfig, error) {
	t.Helper()
	var c serveConfig
	cmd := serveCommand
	cmd.Output = new(strings.Builder)
	err := loadNoArgs(&c, cmd, args)
	return &c, err
}

func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, "http: 127.0.0.1:7000\nresume-window: 10s\ndata: /from/file\nallow-origin: [https://a.example, https://b.example]\nturn-user-quota: 4\n")
	t.Setenv("KHADGA_DATA", "/from/env")
	t.Setenv("KHADGA_TURN_USER_QUOTA", "5")
	c, err := loadServe(t, "--config", path, "--resume-window", "45s", "--turn-user-quota", "6")
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP != "127.0.0.1:7000" {
		t.Errorf("http = %q, want the file's value", c.HTTP)
	}
	if c.Data != "/from/env" {
		t.Errorf("data = %q, want the environment's value over the file's", c.Data)
	}
	if c.ResumeWindow != 45*time.Second || c.TURN.UserQuota != 6 {
		t.Errorf("resume-window = %v, turn-user-quota = %d, want the command line's values", c.ResumeWindow, c.TURN.UserQuota)
	}
	if got := strings.Join(c.AllowOrigins, ","); got != "https://a.example,https://b.example" {
		t.Errorf("allow-origin = %q", got)
	}
	if c.AccessTTL != 15*time.Minute {
		t.Errorf("access-ttl = %v, want the default", c.AccessTTL)
	}
}

func TestConfigFileFromEnvironment(t *testing.T) {
	t.Setenv("KHADGA_CONFIG", writeConfig(t, "turn-listen: \"off\"\n"))
	c, err := loadServe(t)
	if err != nil || c.TURN.enabled() {
		t.Fatalf("turn-listen %q, %v: want the file KHADGA_CONFIG names", c.TURN.Listen, err)
	}
}

func TestConfigListOverride(t *testing.T) {
	t.Setenv("KHADGA_ALLOW_ORIGIN", "https://env.example")
	c, err := loadServe(t, "--allow-origin", "https://cli.example")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.AllowOrigins, ","); got != "https://cli.example" {
		t.Fatalf("allow-origin = %q, want the command line's list only", got)
	}
}

// TestConfigReportsEveryProblem: the file's, the environment's and the
// checks' problems come at once, the file's with their line and key. A
// nested value, which the old map[string]any decoding turned into the
// string "map[...]", is one of them.
func TestConfigReportsEveryProblem(t *testing.T) {
	path := writeConfig(t, "htp: 1\nresume-window: soon\nturn-colour: blue\nhttp:\n  host: 0.0.0.0\n  port: 8080\nturn-ports: lots\naccess-ttl: 48h\n")
	t.Setenv("KHADGA_RESUME_WINDOW", "")
	os.Unsetenv("KHADGA_RESUME_WINDOW")
	t.Setenv("KHADGA_TURN_TTL", "forever")
	_, err := loadServe(t, "--config="+path, "--turn-deny-peer", "nonsense", "--max-owned-rooms", "-1")
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		path + ":1: htp: unknown key",
		path + `:2: resume-window: "soon" is not a duration`,
		path + ":3: turn-colour: unknown key",
		path + ":4: http: want a single value, got a mapping",
		path + `:7: turn-ports: "lots": want MIN-MAX`,
		`KHADGA_TURN_TTL: "forever" is not a duration`,
		"access token lifetime 48h0m0s must be between 1m and 24h", // signaling's Validate
		`deny peer: "nonsense" is neither a CIDR nor an IP`,        // turn's Validate
		"max owned rooms must be at least 1",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %s:\n%v", want, err)
		}
	}
}

func TestConfigRefusesArguments(t *testing.T) {
	if _, err := loadServe(t, "extra"); err == nil || !strings.Contains(err.Error(), `unexpected arguments ["extra"]`) {
		t.Errorf("serve with an argument: %v", err)
	}
}

// TestExampleConfigLoads: `khadga config example`, uncommented, is a valid
// file that loads as the defaults, with every setting of serve in it.
func TestExampleConfigLoads(t *testing.T) {
	var def serveConfig
	if err := config.Defaults(&def); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := config.Example(&b, &def, serveCommand); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "# ") && !strings.Contains(l, "(env KHADGA_") {
			lines = append(lines, strings.TrimPrefix(l, "# "))
		}
	}
	if len(lines) < 35 {
		t.Fatalf("example has only %d settings:\n%s", len(lines), b.String())
	}
	c, err := loadServe(t, "--config", writeConfig(t, strings.Join(lines, "\n")+"\n"))
	if err != nil {
		t.Fatalf("the example config does not load: %v\n%s", err, strings.Join(lines, "\n"))
	}
	if !reflect.DeepEqual(*c, def) {
		t.Errorf("the example loads as\n%+v\nwant the defaults\n%+v", *c, def)
	}
}

// TestDefaultsAreLibraryDefaults: the default tags repeat package turn's,
// signaling's and proto's defaults; this keeps them equal.
func TestDefaultsAreLibraryDefaults(t *testing.T) {
	var s serveConfig
	var u userConfig
	var k tokenConfig
	for _, c := range []any{&s, &u, &k} {
		if err := config.Defaults(c); err != nil {
			t.Fatal(err)
		}
	}
	sc := signaling.Config{}.WithDefaults()
	lc := turn.ListenConfig{}.WithDefaults()
	tc := turn.Config{}.WithDefaults()
	for _, g := range []struct {
		name      string
		got, want any
	}{
		{"turn-listen", s.TURN.Listen, lc.Addr},
		{"turn-tls-listen", s.TURN.TLSListen, turn.DefaultTLSListen},
		{"turn-ports", s.TURN.Ports, portRange{tc.RelayMinPort, tc.RelayMaxPort}},
		{"turn-realm", s.TURN.Realm, tc.Realm},
		{"turn-ttl", s.TURN.TTL, tc.CredentialTTL},
		{"turn-user-quota", s.TURN.UserQuota, tc.UserQuota},
		{"turn-permission-quota", s.TURN.PermissionQuota, tc.PermissionQuota},
		{"turn-channel-quota", s.TURN.ChannelQuota, tc.ChannelQuota},
		{"turn-user-bandwidth", s.TURN.UserBandwidth, tc.UserBandwidth},
		{"max-room-members", s.Rooms.MaxRoomMembers, sc.MaxRoomMembers},
		{"max-owned-rooms", s.Rooms.MaxOwnedRooms, sc.MaxOwnedRooms},
		{"turn-public-ip-interval", s.TURN.PublicIPEvery, tc.PublicIPEvery},
		{"user --role", u.Role, proto.RoleUser},
		{"token --role", k.Role, proto.RoleUser},
		{"nats-replicas", s.NATS.Replicas, kvstore.DefaultReplicas},
		{"nats-subject", s.NATS.Subject, kvstore.DefaultPrefix},
		{"nats-audit-max", s.NATS.AuditMax, store.DefaultAuditMax},
		{"nats-audit-age", s.NATS.AuditMaxAge, kvstore.DefaultAuditMaxAge},
		{"nats-revocation-age", s.NATS.RevocationAge, cluster.DefaultRevocationReplay},
	} {
		if g.got != g.want {
			t.Errorf("%s default %v, library default %v", g.name, g.got, g.want)
		}
	}
}

// TestHelpNamesEveryVariable: --help lists each flag with its KHADGA_*
// variable and default, for every command.
func TestHelpNamesEveryVariable(t *testing.T) {
	for _, c := range []struct {
		cfg  any
		cmd  config.Command
		want []string
	}{
		{&serveConfig{}, serveCommand, []string{"--http (KHADGA_HTTP)", "(default 127.0.0.1:8080)", "--turn-ports (KHADGA_TURN_PORTS)", "(default 49152-65535)", "--config FILE (KHADGA_CONFIG)"}},
		{&turnCommandConfig{}, turnCommand, []string{"--turn-metrics (KHADGA_TURN_METRICS)", "--log-json (KHADGA_LOG_JSON)"}},
		{&credentialsConfig{}, credentialsCommand, []string{"--user (KHADGA_USER)", "--turn-secret (KHADGA_TURN_SECRET)"}},
		{&userConfig{}, userCommand, []string{"--admin-socket (KHADGA_ADMIN_SOCKET)", "--password (KHADGA_PASSWORD)", "(default -)"}},
		{&tokenConfig{}, tokenCommand, []string{"--room (KHADGA_ROOM)", "--refresh (KHADGA_REFRESH)", "at most 8760h\n"}},
		{&adminConfig{}, keysCommand, []string{"--data (KHADGA_DATA)", "khadga keys list|rotate|retire [--] KID"}},
		{&adminConfig{}, backupCommand, []string{"--data (KHADGA_DATA)", "(default khadga-data)"}},
	} {
		var out strings.Builder
		cmd := c.cmd
		cmd.Output = &out
		if _, err := load(c.cfg, cmd, []string{"--help"}); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s --help: %v", cmd.Name, err)
		}
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s --help lacks %q:\n%s", cmd.Name, w, out.String())
			}
		}
	}
}

// TestAdminCommandsReadTheServersFile: the admin commands take the
// server's config file (as KHADGA_CONFIG in a container's environment has
// them do): they skip the keys of other commands and keep refusing a key
// no command knows. They used to refuse the first serve key.
func TestAdminCommandsReadTheServersFile(t *testing.T) {
	path := writeConfig(t, "http: 0.0.0.0:8443\ndata: /var/lib/khadga\nmetrics-token: abc\nturn-listen: off\n")
	var c userConfig
	if _, err := load(&c, userCommand, []string{"list", "--config", path}); err != nil {
		t.Fatalf("khadga user list --config with the server's file: %v", err)
	}
	if c.Admin.Data != "/var/lib/khadga" {
		t.Fatalf("data %q, want the file's", c.Admin.Data)
	}
	typo := writeConfig(t, "data: /var/lib/khadga\ndatta: /tmp\n")
	if _, err := load(&c, userCommand, []string{"list", "--config", typo}); err == nil || !strings.Contains(err.Error(), "datta: unknown key") {
		t.Fatalf("a key no command knows: %v, want unknown key", err)
	}
}

// TestServeRefusesWhatTheHubWould: settings the hub refuses are refused
// with the others, by flag name, before anything listens. They used to
// pass, so that serve made its store, started TURN and made a signing
// key, then stopped naming Go fields ("hub: MaxConnsPerUser must be
// positive"); and a zero resume window or access-token lifetime
// silently became 30s and 15m, and --max-owned-rooms 0 (nobody claims
// rooms) became 10.
func TestServeRefusesWhatTheHubWould(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--presence", "bogus"}, `--presence "bogus": want global or rooms`},
		{[]string{"--max-conns-per-user", "-1"}, "--max-conns-per-user -1: want at least 1"},
		{[]string{"--presence-list", "-5"}, "--presence-list -5: want at least 1"},
		{[]string{"--ws-signal-bytes-rate", "-1"}, "--ws-signal-bytes-rate -1: want at least 1"},
		{[]string{"--ws-signal-burst-bytes", "100"}, "--ws-signal-burst-bytes 100: want at least 65536"},
		{[]string{"--resume-window", "0"}, "--resume-window 0s: want more than 0"},
		{[]string{"--access-ttl", "0"}, "--access-ttl 0s: want more than 0"},
		{[]string{"--max-owned-rooms", "0"}, "--max-owned-rooms 0: want at least 1"},
		{[]string{"--max-room-members", "0"}, "--max-room-members 0: want at least 2"},
		{[]string{"--max-conns-per-user", "0"}, "--max-conns-per-user 0: want at least 1"},
		{[]string{"--max-conns-per-addr", "0"}, "--max-conns-per-addr 0: want at least 1"},
		{[]string{"--ws-message-rate", "0"}, "--ws-message-rate 0: want more than 0"},
		{[]string{"--ws-message-burst", "0"}, "--ws-message-burst 0: want at least 1"},
	} {
		_, err := loadServe(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error saying %s", c.args, err, c.want)
		}
	}
	if _, err := loadServe(t, "--presence", "rooms", "--max-conns-per-user", "1", "--ws-signal-burst-bytes", "65536"); err != nil {
		t.Errorf("good settings refused: %v", err)
	}
}

// TestNATSSettings: cluster mode is on with the file's `nats` key, the
// environment's KHADGA_NATS or the command line's --nats, each a comma-
// separated list, in that order of precedence; the credentials and TLS
// files reach the NATS connection. Without any, serve is a single node.
func TestNATSSettings(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{}
	for _, name := range []string{"user.creds", "ca.pem", "cert.pem", "key.pem"} {
		files[name] = filepath.Join(dir, name)
		if err := os.WriteFile(files[name], []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := loadServe(t); err != nil || c.NATS.enabled() {
		t.Fatalf("no NATS setting: cluster mode %v (%v), want a single node", c.NATS.enabled(), err)
	}
	path := writeConfig(t, "nats: nats://file-a:4222,nats://file-b:4222\nnats-creds: "+files["user.creds"]+
		"\nnats-ca: "+files["ca.pem"]+"\nnats-cert: "+files["cert.pem"]+"\nnats-key: "+files["key.pem"]+"\n")
	servers := func(args ...string) []string {
		t.Helper()
		c, err := loadServe(t, append([]string{"--config", path}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		o := c.NATS.options("", nil)
		if o.Creds != files["user.creds"] || o.CAFile != files["ca.pem"] || o.CertFile != files["cert.pem"] || o.KeyFile != files["key.pem"] {
			t.Errorf("the connection's files: %+v, want the file's", o)
		}
		return o.Servers()
	}
	if got := strings.Join(servers(), " "); got != "nats://file-a:4222 nats://file-b:4222" {
		t.Errorf("nats from the file: %q", got)
	}
	t.Setenv("KHADGA_NATS", "nats://env-a:4222,tls://env-b:4443")
	if got := strings.Join(servers(), " "); got != "nats://env-a:4222 tls://env-b:4443" {
		t.Errorf("KHADGA_NATS over the file: %q", got)
	}
	if got := strings.Join(servers("--nats", "nats://cli:4222"), " "); got != "nats://cli:4222" {
		t.Errorf("--nats over KHADGA_NATS: %q", got)
	}
}

// TestACMEFlagsNeedADomain: the ACME settings other than --acme-domain do
// nothing without it, so setting one alone is a mistake to name (a
// forgotten or misspelt domain key served plain HTTP without a word), and
// the domains' own problems come with the other configuration problems,
// before anything starts.
func TestACMEFlagsNeedADomain(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" means no error
	}{
		{[]string{"--acme-email", "ops@example.org"}, "--acme-email needs --acme-domain"},
		{[]string{"--acme-directory", "https://ca.example/dir"}, "--acme-directory needs --acme-domain"},
		{[]string{"--acme-http", "127.0.0.1:8081"}, "--acme-http needs --acme-domain"},
		{[]string{"--acme-domain", "*.example.org,localhost", "--access-ttl", "48h"}, `domain "localhost": needs at least two labels`},
		{[]string{"--acme-domain", "chat.example.org", "--acme-email", "ops@example.org", "--acme-http", "127.0.0.1:8081"}, ""},
		{nil, ""},
	} {
		_, err := loadServe(t, tc.args...)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want an error saying %s", tc.args, err, tc.want)
		}
	}
	// Reported at once with the other problems (here the access-ttl).
	_, err := loadServe(t, "--acme-domain", "*.example.org", "--access-ttl", "48h")
	if err == nil || !strings.Contains(err.Error(), "access token lifetime") || !strings.Contains(err.Error(), `"*.example.org"`) {
		t.Errorf("bad domain and access-ttl: %v, want both", err)
	}
}

// TestConfigNamesEachProblemOnce: a bad setting is reported once, and
// never as a setting the operator cannot see. --access-ttl 48h also
// reported "bot access token lifetime 48h0m0s", a value with no flag that
// follows --access-ttl, and a negative --resume-window or --access-ttl
// came out twice, once from serve's own check ("want more than 0") and
// once from the signaling server's ("between 0 and 10m").
func TestConfigNamesEachProblemOnce(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		about string // the words each report of the problem has
	}{
		{[]string{"--access-ttl", "48h"}, "access"},
		{[]string{"--access-ttl", "-1m"}, "access"},
		{[]string{"--resume-window", "-5s"}, "resume"},
	} {
		_, err := loadServe(t, tc.args...)
		if err == nil {
			t.Errorf("%q accepted", tc.args)
			continue
		}
		var lines []string
		for _, l := range strings.Split(err.Error(), "\n")[1:] { // after "bad configuration:"
			if strings.Contains(l, tc.about) {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || strings.Contains(err.Error(), "bot access") {
			t.Errorf("%q: reported as %q, want one line", tc.args, lines)
		}
	}
}

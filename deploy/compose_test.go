package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

const (
	composeFile = "docker-compose.yml"
	// testPublicIP stands for the operator's KHADGA_PUBLIC_IP.
	testPublicIP = "203.0.113.7"
)

// loadCompose loads docker-compose.yml the way `docker compose` does, with
// only env as the environment (no .env file, not the machine's variables).
func loadCompose(t *testing.T, env []string, profiles ...string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, composeFile)},
		cli.WithWorkingDirectory(root), cli.WithEnv(env), cli.WithProfiles(profiles))
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

func mustLoadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	p, err := loadCompose(t, []string{"KHADGA_PUBLIC_IP=" + testPublicIP}, profiles...)
	if err != nil {
		t.Fatalf("loading %s: %v", composeFile, err)
	}
	return p
}

func envValue(t *testing.T, svc types.ServiceConfig, name string) string {
	t.Helper()
	v, ok := svc.Environment[name]
	if !ok || v == nil {
		t.Fatalf("service %s: %s is not set", svc.Name, name)
	}
	return *v
}

func TestComposeServices(t *testing.T) {
	p := mustLoadCompose(t)
	if got := sortedKeys(p.Services); !slices.Equal(got, []string{"khadga"}) {
		t.Fatalf("services without a profile = %v, want [khadga]", got)
	}
	if _, ok := p.DisabledServices["recorder"]; !ok {
		t.Fatal("the recorder is not a disabled (profiled) service by default")
	}
	withRec := mustLoadCompose(t, "recorder")
	if got := sortedKeys(withRec.Services); !slices.Equal(got, []string{"khadga", "recorder"}) {
		t.Fatalf("services with --profile recorder = %v", got)
	}
	if got := withRec.Services["recorder"].Profiles; !slices.Equal(got, []string{"recorder"}) {
		t.Fatalf("recorder profiles = %v, want [recorder]", got)
	}
	k := p.Services["khadga"]
	if len(k.Profiles) != 0 {
		t.Fatalf("khadga has profiles %v: it must always run", k.Profiles)
	}
	if k.Build == nil || k.Build.Target != "server" {
		t.Fatalf("khadga build = %+v, want target server", k.Build)
	}
	if r := withRec.Services["recorder"]; r.Build == nil || r.Build.Target != "recorder" {
		t.Fatalf("recorder build = %+v, want target recorder", r.Build)
	}
}

// TestComposePublicIP: the public IP comes from KHADGA_PUBLIC_IP, and
// without it compose refuses to start rather than hand out a wrong address.
func TestComposePublicIP(t *testing.T) {
	k := mustLoadCompose(t).Services["khadga"]
	if got := envValue(t, k, "KHADGA_TURN_PUBLIC_IP"); got != testPublicIP {
		t.Fatalf("KHADGA_TURN_PUBLIC_IP = %q, want %q from KHADGA_PUBLIC_IP", got, testPublicIP)
	}
	_, err := loadCompose(t, nil)
	if err == nil || !strings.Contains(err.Error(), "KHADGA_PUBLIC_IP") {
		t.Fatalf("loading without KHADGA_PUBLIC_IP: err = %v, want one naming KHADGA_PUBLIC_IP", err)
	}
	// The recorder's variables must not be required when its profile is
	// off: compose interpolates disabled services too.
	if _, err := loadCompose(t, []string{"KHADGA_PUBLIC_IP=" + testPublicIP}); err != nil {
		t.Fatalf("loading with only KHADGA_PUBLIC_IP: %v", err)
	}
}

func TestComposePorts(t *testing.T) {
	k := mustLoadCompose(t).Services["khadga"]
	published := map[string]types.ServicePortConfig{} // "3478/udp"
	var relay []int
	for _, pc := range k.Ports {
		key := fmt.Sprintf("%d/%s", pc.Target, pc.Protocol)
		if _, dup := published[key]; dup {
			t.Errorf("port %s published twice", key)
		}
		published[key] = pc
		if pc.Protocol == "udp" && pc.Target != 3478 {
			relay = append(relay, int(pc.Target))
			if pc.Published != strconv.Itoa(int(pc.Target)) {
				t.Errorf("relay port %d published as %q: TURN hands out the port it bound, so the numbers must match", pc.Target, pc.Published)
			}
		}
	}
	httpPort := listenPort(t, envValue(t, k, "KHADGA_HTTP"))
	for _, want := range []string{fmt.Sprintf("%d/tcp", httpPort), "3478/udp", "3478/tcp"} {
		if _, ok := published[want]; !ok {
			t.Errorf("%s is not published (ports: %v)", want, sortedKeys(published))
		}
	}
	if pc := published[fmt.Sprintf("%d/tcp", httpPort)]; pc.HostIP != "127.0.0.1" {
		t.Errorf("plain HTTP is published on %q by default, want 127.0.0.1 (behind a TLS proxy)", pc.HostIP)
	}
	for _, key := range []string{"3478/udp", "3478/tcp"} {
		if pc := published[key]; pc.Published != "3478" {
			t.Errorf("TURN %s published on %q, want 3478 (clients are given 3478)", key, pc.Published)
		}
	}
	lo, hi := portRange(t, envValue(t, k, "KHADGA_TURN_PORTS"))
	slices.Sort(relay)
	if len(relay) != hi-lo+1 || relay[0] != lo || relay[len(relay)-1] != hi {
		t.Fatalf("published UDP relay ports %v do not match KHADGA_TURN_PORTS %d-%d", compactRange(relay), lo, hi)
	}
	for i := 1; i < len(relay); i++ {
		if relay[i] != relay[i-1]+1 {
			t.Fatalf("published relay ports have a gap at %d", relay[i-1])
		}
	}
	// Docker publishes ports one by one (iptables rules, maybe a proxy
	// process each): keep the range small.
	if n := hi - lo + 1; n > 1000 {
		t.Errorf("relay range of %d ports is too large for Docker", n)
	}
}

func TestComposeVolumesAndHealth(t *testing.T) {
	p := mustLoadCompose(t, "recorder")
	k := p.Services["khadga"]
	data := envValue(t, k, "KHADGA_DATA")
	vol := mountAt(t, k, data)
	if vol.Type != types.VolumeTypeVolume {
		t.Fatalf("%s is a %s mount, want a named volume", data, vol.Type)
	}
	if _, ok := p.Volumes[vol.Source]; !ok {
		t.Fatalf("volume %q is not declared at the top level", vol.Source)
	}
	hc := k.HealthCheck
	if hc == nil || hc.Disable || len(hc.Test) < 2 || hc.Test[0] != "CMD" {
		t.Fatalf("khadga healthcheck = %+v, want an exec-form CMD (the image has no shell)", hc)
	}
	if bin := hc.Test[1]; !strings.Contains(readRepoFile(t, "Dockerfile"), bin) {
		t.Fatalf("healthcheck runs %s, which the Dockerfile does not put in the image", bin)
	}
	if hc.Interval == nil || hc.Timeout == nil || hc.Retries == nil {
		t.Fatalf("healthcheck needs interval, timeout and retries: %+v", hc)
	}

	r := p.Services["recorder"]
	dep, ok := r.DependsOn["khadga"]
	if !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Fatalf("recorder depends_on khadga = %+v, want condition service_healthy", dep)
	}
	if _, ok := r.Environment["KHADGA_TOKEN"]; !ok {
		t.Fatal("recorder gets no KHADGA_TOKEN")
	}
	out := flagValue(r.Command, "out")
	if out == "" {
		t.Fatalf("recorder command %v has no --out", r.Command)
	}
	rv := mountAt(t, r, out)
	if rv.Type != types.VolumeTypeVolume {
		t.Fatalf("recorder output %s is a %s mount, want a named volume", out, rv.Type)
	}
	if _, ok := p.Volumes[rv.Source]; !ok {
		t.Fatalf("volume %q is not declared at the top level", rv.Source)
	}
	server := flagValue(r.Command, "server")
	if want := fmt.Sprintf("http://khadga:%d", listenPort(t, envValue(t, k, "KHADGA_HTTP"))); server != want {
		t.Fatalf("recorder --server = %q, want %q", server, want)
	}
	// A token never goes on the command line (ps, docker inspect).
	for _, a := range r.Command {
		if strings.Contains(a, "token") {
			t.Fatalf("recorder command carries a token argument: %v", r.Command)
		}
	}
}

// TestComposeEnvNamesAreFlags: every KHADGA_* variable the server gets is a
// real `khadga serve` flag (a typo would be silently ignored).
func TestComposeEnvNamesAreFlags(t *testing.T) {
	k := mustLoadCompose(t).Services["khadga"]
	checkEnvNames(t, "docker-compose.yml service khadga", sortedKeys(k.Environment))
}

// TestComposeRecorderFlags: the flags the recorder service passes exist in
// cmd/khadga-recorder (once it exists).
func TestComposeRecorderFlags(t *testing.T) {
	src := recorderSource(t)
	r := mustLoadCompose(t, "recorder").Services["recorder"]
	for _, a := range r.Command {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.Contains(src, strconv.Quote(name)) {
			t.Errorf("recorder flag --%s is not defined in cmd/khadga-recorder", name)
		}
	}
	if !strings.Contains(src, `"KHADGA_TOKEN"`) && !strings.Contains(src, `"token"`) {
		t.Error("cmd/khadga-recorder reads neither KHADGA_TOKEN nor --token")
	}
}

// composeVar matches ${NAME...} in the compose file; $$ is an escaped $.
var composeVar = regexp.MustCompile(`(^|[^$])\$\{([A-Za-z_][A-Za-z0-9_]*)`)

// TestComposeVariablesDocumented: every variable an operator can set for
// the compose file is explained in docs/deploy.md.
func TestComposeVariablesDocumented(t *testing.T) {
	compose := readRepoFile(t, composeFile)
	docs := readRepoFile(t, "docs/deploy.md")
	var vars []string
	for _, m := range composeVar.FindAllStringSubmatch(compose, -1) {
		if !slices.Contains(vars, m[2]) {
			vars = append(vars, m[2])
		}
	}
	if !slices.Contains(vars, "KHADGA_PUBLIC_IP") {
		t.Fatalf("found variables %v, want KHADGA_PUBLIC_IP among them", vars)
	}
	for _, v := range vars {
		if !regexp.MustCompile(`\b` + v + `\b`).MatchString(docs) {
			t.Errorf("docs/deploy.md does not document %s, which docker-compose.yml reads", v)
		}
	}
}

// mountAt returns the service's volume mounted at target.
func mountAt(t *testing.T, svc types.ServiceConfig, target string) types.ServiceVolumeConfig {
	t.Helper()
	for _, v := range svc.Volumes {
		if v.Target == target {
			return v
		}
	}
	t.Fatalf("service %s: nothing is mounted at %s", svc.Name, target)
	return types.ServiceVolumeConfig{}
}

// flagValue returns the value of --name=VALUE or --name VALUE in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func listenPort(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return n
}

// portRange parses MIN-MAX as khadga's --turn-ports does.
func portRange(t *testing.T, s string) (int, int) {
	t.Helper()
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if !ok || errors.Join(err1, err2) != nil || lo < 1024 || hi > 65535 || lo > hi {
		t.Fatalf("port range %q is not MIN-MAX within 1024-65535", s)
	}
	return lo, hi
}

func compactRange(ports []int) string {
	if len(ports) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d ports %d..%d", len(ports), ports[0], ports[len(ports)-1])
}

// docBlocks returns the fenced code blocks of lang in a docs page.
func docBlocks(t *testing.T, page, lang string) []string {
	t.Helper()
	var out []string
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllStringSubmatch(readRepoFile(t, page), -1) {
		out = append(out, m[1])
	}
	return out
}

// TestComposeACMEOverride: the docs/deploy.md override that serves HTTPS
// with ACME, merged onto docker-compose.yml as compose merges it: its
// variables are real flags, HTTPS is published, and since it publishes
// TURNS, the turn: URLs carry the certificate's name (a turns: URL with
// the IP fails the clients' certificate check).
func TestComposeACMEOverride(t *testing.T) {
	var override string
	for _, b := range docBlocks(t, "docs/deploy.md", "yaml") {
		if strings.Contains(b, "KHADGA_ACME_DOMAIN") {
			override = b
		}
	}
	if override == "" {
		t.Fatal("docs/deploy.md has no yaml block with KHADGA_ACME_DOMAIN")
	}
	file := filepath.Join(t.TempDir(), "docker-compose.override.yml")
	writeFile(t, file, override)
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, composeFile), file},
		cli.WithWorkingDirectory(root), cli.WithEnv([]string{"KHADGA_PUBLIC_IP=" + testPublicIP}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("the override does not load onto %s: %v", composeFile, err)
	}
	k := p.Services["khadga"]
	checkEnvNames(t, "docs/deploy.md ACME override", sortedKeys(k.Environment))
	targets := map[string]bool{}
	for _, pc := range k.Ports {
		targets[fmt.Sprintf("%d/%s", pc.Target, pc.Protocol)] = true
	}
	if https := listenPort(t, envValue(t, k, "KHADGA_HTTP")); !targets[fmt.Sprintf("%d/tcp", https)] {
		t.Errorf("KHADGA_HTTP's port %d is not published: %v", https, sortedKeys(targets))
	}
	if targets["5349/tcp"] {
		domain := envValue(t, k, "KHADGA_ACME_DOMAIN")
		if host, ok := k.Environment["KHADGA_TURN_URL_HOST"]; !ok || host == nil || *host != domain {
			t.Errorf("TURNS is published but KHADGA_TURN_URL_HOST is %v, want the certificate's name %s", host, domain)
		}
	}
}

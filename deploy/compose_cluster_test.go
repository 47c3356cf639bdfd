package deploy_test

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	natsserver "github.com/nats-io/nats-server/v2/server"
)

// The cluster profile's services, as docs/cluster.md names them.
var (
	clusterNATS  = []string{"nats-1", "nats-2", "nats-3"}
	clusterNodes = []string{"khadga-1", "khadga-2", "khadga-3"}
	clusterLB    = "lb"
)

const (
	clusterCaddyfile = "deploy/cluster/Caddyfile"
	natsClientPort   = 4222
	// The NATS passwords the tests give (hex, as the docs ask).
	testNATSPassword  = "5f2c9a7e1d3b8046c2e9f1a0b7d4e3c6"
	testRoutePassword = "a90d3e6f2b7c1845e0f9d2c3b6a7e8f1"
)

// TestComposeClusterProfile: the cluster profile adds exactly the three
// NATS servers, the three nodes and the load balancer, all under that
// profile, and leaves the default (the single node) as it was.
func TestComposeClusterProfile(t *testing.T) {
	def := mustLoadCompose(t)
	if got := sortedKeys(def.Services); !slices.Equal(got, []string{"khadga"}) {
		t.Fatalf("services without a profile = %v, want [khadga]", got)
	}
	p := mustLoadCompose(t, "cluster")
	want := append(append(append([]string{"khadga"}, clusterNATS...), clusterNodes...), clusterLB)
	slices.Sort(want)
	if got := sortedKeys(p.Services); !slices.Equal(got, want) {
		t.Fatalf("services with --profile cluster = %v, want %v", got, want)
	}
	for _, name := range want {
		if name == "khadga" {
			continue
		}
		if got := p.Services[name].Profiles; !slices.Equal(got, []string{"cluster"}) {
			t.Errorf("%s has profiles %v, want [cluster] (else it runs with the single node)", name, got)
		}
	}
	// The single node is the same service with or without the profile:
	// the cluster's anchors do not leak into it.
	if !reflect.DeepEqual(def.Services["khadga"], p.Services["khadga"]) {
		t.Error("the single node differs under the cluster profile")
	}
	if len(def.Services["khadga"].Command) != 0 {
		t.Errorf("the single node got a command %v: it runs the image's default, serve", def.Services["khadga"].Command)
	}
	// `up lb` brings up the whole cluster and only it.
	if got := dependencyClosure(p, clusterLB); !slices.Equal(got, withoutSingle(want)) {
		t.Errorf("docker compose up lb starts %v, want %v", got, withoutSingle(want))
	}
}

func withoutSingle(names []string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "khadga" })
}

// rootAbs is the absolute path of a file given from the repository root,
// as compose-go resolves a bind mount's source.
func rootAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join(root, filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// dependencyClosure is name and every service it depends on, sorted.
func dependencyClosure(p *types.Project, name string) []string {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		for dep := range p.Services[n].DependsOn {
			walk(dep)
		}
	}
	walk(name)
	return sortedKeys(seen)
}

// natsOptions parses a NATS service's command line with nats-server's own
// flag parser, as the container's nats-server does: with the service's
// environment, and its configuration file read from the host file bound
// where --config points.
func natsOptions(t *testing.T, svc types.ServiceConfig) *natsserver.Options {
	t.Helper()
	o, err := natsOptionsErr(t, svc)
	if err != nil {
		t.Fatalf("%s: nats-server refuses %v: %v", svc.Name, svc.Command, err)
	}
	return o
}

func natsOptionsErr(t *testing.T, svc types.ServiceConfig) (*natsserver.Options, error) {
	t.Helper()
	if !slices.Equal(svc.Entrypoint, []string{"nats-server"}) {
		t.Fatalf("%s entrypoint %v, want [nats-server] (the command is its flags)", svc.Name, svc.Entrypoint)
	}
	var args []string
	for _, a := range svc.Command {
		if conf, ok := strings.CutPrefix(a, "--config="); ok {
			m := mountAt(t, svc, conf)
			if m.Type != types.VolumeTypeBind || !m.ReadOnly {
				t.Fatalf("%s: %s is a %s mount (read-only %v), want a file of this repository bound read-only", svc.Name, conf, m.Type, m.ReadOnly)
			}
			a = "--config=" + m.Source
		}
		args = append(args, a)
	}
	for k, v := range serviceEnv(svc.Environment) {
		t.Setenv(k, v)
	}
	fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fail := func() { t.Fatalf("%s: the command %v asks for version or help", svc.Name, args) }
	return natsserver.ConfigureOptions(fs, args, fail, fail, fail)
}

// loadClusterCompose loads the cluster profile with the NATS passwords an
// operator puts in .env.
func loadClusterCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	p, err := loadCompose(t, []string{"KHADGA_PUBLIC_IP=" + testPublicIP, "KHADGA_NATS_PASSWORD=" + testNATSPassword,
		"KHADGA_NATS_ROUTE_PASSWORD=" + testRoutePassword}, append([]string{"cluster"}, profiles...)...)
	if err != nil {
		t.Fatalf("loading %s: %v", composeFile, err)
	}
	return p
}

// TestComposeClusterNATS: three NATS servers of one pinned version (the
// one the tests run in process), each with JetStream on a named volume of
// its own, in one cluster with routes to all three, and a health check.
func TestComposeClusterNATS(t *testing.T) {
	p := loadClusterCompose(t)
	version := goModVersion(t, "github.com/nats-io/nats-server/v2")
	clusterName := ""
	names := map[string]bool{}
	volumes := map[string]bool{}
	for _, name := range clusterNATS {
		svc := p.Services[name]
		if img := strings.TrimPrefix(version, "v") + "-alpine"; svc.Image != "nats:"+img {
			t.Errorf("%s image %q, want nats:%s: the version the tests run in process (go.mod), pinned", name, svc.Image, img)
		}
		o := natsOptions(t, svc)
		if !o.JetStream {
			t.Errorf("%s: JetStream is off", name)
		}
		if o.ServerName == "" || names[o.ServerName] {
			t.Errorf("%s: server name %q is empty or taken (JetStream needs one name a server)", name, o.ServerName)
		}
		names[o.ServerName] = true
		vol := mountAt(t, svc, o.StoreDir)
		if vol.Type != types.VolumeTypeVolume || volumes[vol.Source] {
			t.Errorf("%s: the JetStream store %s is on %s %q, want a named volume of its own", name, o.StoreDir, vol.Type, vol.Source)
		}
		volumes[vol.Source] = true
		if _, ok := p.Volumes[vol.Source]; !ok {
			t.Errorf("%s: volume %q is not declared at the top level", name, vol.Source)
		}
		if o.Cluster.Name == "" || clusterName != "" && o.Cluster.Name != clusterName {
			t.Errorf("%s: cluster name %q, others %q", name, o.Cluster.Name, clusterName)
		}
		clusterName = o.Cluster.Name
		if o.Cluster.Port == 0 {
			t.Fatalf("%s: no cluster listen port", name)
		}
		var routes []string
		for _, r := range o.Routes {
			routes = append(routes, r.Host)
		}
		slices.Sort(routes)
		var want []string
		for _, peer := range clusterNATS {
			want = append(want, fmt.Sprintf("%s:%d", peer, o.Cluster.Port))
		}
		if !slices.Equal(routes, want) {
			t.Errorf("%s: routes %v, want %v", name, routes, want)
		}
		if o.Port != 0 && o.Port != natsClientPort {
			t.Errorf("%s: client port %d, the nodes dial %d", name, o.Port, natsClientPort)
		}
		hc := svc.HealthCheck
		wantHC := fmt.Sprintf("http://127.0.0.1:%d/healthz", o.HTTPPort)
		if o.HTTPPort == 0 || hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" || !slices.Contains(hc.Test, wantHC) {
			t.Errorf("%s: health check %+v, want an exec-form CMD on %s", name, hc, wantHC)
		}
		// Monitoring answers anyone: only inside the container.
		if o.HTTPHost != "127.0.0.1" {
			t.Errorf("%s: monitoring on %q, want 127.0.0.1 (the health check runs inside the container)", name, o.HTTPHost)
		}
		if len(svc.Ports) > 0 {
			t.Errorf("%s publishes %v: only the cluster network may reach NATS", name, svc.Ports)
		}
	}
	if len(volumes) != len(clusterNATS) {
		t.Errorf("JetStream volumes %v, want one a server", sortedKeys(volumes))
	}
}

// TestComposeClusterNATSAuth: the NATS servers take only the user khadga
// with KHADGA_NATS_PASSWORD, and routes only with
// KHADGA_NATS_ROUTE_PASSWORD (every route URL carries it); a real
// nats-server with that authorization refuses everyone else and lets a
// node's KHADGA_NATS in, JetStream included. Without the passwords, unset
// or empty, nats-server refuses to start and names the missing one.
func TestComposeClusterNATSAuth(t *testing.T) {
	p := loadClusterCompose(t)
	for _, name := range clusterNATS {
		checkNATSAuth(t, name, natsOptions(t, p.Services[name]), testNATSPassword, testRoutePassword)
	}
	checkNATSAuthServes(t, natsOptions(t, p.Services[clusterNATS[0]]), envValue(t, p.Services[clusterNodes[0]], "KHADGA_NATS"))
	for _, env := range [][]string{
		{"KHADGA_NATS_ROUTE_PASSWORD=" + testRoutePassword},
		{"KHADGA_NATS_PASSWORD=", "KHADGA_NATS_ROUTE_PASSWORD=" + testRoutePassword},
		{"KHADGA_NATS_PASSWORD=" + testNATSPassword},
		{"KHADGA_NATS_PASSWORD=" + testNATSPassword, "KHADGA_NATS_ROUTE_PASSWORD="},
	} {
		unset := "KHADGA_NATS_PASSWORD"
		if strings.Contains(strings.Join(env, " "), "KHADGA_NATS_PASSWORD="+testNATSPassword) {
			unset = "KHADGA_NATS_ROUTE_PASSWORD"
		}
		q, err := loadCompose(t, append(env, "KHADGA_PUBLIC_IP="+testPublicIP), "cluster")
		if err != nil {
			t.Fatalf("loading with %v: %v (the single node needs no NATS passwords)", env, err)
		}
		for _, name := range clusterNATS {
			if _, err := natsOptionsErr(t, q.Services[name]); err == nil || !strings.Contains(err.Error(), unset+"_IS_NOT_SET") {
				t.Errorf("%s with %v: nats-server says %v, want a refusal naming %s_IS_NOT_SET", name, env, err, unset)
			}
		}
	}
}

// goModVersion is the version of module mod that go.mod requires.
func goModVersion(t *testing.T, mod string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(mod) + `\s+(v\S+)`).FindStringSubmatch(readRepoFile(t, "go.mod"))
	if m == nil {
		t.Fatalf("go.mod does not require %s", mod)
	}
	return m[1]
}

// TestComposeClusterNodes: three khadga nodes on all three NATS servers
// with three copies of the shared state, no bbolt volume, /readyz as their
// health, waiting for healthy NATS, and each with a TURN server of its own
// on its own published ports.
func TestComposeClusterNodes(t *testing.T) {
	p := loadClusterCompose(t)
	var wantNATS []string
	for _, n := range clusterNATS {
		wantNATS = append(wantNATS, fmt.Sprintf("%s:%d", n, natsClientPort))
	}
	turnPorts := map[string]string{} // published "3479/udp" -> node
	for _, name := range clusterNodes {
		svc := p.Services[name]
		if svc.Build == nil || svc.Build.Target != "server" || svc.Image != p.Services["khadga"].Image {
			t.Errorf("%s runs %q (build %+v), want the single node's image", name, svc.Image, svc.Build)
		}
		if len(svc.Command) == 0 || svc.Command[0] != "serve" {
			t.Fatalf("%s command %v, want serve ...", name, svc.Command)
		}
		// The URLs carry the password: in the environment, not on the
		// command line (ps on the host shows that).
		checkNATSURLs(t, name+" KHADGA_NATS", envValue(t, svc, "KHADGA_NATS"), wantNATS)
		for _, a := range svc.Command {
			if strings.Contains(a, "nats://") {
				t.Errorf("%s: NATS URLs on the command line: %q", name, a)
			}
		}
		if got := flagValue(svc.Command, "nats-replicas"); got != fmt.Sprint(len(clusterNATS)) {
			t.Errorf("%s --nats-replicas %q, want %d (a copy on each NATS server)", name, got, len(clusterNATS))
		}
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeVolume && v.Source != "" {
				t.Errorf("%s mounts volume %q: a cluster node keeps nothing on disk", name, v.Source)
			}
		}
		for _, n := range clusterNATS {
			if dep, ok := svc.DependsOn[n]; !ok || dep.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s depends_on %s = %+v, want service_healthy", name, n, dep)
			}
		}
		hc := svc.HealthCheck
		if hc == nil || !slices.Equal(hc.Test, p.Services["khadga"].HealthCheck.Test) {
			t.Errorf("%s health check %+v, want the image's /readyz check", name, hc)
		}
		if svc.StopGracePeriod == nil {
			t.Errorf("%s has no stop_grace_period for its drain", name)
		}
		if got := envValue(t, svc, "KHADGA_TURN_PUBLIC_IP"); got != testPublicIP {
			t.Errorf("%s KHADGA_TURN_PUBLIC_IP = %q, want %q", name, got, testPublicIP)
		}
		// TURN hands out the port it listens on and the relay ports it
		// binds: each node's are published on the same numbers, and no two
		// nodes (nor the single node) share one.
		listen := listenPort(t, envValue(t, svc, "KHADGA_TURN_LISTEN"))
		lo, hi := portRange(t, envValue(t, svc, "KHADGA_TURN_PORTS"))
		want := []string{fmt.Sprintf("%d/udp", listen), fmt.Sprintf("%d/tcp", listen)}
		for port := lo; port <= hi; port++ {
			want = append(want, fmt.Sprintf("%d/udp", port))
		}
		var got []string
		for _, pc := range svc.Ports {
			key := fmt.Sprintf("%d/%s", pc.Target, pc.Protocol)
			if pc.Published != fmt.Sprint(pc.Target) {
				t.Errorf("%s publishes %s as %q: the numbers must match", name, key, pc.Published)
			}
			if other, dup := turnPorts[key]; dup {
				t.Errorf("%s and %s both publish %s", name, other, key)
			}
			turnPorts[key] = name
			got = append(got, key)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s publishes %v, want exactly its TURN ports %v", name, compactKeys(got), compactKeys(want))
		}
	}
	for _, pc := range p.Services["khadga"].Ports {
		if node, dup := turnPorts[fmt.Sprintf("%d/%s", pc.Target, pc.Protocol)]; dup {
			t.Errorf("%s publishes %d/%s like the single node: both could not run at once", node, pc.Target, pc.Protocol)
		}
	}
	var names []string
	for _, name := range clusterNodes {
		names = append(names, sortedKeys(p.Services[name].Environment)...)
		for _, a := range p.Services[name].Command[1:] {
			flag, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			names = append(names, "KHADGA_"+strings.ToUpper(strings.ReplaceAll(flag, "-", "_")))
		}
	}
	checkEnvNames(t, "docker-compose.yml cluster nodes", names)
}

func compactKeys(keys []string) string {
	if len(keys) <= 4 {
		return fmt.Sprint(keys)
	}
	return fmt.Sprintf("%d ports %s..%s", len(keys), keys[0], keys[len(keys)-1])
}

// TestComposeClusterLoadBalancer: the load balancer runs a pinned Caddy
// with deploy/cluster/Caddyfile, which sends traffic to every node's HTTP
// port only while its /readyz answers 200 and hides /metrics; it has a
// fixed address on the cluster network, and that address is exactly what
// every node trusts for X-Forwarded-For. The headers themselves are
// checked by running that Caddyfile (TestComposeClusterRuns).
func TestComposeClusterLoadBalancer(t *testing.T) {
	p := mustLoadCompose(t, "cluster")
	lb := p.Services[clusterLB]
	if !regexp.MustCompile(`^caddy:2\.\d+\.\d+(-alpine)?$`).MatchString(lb.Image) {
		t.Errorf("load balancer image %q, want caddy pinned to a version", lb.Image)
	}
	conf := mountAt(t, lb, "/etc/caddy/Caddyfile")
	if conf.Type != types.VolumeTypeBind || conf.Source != rootAbs(t, clusterCaddyfile) || !conf.ReadOnly {
		t.Errorf("/etc/caddy/Caddyfile is %s %q (read-only %v), want %s bound read-only", conf.Type, conf.Source, conf.ReadOnly, clusterCaddyfile)
	}
	caddy := parseCaddySite(t, readRepoFile(t, clusterCaddyfile))
	var want []string
	for _, name := range clusterNodes {
		want = append(want, fmt.Sprintf("%s:%d", name, listenPort(t, envValue(t, p.Services[name], "KHADGA_HTTP"))))
	}
	if !slices.Equal(caddy.upstreams, want) {
		t.Errorf("Caddy proxies to %v, want every node %v", caddy.upstreams, want)
	}
	if caddy.options["health_uri"] != "/readyz" {
		t.Errorf("Caddy health_uri %q, want /readyz (a node without NATS gets no new clients)", caddy.options["health_uri"])
	}
	if caddy.options["lb_policy"] == "" {
		t.Error("Caddy has no lb_policy")
	}
	if !caddy.hidesMetrics {
		t.Error("the Caddyfile does not answer /metrics with 404")
	}
	if caddy.site != "{$KHADGA_DOMAIN}" || envValue(t, lb, "KHADGA_DOMAIN") == "" {
		t.Errorf("the site is %q with KHADGA_DOMAIN=%q, want {$KHADGA_DOMAIN} from the environment", caddy.site, envValue(t, lb, "KHADGA_DOMAIN"))
	}
	published := map[string]bool{}
	for _, pc := range lb.Ports {
		published[fmt.Sprintf("%s:%d/%s", pc.Published, pc.Target, pc.Protocol)] = true
	}
	if !published["443:443/tcp"] || !published["80:80/tcp"] {
		t.Errorf("load balancer publishes %v, want 80 (ACME, redirect) and 443", sortedKeys(published))
	}
	// The address the nodes trust.
	net, ok := lb.Networks["cluster"]
	if !ok || net == nil || net.Ipv4Address == "" {
		t.Fatalf("load balancer has no fixed address on the cluster network: %+v", lb.Networks)
	}
	addr := netip.MustParseAddr(net.Ipv4Address)
	in := false
	for _, c := range p.Networks["cluster"].Ipam.Config {
		in = in || netip.MustParsePrefix(c.Subnet).Contains(addr)
	}
	if !in {
		t.Errorf("load balancer address %s is outside the cluster network %+v", addr, p.Networks["cluster"].Ipam.Config)
	}
	for _, name := range clusterNodes {
		svc := p.Services[name]
		if got := flagValue(svc.Command, "trust-proxy"); got != addr.String() {
			t.Errorf("%s --trust-proxy %q, want the load balancer's %s (and nothing wider)", name, got, addr)
		}
		if _, ok := svc.Networks["cluster"]; !ok || len(svc.Networks) != 1 {
			t.Errorf("%s networks %v, want only cluster", name, sortedKeys(svc.Networks))
		}
	}
}

// caddySite is what the tests read of a Caddyfile with one site.
type caddySite struct {
	site         string
	upstreams    []string
	options      map[string]string // subdirectives of reverse_proxy
	hidesMetrics bool
}

// parseCaddySite reads the one site block of a Caddyfile. It is not
// Caddy's parser (TestComposeClusterRuns runs Caddy on the file); it finds
// what the file must say, so that a change to it fails here by name.
func parseCaddySite(t *testing.T, text string) caddySite {
	t.Helper()
	c := caddySite{options: map[string]string{}}
	inProxy := false
	for _, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch {
		case c.site == "" && strings.HasSuffix(line, "{"):
			c.site = strings.TrimSpace(strings.TrimSuffix(line, "{"))
		case f[0] == "reverse_proxy":
			c.upstreams = slices.DeleteFunc(f[1:], func(s string) bool { return s == "{" })
			inProxy = strings.HasSuffix(line, "{")
		case inProxy && line == "}":
			inProxy = false
		case inProxy:
			c.options[f[0]] = strings.Join(f[1:], " ")
		case slices.Equal(f, []string{"respond", "/metrics", "404"}):
			c.hidesMetrics = true
		}
	}
	if c.site == "" || len(c.upstreams) == 0 {
		t.Fatalf("Caddyfile: no site or no reverse_proxy:\n%s", text)
	}
	return c
}

// secretish names settings that hold secrets.
var secretish = regexp.MustCompile(`(?i)secret|token|password|passwd|creds|_key$|smtp_url`)

// TestComposeNoPlainSecrets: no service of any profile carries a secret in
// the file itself: secret settings come from the operator's environment
// (empty when unset), and no command line names one (ps, docker inspect).
func TestComposeNoPlainSecrets(t *testing.T) {
	p := mustLoadCompose(t, "cluster", "recorder")
	for _, name := range sortedKeys(p.Services) {
		svc := p.Services[name]
		for k, v := range svc.Environment {
			// Unset, a secret is empty, or for nats-server a reference to
			// a variable nobody sets, which it refuses.
			if secretish.MatchString(k) && v != nil && *v != "" && !unsetMarker.MatchString(*v) {
				t.Errorf("%s: %s has the value %q in docker-compose.yml; take it from the environment", name, k, *v)
			}
		}
		for _, a := range svc.Command {
			if secretish.MatchString(a) {
				t.Errorf("%s: command argument %q carries a secret", name, a)
			}
		}
	}
	// The check itself: a secret set in the environment shows up.
	withToken, err := loadCompose(t, []string{"KHADGA_PUBLIC_IP=" + testPublicIP, "KHADGA_METRICS_TOKEN=x",
		"KHADGA_NATS_PASSWORD=y", "KHADGA_NATS_ROUTE_PASSWORD=z"}, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range clusterNodes {
		if envValue(t, withToken.Services[name], "KHADGA_METRICS_TOKEN") != "x" {
			t.Errorf("%s does not take KHADGA_METRICS_TOKEN from the environment", name)
		}
	}
	for _, name := range clusterNATS {
		svc := withToken.Services[name]
		if envValue(t, svc, "NATS_KHADGA_PASSWORD") != "y" || envValue(t, svc, "NATS_ROUTE_PASSWORD") != "z" {
			t.Errorf("%s does not take the NATS passwords from the environment", name)
		}
	}
}

// unsetMarker is what a NATS password becomes when its variable is unset:
// a nats-server variable reference that nothing defines.
var unsetMarker = regexp.MustCompile(`^\$[A-Z_]+_IS_NOT_SET$`)

// TestComposeHardening: every service of every profile runs with a
// read-only root file system (its data on volumes, /tmp a tmpfs), all
// capabilities dropped (the load balancer keeps only the one for ports
// below 1024) and no-new-privileges.
func TestComposeHardening(t *testing.T) {
	p := loadClusterCompose(t, "recorder")
	if len(p.Services) != 1+1+len(clusterNATS)+len(clusterNodes)+1 {
		t.Fatalf("services %v: the test does not know them all", sortedKeys(p.Services))
	}
	for _, name := range sortedKeys(p.Services) {
		svc := p.Services[name]
		if !svc.ReadOnly {
			t.Errorf("%s: read_only is not true", name)
		}
		if !slices.Contains(svc.Tmpfs, "/tmp") {
			t.Errorf("%s: /tmp is not a tmpfs (tmpfs %v): the root file system is read-only", name, svc.Tmpfs)
		}
		if !slices.Equal(svc.CapDrop, []string{"ALL"}) {
			t.Errorf("%s: cap_drop %v, want [ALL]", name, svc.CapDrop)
		}
		wantAdd := []string(nil)
		if name == clusterLB {
			wantAdd = []string{"NET_BIND_SERVICE"}
		}
		if !slices.Equal(svc.CapAdd, wantAdd) {
			t.Errorf("%s: cap_add %v, want %v", name, svc.CapAdd, wantAdd)
		}
		if !slices.Contains(svc.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: security_opt %v lacks no-new-privileges:true", name, svc.SecurityOpt)
		}
	}
	// What each writes is on a volume (the root file system is read-only):
	// a volume of the compose file, or, for the cluster's nodes, whose
	// /data only holds the admin socket, the anonymous one Docker makes
	// for the image's VOLUME (owned by the image's user).
	writes := map[string][]string{"khadga": {envValue(t, p.Services["khadga"], "KHADGA_DATA")},
		"recorder": {flagValue(p.Services["recorder"].Command, "out")}, clusterLB: {"/data", "/config"}}
	for _, name := range clusterNATS {
		writes[name] = []string{natsOptions(t, p.Services[name]).StoreDir}
	}
	byName, _, _ := stagesByName(t)
	imageVolumes := strings.Join(byName["server"].all("VOLUME"), " ")
	for _, name := range clusterNodes {
		data := envValue(t, p.Services[name], "KHADGA_DATA")
		if !strings.Contains(imageVolumes, `"`+data+`"`) {
			t.Errorf("%s: KHADGA_DATA %s is not a VOLUME of the server image (%s): it would be read-only", name, data, imageVolumes)
		}
	}
	for name, paths := range writes {
		for _, path := range paths {
			if v := mountAt(t, p.Services[name], path); v.Type != types.VolumeTypeVolume {
				t.Errorf("%s writes %s, which is a %s mount", name, path, v.Type)
			}
		}
	}
}

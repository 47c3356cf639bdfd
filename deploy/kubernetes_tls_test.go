package deploy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	natsconf "github.com/nats-io/nats-server/v2/conf"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/khadga/khadga/internal/natsconn"
	"github.com/khadga/khadga/internal/testcert"
	"github.com/khadga/khadga/internal/testlog"
)

// k8sTLSDir is the cluster overlay with TLS to and between the NATS
// servers, certificates from cert-manager.
const k8sTLSDir = "deploy/kubernetes-cluster-tls"

// certificate is cert-manager's Certificate (cert-manager.io/v1).
type certificate struct {
	object `yaml:",inline"`
	Spec   struct {
		SecretName  string   `yaml:"secretName"`
		IsCA        bool     `yaml:"isCA"`
		CommonName  string   `yaml:"commonName"`
		DNSNames    []string `yaml:"dnsNames"`
		Usages      []string `yaml:"usages"`
		Duration    string   `yaml:"duration"`
		RenewBefore string   `yaml:"renewBefore"`
		IssuerRef   struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"issuerRef"`
	} `yaml:"spec"`
}

// issuer is cert-manager's Issuer: self-signed, or a CA from a Secret.
type issuer struct {
	object `yaml:",inline"`
	Spec   struct {
		SelfSigned *struct{} `yaml:"selfSigned"`
		CA         *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"ca"`
	} `yaml:"spec"`
}

// issue signs c's names and usages with ca, as cert-manager would, and
// ips besides (the addresses the test dials instead of the cluster's
// names), into the files of c's Secret: tls.crt, tls.key and ca.crt.
func issue(t *testing.T, ca *testcert.Cert, c certificate, ips ...net.IP) map[string][]byte {
	t.Helper()
	usage := map[string]x509.ExtKeyUsage{"server auth": x509.ExtKeyUsageServerAuth, "client auth": x509.ExtKeyUsageClientAuth}
	ext := []x509.ExtKeyUsage{}
	for _, u := range c.Spec.Usages {
		eu, ok := usage[u]
		if !ok {
			t.Fatalf("Certificate %s: usage %q the test does not know", c.Metadata.Name, u)
		}
		ext = append(ext, eu)
	}
	leaf, err := ca.Issue(testcert.Spec{CommonName: c.Spec.CommonName, DNSNames: c.Spec.DNSNames, IPs: ips, Usages: ext})
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{"tls.crt": leaf.CertPEM(), "tls.key": leaf.KeyPEM(), "ca.crt": ca.CertPEM()}
}

// newCA makes a CA for the test, standing for the deployment's.
func newCA(t *testing.T) *testcert.Cert {
	t.Helper()
	ca, err := testcert.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// tlsCertificates checks that every certificate of the overlay comes
// from a CA certificate that a self-signed issuer makes, through an
// Issuer that signs with it, and is renewed before it expires; it returns
// them by name.
func tlsCertificates(t *testing.T, byKind map[string][]manifest) map[string]certificate {
	t.Helper()
	certs := map[string]certificate{}
	bySecret := map[string]certificate{}
	for _, m := range byKind["Certificate"] {
		c := as[certificate](t, m)
		certs[c.Metadata.Name], bySecret[c.Spec.SecretName] = c, c
	}
	for _, c := range certs {
		if c.Spec.IssuerRef.Kind != "Issuer" {
			t.Errorf("Certificate %s: issuer kind %q, want the overlay's own Issuer", c.Metadata.Name, c.Spec.IssuerRef.Kind)
			continue
		}
		iss := named[issuer](t, byKind, "Issuer", c.Spec.IssuerRef.Name)
		switch {
		case c.Spec.IsCA && iss.Spec.SelfSigned == nil:
			t.Errorf("CA Certificate %s: issuer %s is not self-signed", c.Metadata.Name, iss.Metadata.Name)
		case !c.Spec.IsCA && (iss.Spec.CA == nil || !bySecret[iss.Spec.CA.SecretName].Spec.IsCA):
			t.Errorf("Certificate %s: issuer %s does not sign with the overlay's CA", c.Metadata.Name, iss.Metadata.Name)
		}
		if c.Spec.IsCA {
			continue
		}
		life, err1 := time.ParseDuration(c.Spec.Duration)
		renew, err2 := time.ParseDuration(c.Spec.RenewBefore)
		if err1 != nil || err2 != nil || renew <= 0 || renew >= life {
			t.Errorf("Certificate %s: duration %q, renewBefore %q; want a renewal before it expires",
				c.Metadata.Name, c.Spec.Duration, c.Spec.RenewBefore)
		}
	}
	return certs
}

// TestKubernetesClusterTLS: the TLS overlay gives NATS's client port and
// routes TLS with client certificates from the deployment's CA (as
// cert-manager issues them), and khadga the tls:// URLs and files to
// match. Two real nats-servers started from the overlay's configuration,
// with certificates issued as its Certificates say, route to each other
// over TLS; khadga's own NATS connection, configured as the Deployment
// configures it, reaches JetStream through them; a client without TLS,
// without a certificate, or with one of another CA is refused. The
// server certificate names every host that khadga and the routes dial,
// and a sidecar reloads nats-server when cert-manager renews the files.
func TestKubernetesClusterTLS(t *testing.T) {
	byKind := kustomizeBuild(t, k8sTLSDir)
	certs := tlsCertificates(t, byKind)
	ca := newCA(t)
	files := map[string]map[string][]byte{}
	for _, c := range certs {
		if !c.Spec.IsCA {
			files[c.Spec.SecretName] = issue(t, ca, c, net.IPv4(127, 0, 0, 1))
		}
	}
	sts := named[clusterPod](t, byKind, "StatefulSet", natsStatefulSet)
	nc := sts.Spec.Template.Spec.Containers[0]
	conf := natsConfPath(t, byKind, sts, files)
	root := strings.TrimSuffix(conf, flagValue(nc.Args, "config"))
	var opts []*natsserver.Options
	for _, pod := range []string{"nats-0", "nats-1"} {
		o, err := processNATSConf(t, conf, podEnv(t, nc.Env, pod, testSecrets))
		if err != nil {
			t.Fatalf("nats-server refuses the configuration: %v", err)
		}
		opts = append(opts, o)
	}
	o := opts[0]
	for what, tc := range map[string]*tls.Config{"clients": o.TLSConfig, "routes": o.Cluster.TLSConfig} {
		if tc == nil || tc.ClientAuth != tls.RequireAndVerifyClientCert {
			t.Fatalf("%s: TLS %v; want TLS with client certificates", what, tc != nil)
		}
	}
	node := named[clusterPod](t, byKind, "Deployment", "khadga")
	kc := node.Spec.Template.Spec.Containers[0]
	env := podEnv(t, kc.Env, "khadga-x", testSecrets)
	checkServerNames(t, o, env["KHADGA_NATS"])
	checkReloader(t, sts, o, root, flagValue(nc.Args, "config"))

	// Two servers, each routed to both as the configuration routes to all
	// three, their names replaced by the addresses they listen on.
	clusterAddrs := []string{freeAddr(t), freeAddr(t)}
	var servers []*natsserver.Server
	for i, o := range opts {
		var routes []*url.URL
		for _, addr := range clusterAddrs {
			r := *o.Routes[0]
			r.Host = addr
			routes = append(routes, &r)
		}
		servers = append(servers, serveNATS(t, o, clusterAddrs[i], routes...))
	}
	a, b := servers[0], servers[1]
	waitFor(t, 20*time.Second, "the two NATS servers to route to each other over TLS", func() bool {
		return a.NumRoutes() > 0 && b.NumRoutes() > 0
	})

	kroot := podFiles(t, byKind, node, kc.Name, files)
	var urls []string
	for i, s := range strings.Split(env["KHADGA_NATS"], ",") {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "tls" {
			t.Fatalf("KHADGA_NATS %s: want tls:// URLs", natsconn.Redact(s))
		}
		u.Host = []*natsserver.Server{a, b}[i%2].Addr().String()
		urls = append(urls, u.String())
	}
	kopts := natsconn.Options{URLs: urls, CAFile: kroot + env["KHADGA_NATS_CA"], CertFile: kroot + env["KHADGA_NATS_CERT"],
		KeyFile: kroot + env["KHADGA_NATS_KEY"], Logger: testlog.New(t, slog.LevelInfo)}
	if err := kopts.Validate(); err != nil {
		t.Fatalf("khadga refuses its NATS settings: %v", err)
	}
	conn, err := natsconn.Connect(kopts)
	if err != nil {
		t.Fatalf("khadga's NATS connection: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.WaitReady(ctx); err != nil {
		t.Fatalf("khadga's NATS connection over TLS never reached JetStream: %v", err)
	}
	checkTLSRefusals(t, a.Addr().String(), kopts, certs["khadga-nats-client"])
}

// checkServerNames fails unless the certificate o serves names every host
// that dials it: each route, and each server of khadgaURLs.
func checkServerNames(t *testing.T, o *natsserver.Options, khadgaURLs string) {
	t.Helper()
	leaf, err := x509.ParseCertificate(o.TLSConfig.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, r := range o.Routes {
		hosts = append(hosts, r.Hostname())
	}
	for _, s := range strings.Split(khadgaURLs, ",") {
		if u, err := url.Parse(s); err == nil {
			hosts = append(hosts, u.Hostname())
		}
	}
	for _, h := range hosts {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("the NATS servers' certificate does not name %s, which dials them: %v", h, err)
		}
	}
}

// checkReloader fails unless a sidecar in the NATS pods signals
// nats-server (through its pid file, in a shared process namespace) when
// any file of its configuration or certificate changes. root is where the
// test put the pod's files; conf the configuration file's path in the pod.
func checkReloader(t *testing.T, sts clusterPod, o *natsserver.Options, root, conf string) {
	t.Helper()
	spec := sts.Spec.Template.Spec
	i := slices.IndexFunc(spec.Containers, func(c clusterContainer) bool { return c.Name == "reloader" })
	if i < 0 || spec.ShareProcessNamespace == nil || !*spec.ShareProcessNamespace {
		t.Fatal("no reloader sidecar in a shared process namespace: a renewed certificate would wait for a restart")
	}
	args := spec.Containers[i].Args
	var watched []string
	for j := 0; j+1 < len(args); j++ {
		if args[j] == "--config" {
			watched = append(watched, args[j+1])
		}
	}
	// The files of the tls block, which the configuration includes.
	tlsConf := filepath.Join(filepath.Dir(conf), "tls.conf")
	m, err := natsconf.ParseFile(filepath.Join(root, tlsConf))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := m["tls"].(map[string]any)
	want := []string{conf, tlsConf}
	for _, k := range []string{"cert_file", "key_file", "ca_file"} {
		f, _ := block[k].(string)
		want = append(want, strings.TrimPrefix(f, root))
	}
	for _, f := range want {
		if !slices.Contains(watched, f) {
			t.Errorf("the reloader does not watch %s (it watches %v)", f, watched)
		}
	}
	if pid := flagValue(args, "pid"); pid != o.PidFile {
		t.Errorf("the reloader signals the pid file %q, want the configuration's %q", pid, o.PidFile)
	}
}

// checkTLSRefusals fails unless the NATS server at addr refuses khadga's
// user (with the right password) without TLS, over TLS without a client
// certificate, and with a client certificate of another CA.
func checkTLSRefusals(t *testing.T, addr string, kopts natsconn.Options, client certificate) {
	t.Helper()
	u, err := url.Parse(kopts.URLs[0])
	if err != nil {
		t.Fatal(err)
	}
	u.Host = addr
	plain := *u
	plain.Scheme = "nats"
	other := issue(t, newCA(t), client)
	dir := t.TempDir()
	for name, b := range other {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for what, try := range map[string][]nats.Option{
		"without TLS":                      nil,
		"without a client certificate":     {nats.RootCAs(kopts.CAFile)},
		"with a certificate of another CA": {nats.RootCAs(kopts.CAFile), nats.ClientCert(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))},
	} {
		target := u.String()
		if try == nil {
			target = plain.String()
		}
		nc, err := nats.Connect(target, append(try, nats.Timeout(5*time.Second))...)
		if err == nil {
			nc.Close()
			t.Errorf("NATS let khadga's user in %s", what)
		}
	}
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

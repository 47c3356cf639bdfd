package deploy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestProxyExamples runs the reverse proxy examples of docs/deploy.md
// (deploy/proxy/nginx.conf and deploy/proxy/Caddyfile, with the listen and
// backend addresses of the test and without TLS) in front of a khadga
// server started with --trust-proxy 127.0.0.1. Through each: /metrics is
// refused, the WebSocket opens, and khadga charges a failed login to the
// client's own address, not to the proxy's and not to one the client made
// up in X-Forwarded-For. Without that header every client behind a proxy
// shares one address, and ten failed logins for made-up names lock everyone
// out (issue 14, point 5). Clients come from 127.0.0.2 and 127.0.0.3.
func TestProxyExamples(t *testing.T) {
	docs := readRepoFile(t, "docs/deploy.md")
	for _, f := range []string{"deploy/proxy/nginx.conf", "deploy/proxy/Caddyfile"} {
		if !strings.Contains(docs, readRepoFile(t, f)) {
			t.Errorf("docs/deploy.md does not show %s as it is", f)
		}
	}
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{TrustedProxies: []string{"127.0.0.1"}}})
	backend := strings.TrimPrefix(s.URL, "http://")
	tok := s.User(t, "alice")
	for name, start := range map[string]func(t *testing.T, backend string) string{"nginx": startNginx, "caddy": startCaddy} {
		t.Run(name, func(t *testing.T) {
			proxy := start(t, backend)
			if code := proxyGet(t, "127.0.0.2", "http://"+proxy+"/metrics"); code != http.StatusNotFound {
				t.Errorf("/metrics through the proxy: %d, want 404", code)
			}
			for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
				proxyLogin(t, src, "http://"+proxy)
				ev, err := s.Store().AuditLog(1)
				if err != nil || len(ev) != 1 || ev[0].Kind != "login-failed" || ev[0].Addr != src {
					t.Fatalf("a failed login from %s through %s is audited as %+v (%v), want that address", src, name, ev, err)
				}
			}
			d := websocket.Dialer{Subprotocols: []string{proto.Subprotocol}, HandshakeTimeout: 10 * time.Second}
			ws, resp, err := d.Dial("ws://"+proxy+"/ws?presence=0", http.Header{
				"Authorization": {"Bearer " + tok.AccessToken}, "Origin": {"http://" + proxy}})
			if err != nil {
				t.Fatalf("WebSocket through %s: %v (%v)", name, err, resp)
			}
			defer ws.Close()
			ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, b, err := ws.ReadMessage(); err != nil || !strings.Contains(string(b), `"welcome"`) {
				t.Fatalf("first message through %s: %s %v", name, b, err)
			}
		})
	}
}

// sourceClient is an HTTP client whose connections come from src.
func sourceClient(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func proxyGet(t *testing.T, src, url string) int {
	t.Helper()
	resp, err := sourceClient(src).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// proxyLogin fails a login from src, claiming another address in
// X-Forwarded-For as an attacker would.
func proxyLogin(t *testing.T, src, base string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/login", strings.NewReader(`{"username":"nobody","password":"wrong password"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", "203.0.113.66")
	resp, err := sourceClient(src).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("failed login through the proxy: %d, want 401", resp.StatusCode)
	}
}

// freeAddr returns a 127.0.0.1 address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// hostPort splits addr, a host:port of freeAddr's, into its parts.
func hostPort(addr string) (string, int) {
	h, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return h, n
}

// startNginx runs deploy/proxy/nginx.conf in the foreground, listening on
// a free port without TLS and proxying to backend.
func startNginx(t *testing.T, backend string) string {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx is not installed (scripts/setup.sh installs nginx-light)")
	}
	dir, addr := t.TempDir(), freeAddr(t)
	server := readRepoFile(t, "deploy/proxy/nginx.conf")
	server = strings.Replace(server, "listen 443 ssl http2;", "listen "+addr+";", 1)
	var kept []string
	for _, line := range strings.Split(server, "\n") {
		if !strings.Contains(line, "ssl_certificate") {
			kept = append(kept, line)
		}
	}
	server = strings.ReplaceAll(strings.Join(kept, "\n"), "127.0.0.1:8080", backend)
	writeFile(t, filepath.Join(dir, "server.conf"), server)
	main := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/server.conf;
}
`, dir)
	writeFile(t, filepath.Join(dir, "nginx.conf"), main)
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", filepath.Join(dir, "nginx.conf")).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t refuses the example: %v\n%s", err, out)
	}
	runProxy(t, addr, filepath.Join(dir, "error.log"), bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	return addr
}

// startCaddy runs deploy/proxy/Caddyfile with the site on a free port over
// plain HTTP and the backend of the test.
func startCaddy(t *testing.T, backend string) string {
	bin, err := exec.LookPath("caddy")
	if err != nil {
		t.Skip("caddy is not installed (scripts/setup.sh installs it)")
	}
	dir, addr := t.TempDir(), freeAddr(t)
	conf := readRepoFile(t, "deploy/proxy/Caddyfile")
	conf = strings.Replace(conf, "chat.example.org {", "http://"+addr+" {", 1)
	conf = "{\n\tadmin off\n}\n" + strings.ReplaceAll(conf, "127.0.0.1:8080", backend)
	file := filepath.Join(dir, "Caddyfile")
	writeFile(t, file, conf)
	runProxy(t, addr, "", bin, "run", "--config", file, "--adapter", "caddyfile")
	return addr
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runProxy starts a proxy process until the test ends and waits until addr
// accepts connections.
func runProxy(t *testing.T, addr, logFile, bin string, args ...string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) // nginx's workers too
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			logs := out.String()
			if logFile != "" {
				b, _ := os.ReadFile(logFile)
				logs += string(b)
			}
			t.Fatalf("%s exited: %v\n%s", bin, waitErr, logs)
		case <-ctx.Done():
			t.Fatalf("%s does not listen on %s: %s", bin, addr, out.String())
		case <-time.After(20 * time.Millisecond): // polling a port, not synchronising on internals
		}
	}
}

package deploy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// stage is one FROM ... AS name section.
type stage struct {
	name, from string
	instrs     []instruction
}

// parseDockerfile parses a Dockerfile with BuildKit's own parser, checks
// every instruction as `docker build` would (flags, forms, stage names)
// with its build checks (linter) on, and returns the global ARGs and the
// stages, each instruction's text with continuations joined.
func parseDockerfile(t *testing.T, text string) (globals []instruction, stages []*stage) {
	t.Helper()
	res, err := parser.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile parser warning: %s", w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		t.Errorf("Dockerfile build check %s: %s (%v)", rule, msg, loc)
	}})
	if _, _, err := instructions.Parse(res.AST, lint); err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, n := range res.AST.Children {
		_, args, _ := strings.Cut(n.Original, " ")
		in := instruction{cmd: strings.ToUpper(n.Value), args: strings.Join(strings.Fields(args), " ")}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := &stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			globals = append(globals, in)
			continue
		}
		s := stages[len(stages)-1]
		s.instrs = append(s.instrs, in)
	}
	return globals, stages
}

func (s *stage) all(cmd string) []string {
	var out []string
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

func (s *stage) last(t *testing.T, cmd string) string {
	t.Helper()
	a := s.all(cmd)
	if len(a) == 0 {
		t.Fatalf("stage %s has no %s", s.name, cmd)
	}
	return a[len(a)-1]
}

func stagesByName(t *testing.T) (map[string]*stage, []*stage, []instruction) {
	t.Helper()
	globals, stages := parseDockerfile(t, readRepoFile(t, "Dockerfile"))
	byName := map[string]*stage{}
	for _, s := range stages {
		if s.name == "" {
			t.Fatalf("stage FROM %s has no name", s.from)
		}
		if byName[s.name] != nil {
			t.Fatalf("two stages named %s", s.name)
		}
		byName[s.name] = s
	}
	for _, want := range []string{"server", "recorder"} {
		if byName[want] == nil {
			t.Fatalf("no %s stage (stages: %v)", want, sortedKeys(byName))
		}
	}
	return byName, stages, globals
}

// copied lists the destinations of COPY --from instructions, checking that
// each names an earlier stage.
func copied(t *testing.T, s *stage, earlier map[string]bool) []string {
	t.Helper()
	var dsts []string
	for _, c := range s.all("COPY") {
		f := strings.Fields(c)
		var from string
		var paths []string
		for _, w := range f {
			if v, ok := strings.CutPrefix(w, "--from="); ok {
				from = v
			} else if !strings.HasPrefix(w, "--") {
				paths = append(paths, w)
			}
		}
		if from != "" && !earlier[from] {
			t.Errorf("stage %s copies from %q, not an earlier stage", s.name, from)
		}
		dsts = append(dsts, paths[len(paths)-1])
	}
	return dsts
}

// execForm parses a JSON-array (exec form) argument, failing on shell form.
func execForm(t *testing.T, what, args string) []string {
	t.Helper()
	if !strings.HasPrefix(args, "[") {
		t.Fatalf("%s %q is in shell form; the server image has no shell", what, args)
	}
	var out []string
	for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(args, -1) {
		out = append(out, m[1])
	}
	return out
}

// nonRootUser fails unless USER names a non-root numeric uid (numeric, so
// Kubernetes runAsNonRoot can verify it without /etc/passwd).
func nonRootUser(t *testing.T, s *stage) string {
	t.Helper()
	u := s.last(t, "USER")
	uid, _, _ := strings.Cut(u, ":")
	if uid == "0" || uid == "root" || !regexp.MustCompile(`^[0-9]+$`).MatchString(uid) {
		t.Fatalf("stage %s runs as USER %q, want a numeric non-root uid", s.name, u)
	}
	return uid
}

func TestDockerfileServer(t *testing.T) {
	byName, stages, _ := stagesByName(t)
	s := byName["server"]
	if stages[len(stages)-1] != s {
		t.Fatal("server is not the last stage, so plain `docker build .` would not build it")
	}
	if strings.Contains(s.from, "golang") || strings.Contains(s.from, "debian:") {
		t.Fatalf("server runs on %s, want a small base (distroless/static, alpine, scratch)", s.from)
	}
	earlier := map[string]bool{}
	for _, st := range stages[:len(stages)-1] {
		earlier[st.name] = true
	}
	dsts := copied(t, s, earlier)
	uid := nonRootUser(t, s)

	entry := execForm(t, "ENTRYPOINT", s.last(t, "ENTRYPOINT"))
	if len(entry) == 0 || !slices.Contains(dsts, entry[0]) || filepath.Base(entry[0]) != "khadga" {
		t.Fatalf("ENTRYPOINT %v is not the khadga binary copied into the image (%v)", entry, dsts)
	}
	hc := s.last(t, "HEALTHCHECK")
	_, cmd, ok := strings.Cut(hc, "CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK %q has no CMD", hc)
	}
	probe := execForm(t, "HEALTHCHECK CMD", strings.TrimSpace(cmd))
	if len(probe) == 0 || !slices.Contains(dsts, probe[0]) {
		t.Fatalf("HEALTHCHECK runs %v, which is not copied into the image (%v)", probe, dsts)
	}

	env := dockerEnv(s)
	checkEnvNames(t, "Dockerfile server stage", sortedKeys(env))
	exposed := strings.Fields(strings.Join(s.all("EXPOSE"), " "))
	httpPort := listenPort(t, env["KHADGA_HTTP"])
	for _, want := range []string{strconv.Itoa(httpPort) + "/tcp", "3478/udp", "3478/tcp"} {
		if !slices.Contains(exposed, want) {
			t.Errorf("EXPOSE %v lacks %s", exposed, want)
		}
	}
	data := env["KHADGA_DATA"]
	if vols := strings.Join(s.all("VOLUME"), " "); data == "" || !strings.Contains(vols, `"`+data+`"`) {
		t.Errorf("KHADGA_DATA=%q is not a VOLUME (%s)", data, vols)
	}
	// The data directory in the image belongs to the runtime user, so a new
	// named volume (which copies it) is writable.
	if !slices.ContainsFunc(s.all("COPY"), func(c string) bool {
		return strings.Contains(c, "--chown="+uid+":") && strings.HasSuffix(c, " "+data)
	}) {
		t.Errorf("no COPY --chown=%s:... into %s", uid, data)
	}
	// The image's relay range matches the compose file's published range.
	compose := mustLoadCompose(t).Services["khadga"]
	if got, want := env["KHADGA_TURN_PORTS"], envValue(t, compose, "KHADGA_TURN_PORTS"); got != want {
		t.Errorf("image KHADGA_TURN_PORTS=%q, compose %q", got, want)
	}
	if got, want := compose.HealthCheck.Test[1:], probe; !slices.Equal(got, want) {
		t.Errorf("compose healthcheck %v differs from the image's %v", got, want)
	}
}

func TestDockerfileBuilds(t *testing.T) {
	byName, _, globals := stagesByName(t)
	b := byName["server-build"]
	if b == nil {
		t.Fatal("no server-build stage")
	}
	run := strings.Join(b.all("RUN"), "\n")
	for _, pkg := range []string{"./cmd/khadga", "./deploy/healthcheck"} {
		if !regexp.MustCompile(`CGO_ENABLED=0 go build [^&]*-o \S+ ` + regexp.QuoteMeta(pkg) + `\b`).MatchString(run) {
			t.Errorf("server-build does not build %s with CGO_ENABLED=0", pkg)
		}
	}
	rb := byName["recorder-build"]
	if rb == nil {
		t.Fatal("no recorder-build stage")
	}
	rrun := strings.Join(rb.all("RUN"), "\n")
	for _, pkg := range []string{"libvpx-dev", "libyuv-dev", "libopus-dev"} {
		if !strings.Contains(rrun, pkg) {
			t.Errorf("recorder-build does not install %s", pkg)
		}
	}
	if !regexp.MustCompile(`CGO_ENABLED=1 go build [^&]*\./cmd/khadga-recorder\b`).MatchString(rrun) {
		t.Error("recorder-build does not build ./cmd/khadga-recorder with CGO_ENABLED=1")
	}
	r := byName["recorder"]
	if !strings.HasPrefix(r.from, "debian:bookworm") {
		t.Errorf("recorder runs on %s, want debian:bookworm-slim (libvpx7)", r.from)
	}
	for _, pkg := range []string{"libvpx7", "libopus0"} {
		if !strings.Contains(strings.Join(r.all("RUN"), "\n"), pkg) {
			t.Errorf("recorder stage does not install the %s runtime", pkg)
		}
	}
	nonRootUser(t, r)
	if e := execForm(t, "ENTRYPOINT", r.last(t, "ENTRYPOINT")); len(e) == 0 || filepath.Base(e[0]) != "khadga-recorder" {
		t.Errorf("recorder ENTRYPOINT = %v", e)
	}
	// The recorder's output volume is where compose mounts it.
	out := flagValue(mustLoadCompose(t, "recorder").Services["recorder"].Command, "out")
	if vols := strings.Join(r.all("VOLUME"), " "); !strings.Contains(vols, `"`+out+`"`) {
		t.Errorf("compose --out=%s is not a VOLUME of the recorder image (%s)", out, vols)
	}
	// Both builds start from a Go image that can build this module.
	goMod := readRepoFile(t, "go.mod")
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(goMod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	var goVersion string
	for _, g := range globals {
		if v, ok := strings.CutPrefix(g.args, "GO_VERSION="); g.cmd == "ARG" && ok {
			goVersion = v
		}
	}
	if goVersion != m[1] {
		t.Errorf("ARG GO_VERSION=%q, go.mod says go %s", goVersion, m[1])
	}
	for _, name := range []string{"build-base", "recorder-build"} {
		if st := byName[name]; st == nil || st.from != "golang:${GO_VERSION}-bookworm" {
			t.Errorf("%s is not FROM golang:${GO_VERSION}-bookworm", name)
		}
	}
}

// TestDockerfileSourcesExist: the packages the Dockerfile builds are in the
// repository.
func TestDockerfileSourcesExist(t *testing.T) {
	run := readRepoFile(t, "Dockerfile")
	for _, m := range regexp.MustCompile(`go build [^&\n]* (\./\S+)`).FindAllStringSubmatch(run, -1) {
		dir := m[1]
		t.Run(dir, func(t *testing.T) {
			if dir == "./cmd/khadga-recorder" {
				recorderSource(t)
				return
			}
			if files, _ := filepath.Glob(filepath.Join(root, dir, "*.go")); len(files) == 0 {
				t.Fatalf("%s has no Go files", dir)
			}
		})
	}
}

// recorderSource returns cmd/khadga-recorder's non-test Go source, or
// skips the test while that command does not exist yet.
func recorderSource(t *testing.T) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, "cmd", "khadga-recorder", "*.go"))
	var b strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	if b.Len() == 0 {
		t.Fatal("cmd/khadga-recorder has no Go files")
	}
	return b.String()
}

// dockerEnv collects ENV KEY=VALUE pairs (the only form the file uses).
func dockerEnv(s *stage) map[string]string {
	env := map[string]string{}
	for _, e := range s.all("ENV") {
		for _, kv := range strings.Fields(e) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
	}
	return env
}

// TestDockerignore: the build context leaves out local state and keeps
// every file the builds need (each package that cmd/khadga, the
// healthcheck and the recorder import, their embedded files, go.mod and
// go.sum).
func TestDockerignore(t *testing.T) {
	patterns := parseDockerignore(t, readRepoFile(t, ".dockerignore"))
	ignored := func(path string) bool {
		t.Helper()
		out, err := patterns.MatchesOrParentMatches(path)
		if err != nil {
			t.Fatalf(".dockerignore against %s: %v", path, err)
		}
		return out
	}
	for _, p := range []string{".git/HEAD", "khadga-data/khadga.db", "khadga", "bench/peerjs/node_modules/x/index.js",
		// Local settings and secrets, wherever they are.
		"docker-compose.override.yml", ".env", ".env.production", "deploy/.env", "khadga-secrets.yaml",
		"deploy/cluster/nats-secret.yaml", "privkey.pem", "certs/live/fullchain.pem", "tls/server.key", "nats.creds",
		// The deployment files.
		"docker-compose.yml", "deploy/kubernetes/statefulset.yaml", "deploy/kubernetes-cluster/nats-config.yaml",
		"deploy/kubernetes/secret.example.yaml"} {
		if !ignored(p) {
			t.Errorf(".dockerignore keeps %s in the build context", p)
		}
	}
	// The secret patterns spare examples (outside the deployment folders).
	if ignored("examples/secret.example.yaml") {
		t.Error(".dockerignore leaves out examples/secret.example.yaml: an example has no secret")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pkgs := []string{"./cmd/khadga", "./deploy/healthcheck"}
	if files, _ := filepath.Glob(filepath.Join(root, "cmd", "khadga-recorder", "*.go")); len(files) > 0 {
		pkgs = append(pkgs, "./cmd/khadga-recorder")
	}
	// With cgo on, the list includes the recorder's cgo files; listing
	// needs no C compiler or libvpx.
	list := exec.CommandContext(ctx, goTool(), append([]string{"list", "-deps", "-f",
		"{{if not .Standard}}{{.Dir}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}"}, pkgs...)...)
	list.Dir = root
	list.Env = append(os.Environ(), "CGO_ENABLED=1")
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	need := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		rel, err := filepath.Rel(abs, f[0])
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a module dependency, downloaded in the image
		}
		files, _ := filepath.Glob(filepath.Join(f[0], "*.go"))
		for _, g := range files {
			need = append(need, filepath.ToSlash(filepath.Join(rel, filepath.Base(g))))
		}
		for _, e := range f[1:] {
			need = append(need, filepath.ToSlash(filepath.Join(rel, e)))
		}
	}
	if len(need) < 20 {
		t.Fatalf("go list found only %d files: %v", len(need), need)
	}
	for _, p := range need {
		if ignored(p) {
			t.Errorf(".dockerignore leaves out %s, which the image builds need", p)
		}
	}
}

// parseDockerignore reads .dockerignore with the parser and matcher that
// Docker and BuildKit use to filter the build context (moby/patternmatcher):
// paths from the context root, * within a path element, ** across
// elements, ! re-includes, and a pattern that matches a directory covers
// everything under it.
func parseDockerignore(t *testing.T, text string) *patternmatcher.PatternMatcher {
	t.Helper()
	lines, err := ignorefile.ReadAll(strings.NewReader(text))
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	pm, err := patternmatcher.New(lines)
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	return pm
}

package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const k8sDir = "deploy/kubernetes"

// object is what every manifest has.
type object struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   metadata `yaml:"metadata"`
}

type metadata struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels"`
}

type kustomization struct {
	object    `yaml:",inline"`
	Namespace string   `yaml:"namespace"`
	Resources []string `yaml:"resources"`
	Patches   []struct {
		Path string `yaml:"path"`
	} `yaml:"patches"`
	Images       []kustImage `yaml:"images"`
	Replacements []struct {
		Source struct {
			Kind      string `yaml:"kind"`
			Name      string `yaml:"name"`
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"source"`
		Targets []struct {
			Select struct {
				Kind string `yaml:"kind"`
				Name string `yaml:"name"`
			} `yaml:"select"`
			FieldPaths []string `yaml:"fieldPaths"`
		} `yaml:"targets"`
	} `yaml:"replacements"`
}

type kustImage struct {
	Name    string `yaml:"name"`
	NewName string `yaml:"newName"`
	NewTag  string `yaml:"newTag"`
}

type configMap struct {
	object `yaml:",inline"`
	Data   map[string]string `yaml:"data"`
}

type secret struct {
	object     `yaml:",inline"`
	StringData map[string]string `yaml:"stringData"`
}

type service struct {
	object `yaml:",inline"`
	Spec   struct {
		Type           string            `yaml:"type"`
		Selector       map[string]string `yaml:"selector"`
		LoadBalancerIP string            `yaml:"loadBalancerIP"`
		Ports          []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
			Protocol   string `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type statefulSet struct {
	object `yaml:",inline"`
	Spec   struct {
		Replicas    *int   `yaml:"replicas"`
		ServiceName string `yaml:"serviceName"`
		Selector    struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata metadata `yaml:"metadata"`
			Spec     podSpec  `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata metadata `yaml:"metadata"`
			Spec     struct {
				AccessModes []string `yaml:"accessModes"`
				Resources   struct {
					Requests map[string]string `yaml:"requests"`
				} `yaml:"resources"`
			} `yaml:"spec"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type podSpec struct {
	HostNetwork     *bool  `yaml:"hostNetwork"`
	DNSPolicy       string `yaml:"dnsPolicy"`
	SecurityContext struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		RunAsUser    *int  `yaml:"runAsUser"`
		FSGroup      *int  `yaml:"fsGroup"`
		Seccomp      struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name string `yaml:"name"`
	} `yaml:"volumes"`
}

type container struct {
	Name    string `yaml:"name"`
	Image   string `yaml:"image"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name     string `yaml:"name"`
				Key      string `yaml:"key"`
				Optional bool   `yaml:"optional"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// manifest is one decoded YAML document of a file.
type manifest struct {
	file string
	obj  object
	node yaml.Node
}

// decodeFile decodes every document of a manifest file.
func decodeFile(t *testing.T, path string) []manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	return decodeDocs(t, path, b)
}

// decodeDocs decodes every document of b, which came from path.
func decodeDocs(t *testing.T, path string, b []byte) []manifest {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []manifest
	for {
		m := manifest{file: path}
		if err := dec.Decode(&m.node); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if err := m.node.Decode(&m.obj); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if m.obj.APIVersion == "" || m.obj.Kind == "" || m.obj.Metadata.Name == "" && m.obj.Kind != "Kustomization" {
			t.Fatalf("%s: a document lacks apiVersion, kind or metadata.name: %+v", path, m.obj)
		}
		checkKeys(t, path, &m.node)
		out = append(out, m)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no YAML documents", path)
	}
	return out
}

// as decodes m into v, failing on a type mismatch.
func as[T any](t *testing.T, m manifest) T {
	t.Helper()
	var v T
	if err := m.node.Decode(&v); err != nil {
		t.Fatalf("%s: %s %s: %v", m.file, m.obj.Kind, m.obj.Metadata.Name, err)
	}
	return v
}

// knownFields are the fields these manifests may use, by kind and path
// ("[]" steps into each list item), from the Kubernetes API reference. An
// unknown field fails `kubectl apply` (strict field validation), which
// cannot run here; without this check a misspelt probe, say, would only be
// noticed on a cluster. Paths not listed are not checked.
var knownFields = map[string]map[string][]string{
	"StatefulSet": {
		"": {"apiVersion", "kind", "metadata", "spec"},
		"spec": {"replicas", "serviceName", "selector", "template", "volumeClaimTemplates", "podManagementPolicy",
			"updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds", "revisionHistoryLimit"},
		"spec.template.spec": {"hostNetwork", "dnsPolicy", "terminationGracePeriodSeconds", "automountServiceAccountToken",
			"enableServiceLinks", "securityContext", "containers", "initContainers", "volumes", "nodeSelector",
			"tolerations", "affinity", "priorityClassName", "serviceAccountName"},
		"spec.template.spec.securityContext": {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup",
			"fsGroupChangePolicy", "seccompProfile", "supplementalGroups"},
		"spec.template.spec.containers[]": {"name", "image", "args", "command", "env", "envFrom", "ports",
			"startupProbe", "livenessProbe", "readinessProbe", "resources", "securityContext", "volumeMounts",
			"imagePullPolicy", "workingDir", "lifecycle"},
		"spec.template.spec.containers[].securityContext": {"allowPrivilegeEscalation", "readOnlyRootFilesystem",
			"capabilities", "runAsNonRoot", "runAsUser", "runAsGroup", "privileged", "seccompProfile"},
		"spec.template.spec.containers[].startupProbe":   probeFields,
		"spec.template.spec.containers[].livenessProbe":  probeFields,
		"spec.template.spec.containers[].readinessProbe": probeFields,
		"spec.template.spec.containers[].resources":      {"requests", "limits"},
		"spec.template.spec.containers[].ports[]":        {"name", "containerPort", "protocol", "hostPort", "hostIP"},
		"spec.template.spec.containers[].env[]":          {"name", "value", "valueFrom"},
		"spec.template.spec.containers[].volumeMounts[]": {"name", "mountPath", "readOnly", "subPath"},
		"spec.volumeClaimTemplates[].spec":               {"accessModes", "resources", "storageClassName", "volumeMode"},
	},
	"Service": {
		"": {"apiVersion", "kind", "metadata", "spec"},
		"spec": {"type", "selector", "ports", "clusterIP", "externalTrafficPolicy", "loadBalancerIP",
			"loadBalancerSourceRanges", "sessionAffinity", "ipFamilyPolicy", "publishNotReadyAddresses"},
		"spec.ports[]": {"name", "port", "targetPort", "protocol", "nodePort"},
	},
}

func init() {
	// A Deployment's pod template is a StatefulSet's; its spec has its own
	// fields.
	d := map[string][]string{
		"spec": {"replicas", "selector", "template", "strategy", "minReadySeconds", "revisionHistoryLimit",
			"progressDeadlineSeconds"},
		"spec.strategy":               {"type", "rollingUpdate"},
		"spec.strategy.rollingUpdate": {"maxSurge", "maxUnavailable"},
	}
	for path, fields := range knownFields["StatefulSet"] {
		if strings.HasPrefix(path, "spec.template") || path == "" {
			d[path] = fields
		}
	}
	knownFields["Deployment"] = d
	knownFields["PodDisruptionBudget"] = map[string][]string{
		"":     {"apiVersion", "kind", "metadata", "spec"},
		"spec": {"minAvailable", "maxUnavailable", "selector", "unhealthyPodEvictionPolicy"},
	}
	for _, kind := range []string{"StatefulSet", "Deployment"} {
		knownFields[kind]["spec.template.spec.containers[].lifecycle"] = []string{"preStop", "postStart"}
		knownFields[kind]["spec.template.spec.containers[].lifecycle.preStop"] = []string{"sleep", "exec", "httpGet"}
	}
}

var probeFields = []string{"httpGet", "periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold",
	"initialDelaySeconds"}

// checkKeys fails on fields of doc outside knownFields for its kind.
func checkKeys(t *testing.T, file string, doc *yaml.Node) {
	t.Helper()
	rules := knownFields[child(doc.Content[0], "kind").Value]
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.SequenceNode:
			for _, item := range n.Content {
				walk(item, path+"[]")
			}
		case yaml.MappingNode:
			allowed, checked := rules[path]
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if checked && !slices.Contains(allowed, k) {
					t.Errorf("%s: unknown field %q in %q", file, k, path)
				}
				walk(n.Content[i+1], strings.TrimPrefix(path+"."+k, "."))
			}
		}
	}
	walk(doc.Content[0], "")
}

// child returns the value of key in mapping node n, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// kustomizeDir decodes dir's kustomization and every file it lists (files
// only; a listed directory is another kustomization, checked on its own).
func kustomizeDir(t *testing.T, dir string) (kustomization, map[string][]manifest) {
	t.Helper()
	k := as[kustomization](t, decodeFile(t, dir+"/kustomization.yaml")[0])
	if k.Kind != "Kustomization" || !strings.HasPrefix(k.APIVersion, "kustomize.config.k8s.io/") {
		t.Fatalf("%s/kustomization.yaml is %s %s", dir, k.APIVersion, k.Kind)
	}
	byKind := map[string][]manifest{}
	listed := map[string]bool{}
	files := append([]string{}, k.Resources...)
	for _, p := range k.Patches {
		files = append(files, p.Path)
	}
	for _, r := range files {
		path := filepath.ToSlash(filepath.Clean(dir + "/" + r))
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Fatalf("%s/kustomization.yaml lists %s: %v", dir, r, err)
		}
		if fi.IsDir() {
			continue
		}
		listed[filepath.Base(path)] = true
		for _, m := range decodeFile(t, path) {
			byKind[m.obj.Kind] = append(byKind[m.obj.Kind], m)
		}
	}
	// Every manifest in the directory is applied, but for examples that
	// must be filled in first.
	entries, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".yaml") || n == "kustomization.yaml" || strings.HasSuffix(n, ".example.yaml") {
			continue
		}
		if !listed[n] {
			t.Errorf("%s/%s is not listed in its kustomization.yaml", dir, n)
		}
	}
	return k, byKind
}

func one[T any](t *testing.T, byKind map[string][]manifest, kind string) T {
	t.Helper()
	if n := len(byKind[kind]); n != 1 {
		t.Fatalf("%d %s manifests, want 1", n, kind)
	}
	return as[T](t, byKind[kind][0])
}

// baseManifests are the decoded base manifests.
type baseManifests struct {
	kust kustomization
	cm   configMap
	svc  service
	sts  statefulSet
	c    container
	// podSecurity is the namespace's enforced Pod Security Standard.
	podSecurity string
}

func loadBase(t *testing.T) baseManifests {
	t.Helper()
	k, byKind := kustomizeDir(t, k8sDir)
	if got := slices.Sorted(maps.Keys(byKind)); !slices.Equal(got, []string{"ConfigMap", "Namespace", "Service", "StatefulSet"}) {
		t.Fatalf("kinds = %v", got)
	}
	b := baseManifests{kust: k, cm: one[configMap](t, byKind, "ConfigMap"), svc: one[service](t, byKind, "Service"),
		sts: one[statefulSet](t, byKind, "StatefulSet")}
	ns := one[object](t, byKind, "Namespace")
	if ns.Metadata.Name != k.Namespace {
		t.Fatalf("Namespace %q, kustomization namespace %q", ns.Metadata.Name, k.Namespace)
	}
	b.podSecurity = ns.Metadata.Labels["pod-security.kubernetes.io/enforce"]
	if n := len(b.sts.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	b.c = b.sts.Spec.Template.Spec.Containers[0]
	return b
}

func TestKubernetesStatefulSet(t *testing.T) {
	b := loadBase(t)
	s := b.sts.Spec
	if s.Replicas == nil || *s.Replicas != 1 {
		t.Fatal("replicas must be 1: bbolt allows one process per store")
	}
	if s.ServiceName != b.svc.Metadata.Name {
		t.Errorf("serviceName %q, Service %q", s.ServiceName, b.svc.Metadata.Name)
	}
	labels := s.Template.Metadata.Labels
	for what, sel := range map[string]map[string]string{"selector": s.Selector.MatchLabels, "Service selector": b.svc.Spec.Selector} {
		if len(sel) == 0 {
			t.Errorf("%s is empty", what)
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s %s=%s does not match the pod labels %v", what, k, v, labels)
			}
		}
	}
	if !slices.ContainsFunc(b.kust.Images, func(i kustImage) bool { return i.Name == b.c.Image }) {
		t.Errorf("container image %q has no images: entry in kustomization.yaml", b.c.Image)
	}
	if len(b.c.EnvFrom) != 1 || b.c.EnvFrom[0].ConfigMapRef == nil || b.c.EnvFrom[0].ConfigMapRef.Name != b.cm.Metadata.Name {
		t.Errorf("container does not take its environment from ConfigMap %s", b.cm.Metadata.Name)
	}
}

func TestKubernetesSecurity(t *testing.T) {
	b := loadBase(t)
	psc := b.sts.Spec.Template.Spec.SecurityContext
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Fatalf("pod securityContext must run as a non-root uid: %+v", psc)
	}
	byName, _, _ := stagesByName(t)
	if uid := nonRootUser(t, byName["server"]); strconv.Itoa(*psc.RunAsUser) != uid {
		t.Errorf("runAsUser %d, the image's USER %s", *psc.RunAsUser, uid)
	}
	if psc.Seccomp.Type != "RuntimeDefault" {
		t.Errorf("seccompProfile %q, want RuntimeDefault", psc.Seccomp.Type)
	}
	if psc.FSGroup == nil || *psc.FSGroup != *psc.RunAsUser {
		t.Errorf("fsGroup should be the runtime uid's group so the volume is writable")
	}
	sc := b.c.SecurityContext
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Error("capabilities are not all dropped")
	}
	for _, r := range []map[string]string{b.c.Resources.Requests, b.c.Resources.Limits} {
		if r["cpu"] == "" || r["memory"] == "" {
			t.Errorf("resources need cpu and memory requests and limits: %+v", b.c.Resources)
		}
	}
}

func TestKubernetesProbesAndPorts(t *testing.T) {
	b := loadBase(t)
	ports := map[string]int{}
	for _, p := range b.c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	httpPort := listenPort(t, b.cm.Data["KHADGA_HTTP"])
	if ports["http"] != httpPort {
		t.Fatalf("container port http = %d, KHADGA_HTTP port %d", ports["http"], httpPort)
	}
	for name, pr := range map[string]struct {
		p    *probe
		path string
	}{"startup": {b.c.StartupProbe, "/healthz"}, "liveness": {b.c.LivenessProbe, "/healthz"}, "readiness": {b.c.ReadinessProbe, "/readyz"}} {
		if pr.p == nil || pr.p.HTTPGet == nil {
			t.Errorf("no %s httpGet probe", name)
			continue
		}
		if pr.p.HTTPGet.Path != pr.path || fmt.Sprint(pr.p.HTTPGet.Port) != "http" {
			t.Errorf("%s probe GETs %s on port %v, want %s on http", name, pr.p.HTTPGet.Path, pr.p.HTTPGet.Port, pr.path)
		}
	}
	var svcHTTP bool
	for _, p := range b.svc.Spec.Ports {
		svcHTTP = svcHTTP || (fmt.Sprint(p.TargetPort) == "http" && p.Protocol == "TCP")
	}
	if !svcHTTP {
		t.Error("the Service does not route to the http port")
	}
	turnPort := listenPort(t, b.cm.Data["KHADGA_TURN_LISTEN"])
	proto := map[string]bool{}
	for _, p := range b.c.Ports {
		if p.ContainerPort == turnPort {
			proto[p.Protocol] = true
		}
	}
	if !proto["UDP"] || !proto["TCP"] {
		t.Errorf("TURN port %d is not declared for both UDP and TCP: %v", turnPort, proto)
	}
	// Without a Service that can publish the relay range, TURN needs the
	// node's network.
	if hn := b.sts.Spec.Template.Spec.HostNetwork; hn == nil || !*hn {
		t.Error("base StatefulSet does not use hostNetwork for TURN")
	} else if b.podSecurity != "privileged" {
		t.Errorf("namespace enforces Pod Security %q, which refuses hostNetwork", b.podSecurity)
	} else if b.sts.Spec.Template.Spec.DNSPolicy != "ClusterFirstWithHostNet" {
		t.Error("hostNetwork pods need dnsPolicy ClusterFirstWithHostNet to resolve cluster names")
	}
	portRange(t, b.cm.Data["KHADGA_TURN_PORTS"])
}

func TestKubernetesVolumes(t *testing.T) {
	b := loadBase(t)
	mounts := map[string]string{}
	for _, m := range b.c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	data := b.cm.Data["KHADGA_DATA"]
	vcts := b.sts.Spec.VolumeClaimTemplates
	if len(vcts) != 1 || mounts[data] != vcts[0].Metadata.Name {
		t.Fatalf("KHADGA_DATA %s is not on the volumeClaimTemplate (mounts %v)", data, mounts)
	}
	if !slices.Equal(vcts[0].Spec.AccessModes, []string{"ReadWriteOnce"}) || vcts[0].Spec.Resources.Requests["storage"] == "" {
		t.Errorf("volumeClaimTemplate: %+v", vcts[0].Spec)
	}
	// Everything else mounted is a pod volume; /tmp is writable although
	// the root filesystem is not.
	var podVols []string
	for _, v := range b.sts.Spec.Template.Spec.Volumes {
		podVols = append(podVols, v.Name)
	}
	for path, name := range mounts {
		if path != data && !slices.Contains(podVols, name) {
			t.Errorf("mount %s uses volume %q, which the pod does not define", path, name)
		}
	}
	if mounts["/tmp"] == "" {
		t.Error("no writable /tmp")
	}
}

// TestKubernetesEnvNamesAreFlags: every KHADGA_* name in the manifests is a
// real flag, and every Secret key the pod reads is in the example Secret.
func TestKubernetesEnvNamesAreFlags(t *testing.T) {
	b := loadBase(t)
	checkEnvNames(t, "configmap.yaml", sortedKeys(b.cm.Data))
	sec := as[secret](t, decodeFile(t, k8sDir+"/secret.example.yaml")[0])
	if sec.Kind != "Secret" || sec.Metadata.Namespace != b.kust.Namespace {
		t.Fatalf("secret.example.yaml is a %s in %q", sec.Kind, sec.Metadata.Namespace)
	}
	var names []string
	for _, e := range b.c.Env {
		names = append(names, e.Name)
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		if ref.Name != sec.Metadata.Name {
			t.Errorf("%s reads Secret %q; the example is %q", e.Name, ref.Name, sec.Metadata.Name)
		}
		if _, ok := sec.StringData[ref.Key]; !ok {
			t.Errorf("%s reads key %q, which secret.example.yaml lacks", e.Name, ref.Key)
		}
		if !ref.Optional {
			t.Errorf("%s: the Secret is an example, so the pod must start without it (optional: true)", e.Name)
		}
	}
	checkEnvNames(t, "statefulset.yaml env", names)
	if !slices.Contains(names, "KHADGA_METRICS_TOKEN") || !slices.Contains(names, "KHADGA_TURN_SECRET") {
		t.Errorf("env %v lacks KHADGA_METRICS_TOKEN or KHADGA_TURN_SECRET from the Secret", names)
	}
}

// TestKubernetesLoadBalancer checks the overlay that runs TURN behind a UDP
// LoadBalancer: every relay port published on its own number, the public IP
// wired from the ConfigMap into the Service, hostNetwork off.
func TestKubernetesLoadBalancer(t *testing.T) {
	dir := "deploy/kubernetes-loadbalancer"
	k, byKind := kustomizeDir(t, dir)
	if !slices.Contains(k.Resources, "../kubernetes") {
		t.Fatalf("%s does not build on the base: resources %v", dir, k.Resources)
	}
	cm := one[configMap](t, byKind, "ConfigMap")
	checkEnvNames(t, dir+"/configmap-patch.yaml", sortedKeys(cm.Data))
	ip := cm.Data["KHADGA_TURN_PUBLIC_IP"]
	if ip == "" {
		t.Fatal("the overlay does not set KHADGA_TURN_PUBLIC_IP")
	}
	sts := one[statefulSet](t, byKind, "StatefulSet")
	if hn := sts.Spec.Template.Spec.HostNetwork; hn == nil || *hn {
		t.Error("the overlay does not turn hostNetwork off")
	}
	// Without hostNetwork the pod meets "restricted" (TestKubernetesSecurity
	// checks the fields it requires), so the overlay enforces it.
	if ns := one[object](t, byKind, "Namespace"); ns.Metadata.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("overlay namespace enforces %q, want restricted", ns.Metadata.Labels["pod-security.kubernetes.io/enforce"])
	}
	svc := one[service](t, byKind, "Service")
	if svc.Spec.Type != "LoadBalancer" {
		t.Fatalf("TURN Service type %q", svc.Spec.Type)
	}
	lo, hi := portRange(t, cm.Data["KHADGA_TURN_PORTS"])
	udp := map[int]bool{}
	var tcp3478 bool
	for _, p := range svc.Spec.Ports {
		if fmt.Sprint(p.TargetPort) != strconv.Itoa(p.Port) {
			t.Errorf("port %s: %d -> %v; TURN hands out the port it bound, so they must match", p.Name, p.Port, p.TargetPort)
		}
		switch p.Protocol {
		case "UDP":
			udp[p.Port] = true
		case "TCP":
			tcp3478 = tcp3478 || p.Port == 3478
		}
	}
	if !udp[3478] || !tcp3478 {
		t.Error("TURN 3478 is not on the LoadBalancer for both UDP and TCP")
	}
	for port := lo; port <= hi; port++ {
		if !udp[port] {
			t.Errorf("relay port %d/udp is not on the LoadBalancer", port)
		}
	}
	if n := len(udp) - 1; n != hi-lo+1 {
		t.Errorf("LoadBalancer has %d relay ports, KHADGA_TURN_PORTS %d", n, hi-lo+1)
	}
	// The public IP the server hands out is the one the Service asks for.
	wired := false
	for _, r := range k.Replacements {
		for _, tg := range r.Targets {
			wired = wired || (r.Source.Kind == "ConfigMap" && r.Source.Name == cm.Metadata.Name &&
				r.Source.FieldPath == "data.KHADGA_TURN_PUBLIC_IP" && tg.Select.Name == svc.Metadata.Name &&
				slices.Contains(tg.FieldPaths, "spec.loadBalancerIP"))
		}
	}
	if !wired {
		t.Error("KHADGA_TURN_PUBLIC_IP is not replaced into the Service's spec.loadBalancerIP")
	}
}

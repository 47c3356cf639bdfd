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
	"time"

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
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

// budget is how long the probe may fail before the kubelet acts (for a
// startup probe: kills the container), with Kubernetes' defaults.
func (p *probe) budget() time.Duration {
	period, threshold := p.PeriodSeconds, p.FailureThreshold
	if period == 0 {
		period = 10
	}
	if threshold == 0 {
		threshold = 3
	}
	return time.Duration(period*threshold) * time.Second
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
// noticed on a cluster. Every level the manifests use has a rule (see
// TestKnownFieldsCoverTheManifests); paths not listed are not checked.
var knownFields = map[string]map[string][]string{
	"StatefulSet": {
		// $patch: a kustomize patch that deletes the object.
		"":         {"apiVersion", "kind", "metadata", "spec", "$patch"},
		"metadata": metadataFields,
		"spec": {"replicas", "serviceName", "selector", "template", "volumeClaimTemplates", "podManagementPolicy",
			"updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds", "revisionHistoryLimit"},
		"spec.selector":                              selectorFields,
		"spec.updateStrategy":                        {"type", "rollingUpdate"},
		"spec.volumeClaimTemplates[]":                {"metadata", "spec"},
		"spec.volumeClaimTemplates[].metadata":       {"name", "labels", "annotations"},
		"spec.volumeClaimTemplates[].spec":           {"accessModes", "resources", "storageClassName", "volumeMode"},
		"spec.volumeClaimTemplates[].spec.resources": {"requests", "limits"},
	},
	"Service": {
		"":         {"apiVersion", "kind", "metadata", "spec"},
		"metadata": metadataFields,
		"spec": {"type", "selector", "ports", "clusterIP", "externalTrafficPolicy", "loadBalancerIP",
			"loadBalancerSourceRanges", "sessionAffinity", "ipFamilyPolicy", "publishNotReadyAddresses"},
		"spec.ports[]": {"name", "port", "targetPort", "protocol", "nodePort"},
	},
	"PodDisruptionBudget": {
		"":              {"apiVersion", "kind", "metadata", "spec"},
		"metadata":      metadataFields,
		"spec":          {"minAvailable", "maxUnavailable", "selector", "unhealthyPodEvictionPolicy"},
		"spec.selector": selectorFields,
	},
	"ConfigMap": {
		"":         {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"},
		"metadata": metadataFields,
	},
	"Secret": {
		"":         {"apiVersion", "kind", "metadata", "type", "data", "stringData", "immutable"},
		"metadata": metadataFields,
	},
	"Namespace": {
		"":         {"apiVersion", "kind", "metadata"},
		"metadata": metadataFields,
	},
	"NetworkPolicy": {
		"":                                  {"apiVersion", "kind", "metadata", "spec"},
		"metadata":                          metadataFields,
		"spec":                              {"podSelector", "policyTypes", "ingress", "egress"},
		"spec.podSelector":                  selectorFields,
		"spec.ingress[]":                    {"from", "ports"},
		"spec.ingress[].from[]":             {"podSelector", "namespaceSelector", "ipBlock"},
		"spec.ingress[].from[].podSelector": selectorFields,
		"spec.ingress[].from[].namespaceSelector": selectorFields,
		"spec.ingress[].from[].ipBlock":           {"cidr", "except"},
		"spec.ingress[].ports[]":                  {"port", "endPort", "protocol"},
	},
	// cert-manager's (cert-manager.io/v1).
	"Issuer": {
		"":                {"apiVersion", "kind", "metadata", "spec"},
		"metadata":        metadataFields,
		"spec":            {"selfSigned", "ca", "acme", "vault"},
		"spec.ca":         {"secretName", "crlDistributionPoints", "ocspServers"},
		"spec.selfSigned": {"crlDistributionPoints"},
	},
	"Certificate": {
		"":         {"apiVersion", "kind", "metadata", "spec"},
		"metadata": metadataFields,
		"spec": {"secretName", "isCA", "commonName", "dnsNames", "ipAddresses", "uris", "emailAddresses", "duration",
			"renewBefore", "usages", "privateKey", "issuerRef", "subject", "secretTemplate"},
		"spec.privateKey": {"algorithm", "size", "encoding", "rotationPolicy"},
		"spec.issuerRef":  {"name", "kind", "group"},
	},
	"Kustomization": {
		"": {"apiVersion", "kind", "namespace", "resources", "patches", "images", "replacements", "labels",
			"configMapGenerator", "secretGenerator", "generatorOptions", "components"},
		"patches[]":                       {"path", "patch", "target"},
		"images[]":                        {"name", "newName", "newTag", "digest"},
		"replacements[]":                  {"source", "targets", "path"},
		"replacements[].source":           {"kind", "name", "namespace", "group", "version", "fieldPath", "options"},
		"replacements[].targets[]":        {"select", "reject", "fieldPaths", "options"},
		"replacements[].targets[].select": {"kind", "name", "namespace", "group", "version"},
	},
}

var (
	metadataFields = []string{"name", "namespace", "labels", "annotations"}
	selectorFields = []string{"matchLabels", "matchExpressions"}
	probeFields    = []string{"httpGet", "exec", "tcpSocket", "grpc", "periodSeconds", "timeoutSeconds",
		"failureThreshold", "successThreshold", "initialDelaySeconds", "terminationGracePeriodSeconds"}
	affinityTermFields = []string{"topologyKey", "labelSelector", "namespaces", "namespaceSelector",
		"matchLabelKeys", "mismatchLabelKeys"}
)

// podTemplateFields are the rules of a pod template at spec.template,
// shared by StatefulSet and Deployment.
func podTemplateFields() map[string][]string {
	const pod, c = "spec.template.spec", "spec.template.spec.containers[]"
	f := map[string][]string{
		"spec.template":          {"metadata", "spec"},
		"spec.template.metadata": {"labels", "annotations"},
		pod: {"hostNetwork", "dnsPolicy", "terminationGracePeriodSeconds", "automountServiceAccountToken", "shareProcessNamespace",
			"enableServiceLinks", "securityContext", "containers", "initContainers", "volumes", "nodeSelector",
			"tolerations", "affinity", "topologySpreadConstraints", "priorityClassName", "serviceAccountName"},
		pod + ".securityContext": {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup",
			"fsGroupChangePolicy", "seccompProfile", "supplementalGroups"},
		pod + ".securityContext.seccompProfile": {"type", "localhostProfile"},
		pod + ".affinity":                       {"podAntiAffinity", "podAffinity", "nodeAffinity"},
		pod + ".topologySpreadConstraints[]": {"maxSkew", "topologyKey", "whenUnsatisfiable", "labelSelector",
			"minDomains", "nodeAffinityPolicy", "nodeTaintsPolicy", "matchLabelKeys"},
		pod + ".topologySpreadConstraints[].labelSelector": selectorFields,
		pod + ".volumes[]":           {"name", "emptyDir", "configMap", "secret", "persistentVolumeClaim", "projected"},
		pod + ".volumes[].emptyDir":  {"medium", "sizeLimit"},
		pod + ".volumes[].configMap": {"name", "items", "defaultMode", "optional"},
		pod + ".volumes[].secret":    {"secretName", "items", "defaultMode", "optional"},
		c: {"name", "image", "args", "command", "env", "envFrom", "ports", "startupProbe", "livenessProbe",
			"readinessProbe", "resources", "securityContext", "volumeMounts", "imagePullPolicy", "workingDir", "lifecycle"},
		c + ".securityContext": {"allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities", "runAsNonRoot",
			"runAsUser", "runAsGroup", "privileged", "seccompProfile"},
		c + ".securityContext.capabilities":    {"add", "drop"},
		c + ".resources":                       {"requests", "limits"},
		c + ".ports[]":                         {"name", "containerPort", "protocol", "hostPort", "hostIP"},
		c + ".env[]":                           {"name", "value", "valueFrom"},
		c + ".env[].valueFrom":                 {"secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef"},
		c + ".env[].valueFrom.secretKeyRef":    {"name", "key", "optional"},
		c + ".env[].valueFrom.configMapKeyRef": {"name", "key", "optional"},
		c + ".env[].valueFrom.fieldRef":        {"fieldPath", "apiVersion"},
		c + ".envFrom[]":                       {"configMapRef", "secretRef", "prefix"},
		c + ".envFrom[].configMapRef":          {"name", "optional"},
		c + ".envFrom[].secretRef":             {"name", "optional"},
		c + ".volumeMounts[]":                  {"name", "mountPath", "readOnly", "subPath"},
		c + ".lifecycle":                       {"preStop", "postStart"},
		c + ".lifecycle.preStop":               {"sleep", "exec", "httpGet"},
		c + ".lifecycle.preStop.sleep":         {"seconds"},
		c + ".lifecycle.preStop.exec":          {"command"},
	}
	for _, p := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
		f[c+"."+p] = probeFields
		f[c+"."+p+".httpGet"] = []string{"path", "port", "scheme", "host", "httpHeaders"}
		f[c+"."+p+".exec"] = []string{"command"}
	}
	for _, kind := range []string{"podAntiAffinity", "podAffinity"} {
		a := pod + ".affinity." + kind
		f[a] = []string{"requiredDuringSchedulingIgnoredDuringExecution", "preferredDuringSchedulingIgnoredDuringExecution"}
		f[a+".requiredDuringSchedulingIgnoredDuringExecution[]"] = affinityTermFields
		f[a+".requiredDuringSchedulingIgnoredDuringExecution[].labelSelector"] = selectorFields
		f[a+".preferredDuringSchedulingIgnoredDuringExecution[]"] = []string{"weight", "podAffinityTerm"}
		f[a+".preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm"] = affinityTermFields
		f[a+".preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm.labelSelector"] = selectorFields
	}
	return f
}

func init() {
	maps.Copy(knownFields["StatefulSet"], podTemplateFields())
	// A Deployment's pod template is a StatefulSet's; its spec has its own
	// fields.
	d := map[string][]string{
		"":         {"apiVersion", "kind", "metadata", "spec"},
		"metadata": metadataFields,
		"spec": {"replicas", "selector", "template", "strategy", "minReadySeconds", "revisionHistoryLimit",
			"progressDeadlineSeconds"},
		"spec.selector":               selectorFields,
		"spec.strategy":               {"type", "rollingUpdate"},
		"spec.strategy.rollingUpdate": {"maxSurge", "maxUnavailable"},
	}
	maps.Copy(d, podTemplateFields())
	knownFields["Deployment"] = d
}

// checkKeys fails on fields of doc outside knownFields for its kind.
func checkKeys(t *testing.T, file string, doc *yaml.Node) {
	t.Helper()
	for _, e := range unknownFields(doc) {
		t.Errorf("%s: %s", file, e)
	}
}

// unknownFields lists the fields of doc outside knownFields for its kind.
func unknownFields(doc *yaml.Node) []string {
	rules := knownFields[child(doc.Content[0], "kind").Value]
	var out []string
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
					out = append(out, fmt.Sprintf("unknown field %q in %q", k, path))
				}
				walk(n.Content[i+1], strings.TrimPrefix(path+"."+k, "."))
			}
		}
	}
	walk(doc.Content[0], "")
	return out
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
	missing, err := unlisted(filepath.Join(root, dir), listed)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range missing {
		t.Errorf("%s/%s is not listed in its kustomization.yaml", dir, n)
	}
	return k, byKind
}

// unlisted returns the manifests in dir that are not among listed (by
// file name): every manifest in a directory is applied, but for examples
// that must be filled in first.
func unlisted(dir string, listed map[string]bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) || n == "kustomization.yaml" ||
			strings.HasSuffix(n, ".example.yaml") {
			continue
		}
		if !listed[n] {
			out = append(out, n)
		}
	}
	return out, nil
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

// k8sDirs are the kustomizations: the base and its overlays.
var k8sDirs = []string{k8sDir, "deploy/kubernetes-loadbalancer", "deploy/kubernetes-cluster", k8sTLSDir}

// TestKubernetesManifestsListed: in every kustomization directory each
// manifest decodes, passes knownFields, and is listed in its
// kustomization.yaml (examples aside).
func TestKubernetesManifestsListed(t *testing.T) {
	for _, dir := range k8sDirs {
		t.Run(filepath.Base(dir), func(t *testing.T) { kustomizeDir(t, dir) })
	}
}

// TestUnlistedManifestFails: a manifest dropped into the cluster overlay
// but not listed in its kustomization is reported (kubectl apply -k would
// silently leave it out).
func TestUnlistedManifestFails(t *testing.T) {
	k, _ := kustomizeDir(t, "deploy/kubernetes-cluster")
	listed := map[string]bool{}
	for _, r := range k.Resources {
		listed[filepath.Base(r)] = true
	}
	for _, p := range k.Patches {
		listed[filepath.Base(p.Path)] = true
	}
	dir := t.TempDir()
	entries, err := os.ReadDir(filepath.Join(root, "deploy/kubernetes-cluster"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range append(entries, nil) {
		name := "networkpolicy-extra.yaml"
		if e != nil {
			name = e.Name()
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte("kind: ConfigMap\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := unlisted(dir, listed)
	if err != nil || !slices.Equal(got, []string{"networkpolicy-extra.yaml"}) {
		t.Fatalf("unlisted = %v, %v; want [networkpolicy-extra.yaml]", got, err)
	}
}

// TestKnownFieldsCatchTypos: a misspelt field at levels the manifests use
// is reported.
func TestKnownFieldsCatchTypos(t *testing.T) {
	for _, c := range []struct{ file, from, to string }{
		{"deploy/kubernetes-cluster/deployment.yaml", "sizeLimit:", "sizeLimt:"},
		{"deploy/kubernetes-cluster/deployment.yaml", "topologyKey:", "topologykey:"},
		{"deploy/kubernetes-cluster/deployment.yaml", "requiredDuringSchedulingIgnoredDuringExecution:", "requiredDuringScheduling:"},
		{"deploy/kubernetes-cluster/deployment.yaml", "matchLabels:", "matchLabel:"},
		{"deploy/kubernetes-cluster/deployment.yaml", "      labels:", "      label:"},
		{"deploy/kubernetes-cluster/deployment.yaml", "optional: true", "optinal: true"},
		{"deploy/kubernetes-cluster/deployment.yaml", "seconds: 5", "second: 5"},
		{"deploy/kubernetes-cluster/nats-statefulset.yaml", "fieldPath:", "fieldpath:"},
		{"deploy/kubernetes-cluster/nats-statefulset.yaml", "accessModes:", "accesModes:"},
		{"deploy/kubernetes-cluster/nats-statefulset.yaml", "name: nats-config", "nme: nats-config"},
		{"deploy/kubernetes-cluster/pdb.yaml", "maxUnavailable:", "maxUnavailble:"},
		{"deploy/kubernetes-cluster-tls/certificates.yaml", "selfSigned:", "selfsigned:"},
		{"deploy/kubernetes/statefulset.yaml", "path: /readyz", "pth: /readyz"},
		{"deploy/kubernetes/statefulset.yaml", "type: RuntimeDefault", "typ: RuntimeDefault"},
		{"deploy/kubernetes/statefulset.yaml", "configMapRef:", "configmapRef:"},
		{"deploy/kubernetes/configmap.yaml", "\ndata:", "\ndta:"},
		{"deploy/kubernetes-loadbalancer/kustomization.yaml", "fieldPaths:", "fieldPath:"},
	} {
		text := readRepoFile(t, c.file)
		if !strings.Contains(text, c.from) {
			t.Fatalf("%s has no %q", c.file, c.from)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(strings.Replace(text, c.from, c.to, 1)), &doc); err != nil {
			t.Fatal(err)
		}
		field := strings.TrimSpace(strings.Split(c.to, ":")[0])
		if !slices.ContainsFunc(unknownFields(&doc), func(e string) bool { return strings.Contains(e, strconv.Quote(field)) }) {
			t.Errorf("%s with %q for %q: no unknown field reported (%v)", c.file, c.to, c.from, unknownFields(&doc))
		}
	}
}

// freeForm are the paths whose keys are the user's (labels, data,
// resource names), which knownFields cannot list.
func freeForm(kind, path string) bool {
	for _, s := range []string{"labels", "annotations", "matchLabels", "data", "stringData", "requests", "limits",
		"nodeSelector"} {
		if path == s || strings.HasSuffix(path, "."+s) {
			return true
		}
	}
	return kind == "Service" && path == "spec.selector"
}

// TestKnownFieldsCoverTheManifests: every mapping in every manifest and
// in what kustomize builds has a rule or holds the user's own keys, so
// that knownFields checks every level the manifests use (a new level
// without a rule would go unchecked).
func TestKnownFieldsCoverTheManifests(t *testing.T) {
	var docs []manifest
	for _, dir := range k8sDirs {
		_, byKind := kustomizeDir(t, dir)
		for _, ms := range byKind {
			docs = append(docs, ms...)
		}
		docs = append(docs, decodeFile(t, dir+"/kustomization.yaml")...)
		for _, ms := range kustomizeBuild(t, dir) {
			docs = append(docs, ms...)
		}
	}
	examples, _ := filepath.Glob(filepath.Join(root, "deploy", "kubernetes*", "*.example.yaml"))
	for _, e := range examples {
		rel, _ := filepath.Rel(root, e)
		docs = append(docs, decodeFile(t, filepath.ToSlash(rel))...)
	}
	missing := map[string]bool{}
	for _, m := range docs {
		rules := knownFields[m.obj.Kind]
		if rules == nil {
			t.Errorf("%s: kind %s has no knownFields rules", m.file, m.obj.Kind)
			continue
		}
		var walk func(n *yaml.Node, path string)
		walk = func(n *yaml.Node, path string) {
			switch n.Kind {
			case yaml.SequenceNode:
				for _, item := range n.Content {
					walk(item, path+"[]")
				}
			case yaml.MappingNode:
				if freeForm(m.obj.Kind, path) {
					return
				}
				if _, ok := rules[path]; !ok {
					missing[m.obj.Kind+" "+path] = true
				}
				for i := 0; i+1 < len(n.Content); i += 2 {
					walk(n.Content[i+1], strings.TrimPrefix(path+"."+n.Content[i].Value, "."))
				}
			}
		}
		walk(m.node.Content[0], "")
	}
	for _, k := range sortedKeys(missing) {
		t.Errorf("no knownFields rule for %s", k)
	}
}

// docSection is the part of page under heading (a whole line such as
// "### Ingress"), up to the next heading of the same or a higher level
// outside code blocks.
func docSection(t *testing.T, page, heading string) string {
	t.Helper()
	text := readRepoFile(t, page)
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("%s has no %q", page, heading)
	}
	level := strings.Index(heading, " ")
	var out strings.Builder
	inCode := false
	for _, line := range strings.SplitAfter(text[i+len(heading)+2:], "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if h := len(line) - len(strings.TrimLeft(line, "#")); !inCode && h > 0 && h <= level && strings.HasPrefix(line[h:], " ") {
			break
		}
		out.WriteString(line)
	}
	return out.String()
}

// TestKubernetesTrustProxy: behind an Ingress every request comes from
// the controller's pod, so the ConfigMap that every shape applies carries
// KHADGA_TRUST_PROXY (a real flag) for the operator to fill in, and the
// Ingress section of docs/deploy.md asks for it and for the clients'
// addresses at the controller.
func TestKubernetesTrustProxy(t *testing.T) {
	for _, dir := range k8sDirs {
		cm := named[configMap](t, kustomizeBuild(t, dir), "ConfigMap", "khadga-config")
		if _, ok := cm.Data["KHADGA_TRUST_PROXY"]; !ok {
			t.Errorf("%s: the ConfigMap has no KHADGA_TRUST_PROXY: behind the Ingress every client shares the controller's address", dir)
		}
		checkEnvNames(t, dir+" ConfigMap", sortedKeys(cm.Data))
	}
	ingress := docSection(t, "docs/deploy.md", "### Ingress")
	for _, want := range []string{"KHADGA_TRUST_PROXY", "externalTrafficPolicy: Local", "PROXY protocol"} {
		if !strings.Contains(ingress, want) {
			t.Errorf("docs/deploy.md, Ingress: no %q", want)
		}
	}
}

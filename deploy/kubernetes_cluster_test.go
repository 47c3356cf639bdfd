package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/natsconn"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

const (
	k8sClusterDir = "deploy/kubernetes-cluster"
	// natsStatefulSet names the NATS StatefulSet; its pods are nats-0, ...
	natsStatefulSet = "nats"
)

// kustomizeBuild runs `kustomize build dir` with kustomize's own library
// (what `kubectl apply -k` runs) and decodes what it would apply.
func kustomizeBuild(t *testing.T, dir string) map[string][]manifest {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join(root, filepath.FromSlash(dir)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	byKind := map[string][]manifest{}
	for _, d := range decodeDocs(t, "kustomize build "+dir, out) {
		byKind[d.obj.Kind] = append(byKind[d.obj.Kind], d)
	}
	return byKind
}

// named returns the manifest of kind and name.
func named[T any](t *testing.T, byKind map[string][]manifest, kind, name string) T {
	t.Helper()
	for _, m := range byKind[kind] {
		if m.obj.Metadata.Name == name {
			return as[T](t, m)
		}
	}
	t.Fatalf("no %s %s", kind, name)
	var zero T
	return zero
}

// TestKubernetesOverlaysBuild: kustomize builds the base and every overlay,
// and each applies the kinds it should, all in the one namespace.
func TestKubernetesOverlaysBuild(t *testing.T) {
	for dir, want := range map[string]map[string]int{
		k8sDir:                           {"Namespace": 1, "ConfigMap": 1, "Service": 1, "StatefulSet": 1},
		"deploy/kubernetes-loadbalancer": {"Namespace": 1, "ConfigMap": 1, "Service": 2, "StatefulSet": 1},
		// The single node's StatefulSet is gone; NATS's is there.
		k8sClusterDir: {"Namespace": 1, "ConfigMap": 2, "Service": 2, "StatefulSet": 1, "Deployment": 1, "PodDisruptionBudget": 2,
			"NetworkPolicy": 1},
		// The cluster's, and cert-manager's CA and certificates.
		k8sTLSDir: {"Namespace": 1, "ConfigMap": 2, "Service": 2, "StatefulSet": 1, "Deployment": 1, "PodDisruptionBudget": 2,
			"NetworkPolicy": 1, "Issuer": 2, "Certificate": 3},
	} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			byKind := kustomizeBuild(t, dir)
			got := map[string]int{}
			for kind, ms := range byKind {
				got[kind] = len(ms)
				for _, m := range ms {
					if kind != "Namespace" && m.obj.Metadata.Namespace != "khadga" {
						t.Errorf("%s %s is in namespace %q", kind, m.obj.Metadata.Name, m.obj.Metadata.Namespace)
					}
				}
			}
			if !maps.Equal(got, want) {
				t.Fatalf("kinds %v, want %v", got, want)
			}
		})
	}
}

type clusterPod struct {
	Spec struct {
		Replicas    *int   `yaml:"replicas"`
		ServiceName string `yaml:"serviceName"`
		Selector    struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Strategy struct {
			RollingUpdate struct {
				MaxSurge       any `yaml:"maxSurge"`
				MaxUnavailable any `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Template struct {
			Metadata metadata `yaml:"metadata"`
			Spec     struct {
				HostNetwork                   *bool `yaml:"hostNetwork"`
				ShareProcessNamespace         *bool `yaml:"shareProcessNamespace"`
				TerminationGracePeriodSeconds *int  `yaml:"terminationGracePeriodSeconds"`
				Affinity                      struct {
					PodAntiAffinity struct {
						Required []affinityTerm `yaml:"requiredDuringSchedulingIgnoredDuringExecution"`
					} `yaml:"podAntiAffinity"`
				} `yaml:"affinity"`
				Containers []clusterContainer `yaml:"containers"`
				Volumes    []volume           `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata metadata `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type volume struct {
	Name      string    `yaml:"name"`
	EmptyDir  *struct{} `yaml:"emptyDir"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
	} `yaml:"secret"`
}

type affinityTerm struct {
	TopologyKey   string `yaml:"topologyKey"`
	LabelSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"labelSelector"`
}

type clusterContainer struct {
	Name  string `yaml:"name"`
	Image string `yaml:"image"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Args    []string `yaml:"args"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	Env            []envVar `yaml:"env"`
	StartupProbe   *probe   `yaml:"startupProbe"`
	LivenessProbe  *probe   `yaml:"livenessProbe"`
	ReadinessProbe *probe   `yaml:"readinessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	Lifecycle struct {
		PreStop struct {
			Sleep struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
			Exec struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
		SecretKeyRef *struct {
			Name     string `yaml:"name"`
			Key      string `yaml:"key"`
			Optional bool   `yaml:"optional"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

type pdb struct {
	object `yaml:",inline"`
	Spec   struct {
		MinAvailable   any `yaml:"minAvailable"`
		MaxUnavailable any `yaml:"maxUnavailable"`
		Selector       struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
	} `yaml:"spec"`
}

type headlessService struct {
	object `yaml:",inline"`
	Spec   struct {
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []struct {
			Port int `yaml:"port"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

// selects reports whether every label of sel is on labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestKubernetesClusterNATS: NATS as a StatefulSet of three servers of the
// pinned version, each with a JetStream store on its own volume claim, and
// a configuration (parsed by nats-server itself) that routes each to all
// three by the names the headless Service gives them.
func TestKubernetesClusterNATS(t *testing.T) {
	byKind := kustomizeBuild(t, k8sClusterDir)
	sts := named[clusterPod](t, byKind, "StatefulSet", natsStatefulSet)
	s := sts.Spec
	if s.Replicas == nil || *s.Replicas != 3 {
		t.Fatalf("NATS replicas %s, want 3", intPtr(s.Replicas))
	}
	svc := named[headlessService](t, byKind, "Service", s.ServiceName)
	if svc.Spec.ClusterIP != "None" || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: clusterIP %q, publishNotReadyAddresses %v; want a headless Service that names pods before they are ready",
			s.ServiceName, svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
	}
	labels := s.Template.Metadata.Labels
	if !selects(s.Selector.MatchLabels, labels) || !selects(svc.Spec.Selector, labels) {
		t.Errorf("the StatefulSet's or the Service's selector does not match the NATS pods' labels %v", labels)
	}
	khadgaSvc := named[service](t, byKind, "Service", "khadga")
	if selects(khadgaSvc.Spec.Selector, labels) {
		t.Error("the khadga Service selects the NATS pods")
	}
	if len(s.Template.Spec.Containers) != 1 {
		t.Fatalf("%d NATS containers, want 1", len(s.Template.Spec.Containers))
	}
	c := s.Template.Spec.Containers[0]
	if want := "nats:" + strings.TrimPrefix(goModVersion(t, "github.com/nats-io/nats-server/v2"), "v") + "-alpine"; c.Image != want {
		t.Errorf("NATS image %q, want %s: the version the tests run in process (go.mod), pinned", c.Image, want)
	}
	if !slices.ContainsFunc(c.Env, func(e envVar) bool {
		return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}) {
		t.Error("the NATS container gets no POD_NAME from metadata.name (its server_name)")
	}
	// The configuration file, from its ConfigMap, parsed by nats-server
	// with the environment the kubelet gives pod nats-1.
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	o, err := processNATSConf(t, natsConfPath(t, byKind, sts, nil), podEnv(t, c.Env, "nats-1", testSecrets))
	if err != nil {
		t.Fatalf("nats-server refuses the configuration: %v", err)
	}
	if !o.JetStream || o.ServerName != "nats-1" {
		t.Errorf("JetStream %v, server name %q; want JetStream on and the pod's name", o.JetStream, o.ServerName)
	}
	if len(s.VolumeClaimTemplates) != 1 || mounts[s.VolumeClaimTemplates[0].Metadata.Name] != o.StoreDir {
		t.Errorf("the JetStream store %s is not on the volume claim (mounts %v)", o.StoreDir, mounts)
	}
	var routes, want []string
	for _, r := range o.Routes {
		routes = append(routes, r.Host)
	}
	for i := range *s.Replicas {
		want = append(want, fmt.Sprintf("%s-%d.%s:%d", natsStatefulSet, i, s.ServiceName, o.Cluster.Port))
	}
	slices.Sort(routes)
	if o.Cluster.Name == "" || !slices.Equal(routes, want) {
		t.Errorf("cluster %q routes %v, want %v", o.Cluster.Name, routes, want)
	}
	ports := map[int]bool{}
	for _, p := range svc.Spec.Ports {
		ports[p.Port] = true
	}
	if !ports[o.Port] || !ports[o.Cluster.Port] {
		t.Errorf("the headless Service has ports %v, want the client %d and cluster %d ports", ports, o.Port, o.Cluster.Port)
	}
	if pr := c.ReadinessProbe; pr == nil || pr.HTTPGet == nil || !strings.HasPrefix(pr.HTTPGet.Path, "/healthz") {
		t.Error("NATS has no /healthz readiness probe")
	}
	checkPDB(t, byKind, labels)
	// One server a node, required: two on one node would take two copies
	// and the quorum with it.
	if !slices.ContainsFunc(s.Template.Spec.Affinity.PodAntiAffinity.Required, func(r affinityTerm) bool {
		return r.TopologyKey == "kubernetes.io/hostname" && selects(r.LabelSelector.MatchLabels, labels)
	}) {
		t.Error("NATS pods without a required anti-affinity on kubernetes.io/hostname")
	}
	// Lame duck mode before SIGTERM: preStop signals the server through
	// the pid file the configuration writes, on a writable volume, and the
	// grace period covers the whole lame duck mode.
	pre := c.Lifecycle.PreStop.Exec.Command
	if o.PidFile == "" || !slices.Equal(pre, []string{"nats-server", "--signal", "ldm=" + o.PidFile}) {
		t.Errorf("preStop %q, want nats-server --signal ldm=PIDFILE with the configuration's pid_file %q", pre, o.PidFile)
	}
	if dir := filepath.Dir(o.PidFile); mounts["pid"] != dir || !slices.ContainsFunc(s.Template.Spec.Volumes, func(v volume) bool {
		return v.Name == "pid" && v.EmptyDir != nil
	}) {
		t.Errorf("the pid file's directory %s is not an emptyDir mount (the root file system is read-only): mounts %v", dir, mounts)
	}
	ldm := o.LameDuckGracePeriod + o.LameDuckDuration
	if g := s.Template.Spec.TerminationGracePeriodSeconds; o.LameDuckDuration == 0 || g == nil ||
		time.Duration(*g)*time.Second < ldm+10*time.Second {
		t.Errorf("terminationGracePeriodSeconds %s, want lame duck mode (%v + %v) and 10 s of margin", intPtr(g),
			o.LameDuckGracePeriod, o.LameDuckDuration)
	}
}

// checkPDB fails unless a PodDisruptionBudget covers the pods with labels
// and lets at most one of three go at once.
func checkPDB(t *testing.T, byKind map[string][]manifest, labels map[string]string) {
	t.Helper()
	for _, m := range byKind["PodDisruptionBudget"] {
		b := as[pdb](t, m)
		if !selects(b.Spec.Selector.MatchLabels, labels) {
			continue
		}
		if fmt.Sprint(b.Spec.MaxUnavailable) != "1" && fmt.Sprint(b.Spec.MinAvailable) != "2" {
			t.Errorf("PodDisruptionBudget %s: maxUnavailable %v, minAvailable %v; want 1 or 2 of 3", b.Metadata.Name,
				b.Spec.MaxUnavailable, b.Spec.MinAvailable)
		}
		return
	}
	t.Errorf("no PodDisruptionBudget selects the pods labelled %v", labels)
}

// TestKubernetesClusterNodes: khadga as a Deployment of three on every
// NATS server with three copies, no volume claim, readiness on /readyz
// (which follows the NATS connection), a PodDisruptionBudget, and a
// preStop pause plus a grace long enough for the drain.
func TestKubernetesClusterNodes(t *testing.T) {
	byKind := kustomizeBuild(t, k8sClusterDir)
	d := named[clusterPod](t, byKind, "Deployment", "khadga")
	s := d.Spec
	if s.Replicas == nil || *s.Replicas != 3 {
		t.Fatalf("khadga replicas %s, want 3", intPtr(s.Replicas))
	}
	labels := s.Template.Metadata.Labels
	if !selects(s.Selector.MatchLabels, labels) || !selects(named[service](t, byKind, "Service", "khadga").Spec.Selector, labels) {
		t.Errorf("the Deployment's or the Service's selector does not match the pods' labels %v", labels)
	}
	checkPDB(t, byKind, labels)
	if len(s.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(s.Template.Spec.Containers))
	}
	c := s.Template.Spec.Containers[0]
	var cm configMap
	for _, e := range c.EnvFrom {
		if e.ConfigMapRef != nil {
			cm = named[configMap](t, byKind, "ConfigMap", e.ConfigMapRef.Name)
		}
	}
	natsSts := named[clusterPod](t, byKind, "StatefulSet", natsStatefulSet)
	var want []string
	for i := range *natsSts.Spec.Replicas {
		want = append(want, fmt.Sprintf("%s-%d.%s:%d", natsStatefulSet, i, natsSts.Spec.ServiceName, natsClientPort))
	}
	// KHADGA_NATS carries the password, so it is the pod's, from the
	// Secret, and not the ConfigMap's.
	if _, ok := cm.Data["KHADGA_NATS"]; ok {
		t.Error("the ConfigMap sets KHADGA_NATS: its URLs carry the NATS password, which belongs in the Secret")
	}
	checkNATSURLs(t, k8sClusterDir+" KHADGA_NATS", podEnv(t, c.Env, "khadga-x", testSecrets)["KHADGA_NATS"], want)
	if got := cm.Data["KHADGA_NATS_REPLICAS"]; got != fmt.Sprint(*natsSts.Spec.Replicas) {
		t.Errorf("KHADGA_NATS_REPLICAS %q, want %d (a copy on each NATS server)", got, *natsSts.Spec.Replicas)
	}
	checkEnvNames(t, k8sClusterDir+" ConfigMap", sortedKeys(cm.Data))
	for k, v := range cm.Data {
		if secretish.MatchString(k) && v != "" {
			t.Errorf("the ConfigMap holds %s in plain text; it belongs in the Secret", k)
		}
	}
	var envNames []string
	for _, e := range c.Env {
		envNames = append(envNames, e.Name)
		if secretish.MatchString(e.Name) && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("%s is not taken from a Secret", e.Name)
		}
	}
	checkEnvNames(t, k8sClusterDir+" Deployment env", envNames)
	// Nothing of the bbolt store: no claim, only scratch volumes.
	for _, v := range s.Template.Spec.Volumes {
		if v.EmptyDir == nil {
			t.Errorf("volume %s is not an emptyDir: a cluster node keeps nothing", v.Name)
		}
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || m.MountPath == cm.Data["KHADGA_DATA"]
	}
	if !mounted {
		t.Errorf("KHADGA_DATA %s (the admin socket) is not writable: the root filesystem is read-only", cm.Data["KHADGA_DATA"])
	}
	if pr := c.ReadinessProbe; pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != "/readyz" || fmt.Sprint(pr.HTTPGet.Port) != "http" {
		t.Errorf("readiness probe %+v, want GET /readyz on http", pr)
	}
	for name, pr := range map[string]*probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe} {
		if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != "/healthz" {
			t.Errorf("%s probe %+v, want GET /healthz", name, pr)
		}
	}
	// A node waits for NATS before /healthz answers: its startup probe
	// must wait at least as long as NATS's own is allowed to start.
	if ns := natsSts.Spec.Template.Spec.Containers[0].StartupProbe; c.StartupProbe != nil && ns != nil &&
		c.StartupProbe.budget() < ns.budget() {
		t.Errorf("khadga's startup probe gives up after %v, NATS's after %v: a slow NATS start would restart every node",
			c.StartupProbe.budget(), ns.budget())
	}
	// SIGTERM comes after preStop; the drain then takes up to the
	// server's shutdown grace, and the base's 30 s covers that.
	pause := c.Lifecycle.PreStop.Sleep.Seconds
	if pause <= 0 {
		t.Error("no preStop pause: the Service would still send clients to a node that stopped accepting")
	}
	if g := s.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g < pause+30 {
		t.Errorf("terminationGracePeriodSeconds %s, want at least the preStop %d s + 30 s for the drain", intPtr(g), pause)
	}
	// hostNetwork (TURN on each node's address): one pod a node, and no
	// surge pod that would need a fourth node's ports.
	if hn := s.Template.Spec.HostNetwork; hn != nil && *hn {
		spread := slices.ContainsFunc(s.Template.Spec.Affinity.PodAntiAffinity.Required, func(r affinityTerm) bool {
			return r.TopologyKey == "kubernetes.io/hostname" && selects(r.LabelSelector.MatchLabels, labels)
		})
		if !spread {
			t.Error("hostNetwork pods without a required anti-affinity on kubernetes.io/hostname: two would share a node's ports")
		}
		if fmt.Sprint(s.Strategy.RollingUpdate.MaxSurge) != "0" {
			t.Errorf("maxSurge %v with hostNetwork, want 0", s.Strategy.RollingUpdate.MaxSurge)
		}
	}
}

func intPtr(p *int) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// testSecrets are the Secrets the tests give the pods: the NATS
// passwords an operator would create (nats-secret.example.yaml).
var testSecrets = map[string]map[string]string{
	"nats-auth": {"khadga-password": testNATSPassword, "route-password": testRoutePassword},
}

// envRef is a $(NAME) reference in an env value, which the kubelet
// expands from the variables defined before it.
var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// podEnv is the environment the kubelet gives a container of pod from
// env: values with $(NAME) expanded from the variables before them (a
// reference to one defined later, or not at all, stays as it is),
// metadata.name from the pod's name, and Secret keys from secrets; a
// missing Secret key of a reference that is not optional fails the test,
// since the pod would not start.
func podEnv(t *testing.T, env []envVar, pod string, secrets map[string]map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range env {
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = envRef.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if v, ok := out[envRef.FindStringSubmatch(ref)[1]]; ok {
					return v
				}
				return ref
			})
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			out[e.Name] = pod
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := secrets[ref.Name][ref.Key]
			if !ok && !ref.Optional {
				t.Fatalf("%s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			if ok {
				out[e.Name] = v
			}
		default:
			t.Fatalf("%s: a value source the test does not know", e.Name)
		}
	}
	return out
}

// podFiles writes the files that container of pod sees through its
// ConfigMap and Secret volumes under a new directory that stands for the
// container's root, and returns it. files are the Secrets' files by
// Secret name (those a test makes; a Secret it lacks fails the test, as
// the pod would not start). In the files written, every mount path of the
// container's ConfigMaps and Secrets is moved under the root, so that a
// configuration naming another mounted file finds it.
func podFiles(t *testing.T, byKind map[string][]manifest, pod clusterPod, container string, files map[string]map[string][]byte) string {
	t.Helper()
	spec := pod.Spec.Template.Spec
	i := slices.IndexFunc(spec.Containers, func(c clusterContainer) bool { return c.Name == container })
	if i < 0 {
		t.Fatalf("no container %s", container)
	}
	root := t.TempDir()
	written := map[string]map[string][]byte{} // mount path -> file -> contents
	var moves []string
	for _, m := range spec.Containers[i].VolumeMounts {
		j := slices.IndexFunc(spec.Volumes, func(v volume) bool { return v.Name == m.Name })
		if j < 0 {
			continue // a volume claim's
		}
		switch v := spec.Volumes[j]; {
		case v.ConfigMap != nil:
			data := map[string][]byte{}
			for k, text := range named[configMap](t, byKind, "ConfigMap", v.ConfigMap.Name).Data {
				data[k] = []byte(text)
			}
			written[m.MountPath] = data
		case v.Secret != nil:
			data, ok := files[v.Secret.SecretName]
			if !ok {
				t.Fatalf("volume %s: the test has no Secret %s", v.Name, v.Secret.SecretName)
			}
			written[m.MountPath] = data
		default:
			continue // scratch space, which the test's paths leave where they are
		}
		moves = append(moves, m.MountPath+"/", filepath.Join(root, m.MountPath)+"/")
	}
	move := strings.NewReplacer(moves...)
	for mount, data := range written {
		dir := filepath.Join(root, mount)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for k, b := range data {
			if err := os.WriteFile(filepath.Join(dir, k), []byte(move.Replace(string(b))), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

// natsConfPath is the configuration file the NATS container of sts reads
// (--config), with its mounted files under a new root (podFiles).
func natsConfPath(t *testing.T, byKind map[string][]manifest, sts clusterPod, files map[string]map[string][]byte) string {
	t.Helper()
	c := sts.Spec.Template.Spec.Containers[0]
	conf := filepath.Join(podFiles(t, byKind, sts, c.Name, files), flagValue(c.Args, "config"))
	if _, err := os.Stat(conf); err != nil {
		t.Fatalf("--config %q is not a file of a mounted ConfigMap (args %v): %v", flagValue(c.Args, "config"), c.Args, err)
	}
	return conf
}

// processNATSConf parses the nats-server configuration file conf as
// nats-server does, with env in the process environment (its $NAMEs).
func processNATSConf(t *testing.T, conf string, env map[string]string) (*natsserver.Options, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	return natsserver.ProcessConfigFile(conf)
}

// checkNATSURLs fails unless urls (KHADGA_NATS) names exactly the servers
// hosts, each as the user khadga with testNATSPassword.
func checkNATSURLs(t *testing.T, where, urls string, hosts []string) {
	t.Helper()
	var got []string
	for _, s := range strings.Split(urls, ",") {
		u, err := url.Parse(s)
		if err != nil { // url's error would show the password
			t.Errorf("%s: %s does not parse as a URL", where, natsconn.Redact(s))
			continue
		}
		got = append(got, u.Host)
		if pw, _ := u.User.Password(); u.User.Username() != "khadga" || pw != testNATSPassword {
			t.Errorf("%s: %s does not carry the user khadga and its password from the Secret", where, natsconn.Redact(s))
		}
	}
	if !slices.Equal(got, hosts) {
		t.Errorf("%s names %v, want every NATS server %v", where, got, hosts)
	}
}

// checkNATSAuth fails unless o lets in one client user, khadga, with
// khadgaPW and nobody anonymously, and routes only with the route user's
// password, which every route URL carries.
func checkNATSAuth(t *testing.T, where string, o *natsserver.Options, khadgaPW, routePW string) {
	t.Helper()
	if len(o.Users) != 1 || o.Users[0].Username != "khadga" || o.Users[0].Password != khadgaPW || khadgaPW == "" {
		t.Errorf("%s: NATS users %d; want only khadga, with the password from the Secret", where, len(o.Users))
	}
	if o.NoAuthUser != "" || o.Username != "" || o.Authorization != "" || len(o.Nkeys) > 0 {
		t.Errorf("%s: NATS takes other clients too (no_auth_user %q, user %q, token set %v, nkeys %d)", where,
			o.NoAuthUser, o.Username, o.Authorization != "", len(o.Nkeys))
	}
	if o.Cluster.Username == "" || o.Cluster.Password != routePW || routePW == "" {
		t.Errorf("%s: routes are not authorised with the route password (cluster user %q)", where, o.Cluster.Username)
	}
	for _, r := range o.Routes {
		if pw, _ := r.User.Password(); r.User.Username() != o.Cluster.Username || pw != routePW {
			t.Errorf("%s: route %s does not carry the route credentials", where, r.Host)
		}
	}
}

// serveNATS starts a nats-server with o's settings on a 127.0.0.1 port of
// its own, without monitoring, with a store of its own, and stops it when
// the test ends. Without a clusterAddr it is alone (o's cluster and routes
// left out); with one, it listens there for routes with o's cluster
// settings and dials routes.
func serveNATS(t *testing.T, o *natsserver.Options, clusterAddr string, routes ...*url.URL) *natsserver.Server {
	t.Helper()
	cp := *o
	cp.Host, cp.Port, cp.HTTPHost, cp.HTTPPort = "127.0.0.1", -1, "", 0
	if clusterAddr == "" {
		cp.Cluster, cp.Routes = natsserver.ClusterOpts{}, nil
	} else {
		cp.Cluster.Host, cp.Cluster.Port = hostPort(clusterAddr)
		cp.Routes = routes
	}
	cp.StoreDir, cp.PidFile = t.TempDir(), ""
	cp.NoLog, cp.NoSigs = true, true
	s, err := natsserver.NewServer(&cp)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return s
}

// checkNATSAuthServes starts a standalone nats-server with o's
// authorization (serveNATS) and checks who gets in: nobody without
// khadga's password (nor with the routes'), and khadgaURL, pointed at it,
// with JetStream.
func checkNATSAuthServes(t *testing.T, o *natsserver.Options, khadgaURL string) {
	t.Helper()
	s := serveNATS(t, o, "")
	addr := s.Addr().String()
	for _, u := range []string{"nats://" + addr, "nats://khadga:wrong@" + addr, "nats://khadga:@" + addr,
		"nats://route:" + testRoutePassword + "@" + addr} {
		if nc, err := nats.Connect(u); !errors.Is(err, nats.ErrAuthorization) {
			if nc != nil {
				nc.Close()
			}
			t.Errorf("NATS client %s: %v, want an authorization violation", natsconn.Redact(u), err)
		}
	}
	u, err := url.Parse(strings.Split(khadgaURL, ",")[0])
	if err != nil {
		t.Fatal(err)
	}
	u.Host = addr
	nc, err := nats.Connect(u.String())
	if err != nil {
		t.Fatalf("khadga's URL is refused: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Errorf("JetStream for khadga's user: %v", err)
	}
}

// TestKubernetesClusterNATSAuth: the NATS servers take only the user
// khadga, with the password from the Secret nats-auth, and routes only
// with the route password; the khadga pods' KHADGA_NATS carries the same
// password, so a real nats-server started with that authorization lets
// khadga's URL in (with JetStream) and refuses everyone else. The example
// Secret's placeholders make nats-server refuse to start, and every
// reference to nats-auth is mandatory and names a key of the example.
func TestKubernetesClusterNATSAuth(t *testing.T) {
	byKind := kustomizeBuild(t, k8sClusterDir)
	sts := named[clusterPod](t, byKind, "StatefulSet", natsStatefulSet)
	node := named[clusterPod](t, byKind, "Deployment", "khadga")
	nc, kc := sts.Spec.Template.Spec.Containers[0], node.Spec.Template.Spec.Containers[0]
	example := as[secret](t, decodeFile(t, k8sClusterDir+"/nats-secret.example.yaml")[0])
	if example.Metadata.Name != "nats-auth" || example.Metadata.Namespace != "khadga" {
		t.Fatalf("nats-secret.example.yaml is %s in %q", example.Metadata.Name, example.Metadata.Namespace)
	}
	for _, e := range append(slices.Clone(nc.Env), kc.Env...) {
		if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil && ref.SecretKeyRef.Name == "nats-auth" {
			if ref.SecretKeyRef.Optional {
				t.Errorf("%s: optional; without the password a pod must not start", e.Name)
			}
			if _, ok := example.StringData[ref.SecretKeyRef.Key]; !ok {
				t.Errorf("%s reads key %q, which nats-secret.example.yaml lacks", e.Name, ref.SecretKeyRef.Key)
			}
		}
	}
	conf := natsConfPath(t, byKind, sts, nil)
	o, err := processNATSConf(t, conf, podEnv(t, nc.Env, "nats-0", testSecrets))
	if err != nil {
		t.Fatalf("nats-server refuses the configuration: %v", err)
	}
	checkNATSAuth(t, k8sClusterDir, o, testNATSPassword, testRoutePassword)
	checkNATSAuthServes(t, o, podEnv(t, kc.Env, "khadga-x", testSecrets)["KHADGA_NATS"])
	// Applied as it is, the example must not give NATS a known password.
	_, err = processNATSConf(t, conf, podEnv(t, nc.Env, "nats-0", map[string]map[string]string{"nats-auth": example.StringData}))
	if err == nil {
		t.Error("nats-server accepts the example Secret's placeholders as passwords")
	}
}

type networkPolicy struct {
	object `yaml:",inline"`
	Spec   struct {
		PodSelector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"podSelector"`
		PolicyTypes []string `yaml:"policyTypes"`
		Ingress     []struct {
			From []struct {
				PodSelector *struct {
					MatchLabels map[string]string `yaml:"matchLabels"`
				} `yaml:"podSelector"`
				NamespaceSelector *struct{} `yaml:"namespaceSelector"`
				IPBlock           *struct {
					CIDR string `yaml:"cidr"`
				} `yaml:"ipBlock"`
			} `yaml:"from"`
			Ports []struct {
				Port any `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
	} `yaml:"spec"`
}

// TestKubernetesClusterNetworkPolicy: a NetworkPolicy keeps the NATS
// servers' ports to those who need them: routes from the NATS pods only,
// clients from the khadga pods (by ipBlock, since they use hostNetwork,
// private ranges only, and by label), and monitoring from nobody (the
// kubelet's probes come from the pod's own node, always allowed). Every
// rule names its ports and its sources: a rule without would open all.
func TestKubernetesClusterNetworkPolicy(t *testing.T) {
	byKind := kustomizeBuild(t, k8sClusterDir)
	sts := named[clusterPod](t, byKind, "StatefulSet", natsStatefulSet)
	node := named[clusterPod](t, byKind, "Deployment", "khadga")
	natsLabels, nodeLabels := sts.Spec.Template.Metadata.Labels, node.Spec.Template.Metadata.Labels
	c := sts.Spec.Template.Spec.Containers[0]
	o, err := processNATSConf(t, natsConfPath(t, byKind, sts, nil), podEnv(t, c.Env, "nats-0", testSecrets))
	if err != nil {
		t.Fatal(err)
	}
	portNames := map[string]int{}
	for _, p := range c.Ports {
		portNames[p.Name] = p.ContainerPort
	}
	var found bool
	type source struct {
		pods   map[string]string // podSelector
		cidr   string            // ipBlock
		anyNS  bool              // namespaceSelector
		anyone bool
	}
	allowed := map[int][]source{}
	for _, m := range byKind["NetworkPolicy"] {
		np := as[networkPolicy](t, m)
		if !selects(np.Spec.PodSelector.MatchLabels, natsLabels) || !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
			continue
		}
		found = true
		for i, r := range np.Spec.Ingress {
			if len(r.Ports) == 0 || len(r.From) == 0 {
				t.Errorf("NetworkPolicy %s rule %d has no ports or no sources: it opens all of them", np.Metadata.Name, i)
			}
			var srcs []source
			for _, f := range r.From {
				s := source{anyNS: f.NamespaceSelector != nil}
				if f.PodSelector != nil {
					s.pods = f.PodSelector.MatchLabels
				}
				if f.IPBlock != nil {
					s.cidr = f.IPBlock.CIDR
				}
				srcs = append(srcs, s)
			}
			if len(r.From) == 0 {
				srcs = append(srcs, source{anyone: true})
			}
			for _, p := range r.Ports {
				port, ok := portNames[fmt.Sprint(p.Port)]
				if !ok {
					port, _ = strconv.Atoi(fmt.Sprint(p.Port))
				}
				allowed[port] = append(allowed[port], srcs...)
			}
		}
	}
	if !found {
		t.Fatal("no NetworkPolicy restricts ingress to the NATS pods")
	}
	for _, s := range allowed[o.Cluster.Port] {
		if s.anyone || s.anyNS || s.cidr != "" || !selects(s.pods, natsLabels) {
			t.Errorf("the route port %d is open to %+v, want the NATS pods only", o.Cluster.Port, s)
		}
	}
	if len(allowed[o.Cluster.Port]) == 0 {
		t.Errorf("the route port %d is closed to the NATS pods themselves", o.Cluster.Port)
	}
	if len(allowed[o.HTTPPort]) > 0 {
		t.Errorf("the monitoring port %d is open to %+v", o.HTTPPort, allowed[o.HTTPPort])
	}
	var byIP, byLabel bool
	for _, s := range allowed[o.Port] {
		if s.anyone || s.anyNS {
			t.Errorf("the client port %d is open to %+v", o.Port, s)
		}
		if s.cidr != "" {
			p, err := netip.ParsePrefix(s.cidr)
			if err != nil || !p.Addr().IsPrivate() || p.Bits() < 8 {
				t.Errorf("the client port %d is open to %s, want private node addresses", o.Port, s.cidr)
			}
			byIP = true
		}
		byLabel = byLabel || (s.pods != nil && selects(s.pods, nodeLabels))
	}
	if hn := node.Spec.Template.Spec.HostNetwork; hn != nil && *hn && !byIP {
		t.Errorf("the khadga pods use hostNetwork, but no ipBlock lets their nodes reach the client port %d", o.Port)
	}
	if !byLabel {
		t.Errorf("no podSelector of the client port %d selects the khadga pods' labels %v", o.Port, nodeLabels)
	}
}

// TestKubernetesDocsPods: the one-off pods the docs start with kubectl
// run --overrides: the migration into the cluster reaches NATS as the
// nodes do (the label the NetworkPolicy admits, KHADGA_NATS with the
// password from the Secret), and the single node's restore reads the
// backup from its attached standard input.
func TestKubernetesDocsPods(t *testing.T) {
	type pod struct {
		Spec struct {
			Containers []struct {
				Args  []string `yaml:"args"`
				Stdin bool     `yaml:"stdin"`
				Env   []envVar `yaml:"env"`
			} `yaml:"containers"`
		} `yaml:"spec"`
	}
	overrides := regexp.MustCompile(`(?s)kubectl -n khadga run (\w+) .*?--overrides='(\{.*?\})'`)
	found := map[string]pod{}
	labels := map[string]string{}
	for _, page := range []string{"docs/cluster.md", "docs/deploy.md"} {
		for _, m := range overrides.FindAllStringSubmatch(readRepoFile(t, page), -1) {
			var p pod
			if err := yaml.Unmarshal([]byte(m[2]), &p); err != nil || len(p.Spec.Containers) != 1 {
				t.Fatalf("%s: kubectl run %s: --overrides is not one container's pod: %v", page, m[1], err)
			}
			found[m[1]] = p
			labels[m[1]] = m[0]
		}
	}
	migrate, ok := found["migrate"]
	if !ok {
		t.Fatal("docs/cluster.md has no kubectl run migrate")
	}
	if !strings.Contains(labels["migrate"], "--labels=app.kubernetes.io/part-of=khadga") {
		t.Error("the migrate pod lacks the label app.kubernetes.io/part-of=khadga: the NetworkPolicy keeps it from NATS")
	}
	var hosts []string
	for i := range 3 {
		hosts = append(hosts, fmt.Sprintf("nats-%d.nats:%d", i, natsClientPort))
	}
	checkNATSURLs(t, "docs/cluster.md migrate pod", podEnv(t, migrate.Spec.Containers[0].Env, "migrate", testSecrets)["KHADGA_NATS"], hosts)
	restore, ok := found["restore"]
	if !ok {
		t.Fatal("docs/deploy.md has no kubectl run restore")
	}
	if c := restore.Spec.Containers[0]; !c.Stdin || len(c.Args) == 0 || c.Args[0] != "restore" || c.Args[len(c.Args)-1] != "-" ||
		flagValue(c.Args, "data") == "" {
		t.Errorf("restore pod args %q stdin %v, want restore --data DIR - with stdin", c.Args, c.Stdin)
	}
}

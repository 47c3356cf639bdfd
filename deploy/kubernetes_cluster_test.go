package deploy_test

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
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
		k8sClusterDir: {"Namespace": 1, "ConfigMap": 2, "Service": 2, "StatefulSet": 1, "Deployment": 1, "PodDisruptionBudget": 2},
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
}

type affinityTerm struct {
	TopologyKey   string `yaml:"topologyKey"`
	LabelSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"labelSelector"`
}

type clusterContainer struct {
	Image   string   `yaml:"image"`
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
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
		SecretKeyRef *struct {
			Name string `yaml:"name"`
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
	// The configuration file, from its ConfigMap, parsed by nats-server.
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	confPath := flagValue(c.Args, "config")
	var conf string
	for _, v := range s.Template.Spec.Volumes {
		if v.ConfigMap != nil && strings.HasPrefix(confPath, mounts[v.Name]+"/") {
			conf = named[configMap](t, byKind, "ConfigMap", v.ConfigMap.Name).Data[strings.TrimPrefix(confPath, mounts[v.Name]+"/")]
		}
	}
	if conf == "" {
		t.Fatalf("--config %q is not a file of a mounted ConfigMap (args %v)", confPath, c.Args)
	}
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", "nats-1")
	o, err := natsserver.ProcessConfigFile(file)
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
		want = append(want, fmt.Sprintf("nats://%s-%d.%s:%d", natsStatefulSet, i, natsSts.Spec.ServiceName, natsClientPort))
	}
	if got := strings.Split(cm.Data["KHADGA_NATS"], ","); !slices.Equal(got, want) {
		t.Errorf("KHADGA_NATS %v, want every NATS server %v", got, want)
	}
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

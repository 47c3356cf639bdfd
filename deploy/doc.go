// Package deploy holds khadga's deployment files and their tests: the
// Dockerfile, .dockerignore and docker-compose.yml at the repository root
// (with its three-node `cluster` profile, whose load balancer configuration
// is deploy/cluster/Caddyfile and NATS configuration
// deploy/cluster/nats.conf), the Kubernetes manifests in
// deploy/kubernetes and the overlays beside them
// (deploy/kubernetes-loadbalancer: TURN behind a LoadBalancer;
// deploy/kubernetes-cluster: three nodes on NATS;
// deploy/kubernetes-cluster-tls: the same with TLS to NATS), and the container
// healthcheck program in deploy/healthcheck.
//
// There is no Docker engine or Kubernetes cluster on the development and CI
// machines, so the tests check these files without one: compose-go loads
// the compose file as Docker Compose would, BuildKit's parser and build
// checks read the Dockerfile, kustomize's own library builds every overlay,
// a YAML decoder reads every manifest, nats-server parses the NATS
// settings, every KHADGA_* variable they set is checked against the flags
// that `khadga config example` lists, and the real server and recorder
// binaries are run with the containers' settings (the cluster's behind the
// real Caddy, on NATS servers started in process). docs/deploy.md and
// docs/cluster.md are the operator's guides and list what the tests check.
package deploy

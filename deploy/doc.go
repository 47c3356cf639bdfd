// Package deploy holds khadga's deployment files and their tests: the
// Dockerfile, .dockerignore and docker-compose.yml at the repository root,
// the Kubernetes manifests in deploy/kubernetes (and the LoadBalancer
// overlay beside them in deploy/kubernetes-loadbalancer), and the container
// healthcheck program in deploy/healthcheck.
//
// There is no Docker engine or Kubernetes cluster on the development and CI
// machines, so the tests check these files without one: compose-go loads
// the compose file as Docker Compose would, BuildKit's parser and build
// checks read the Dockerfile, a YAML decoder reads every manifest, every
// KHADGA_* variable they set is checked against the flags that
// `khadga config example` lists, and the real server and recorder binaries
// are run with the containers' settings. docs/deploy.md is the operator's
// guide and lists what the tests check.
package deploy

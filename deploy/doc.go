// Package deploy holds khadga's deployment files and their tests: the
// Dockerfile, .dockerignore and docker-compose.yml at the repository root,
// the Kubernetes manifests in deploy/kubernetes, and the container
// healthcheck program in deploy/healthcheck.
//
// There is no Docker engine or Kubernetes cluster on the development and CI
// machines, so the tests check these files statically: compose-go loads the
// compose file as Docker Compose would, a YAML decoder reads every manifest,
// the Dockerfile is parsed for its stages and instructions, and every
// KHADGA_* variable they set is checked against the flags that
// `khadga config example` lists. docs/deploy.md is the operator's guide.
package deploy

// Package networks proves that khadga peers connect across real networks:
// NATs, blocked UDP, loss and a network that changes mid-call, built in
// Linux network namespaces with the kernel's own NAT (internal/netlab).
// Its tests run khadga serve in a "public" namespace and khadga-peer, and
// headless Chromium, in peer namespaces behind router namespaces. The
// topologies and the results are in docs/networks.md.
//
// The tests need Linux, root, iproute2 and nftables (scripts/setup.sh
// installs them). Without them they skip with the reason, and fail when
// KHADGA_REQUIRE_NETLAB=1 (and, for Chromium, KHADGA_REQUIRE_CHROMIUM=1),
// which the project's CI sets (.ci/run).
package networks

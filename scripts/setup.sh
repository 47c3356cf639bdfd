#!/usr/bin/env bash
# Installs what khadga's tests need on a fresh Debian machine:
#   build-essential  a C compiler: go test -race needs cgo (and libvpx through cgo); make too
#   make, git     make test itself; the Makefile lists files with git ls-files
#   coturn        turnutils_uclient, the TURN interop client (the daemon is never started as a service)
#   chromium      headless browser tests (Debian's build; no tool downloads its own browser)
#   libvpx-dev    VP8/VP9 through cgo for the test pattern and the recorder
#   libyuv-dev    the recorder's SIMD resize and I420->RGB through cgo (linked statically: no runtime package)
#   libopus-dev   Opus through cgo: the recorder decodes peers' audio, test peers send a tone
#   python3-numpy numpy reading the recorder's .npy output
#   pkg-config    for cgo to find libvpx
#   iproute2      ip netns, veth and bridges for the network lab (e2e/networks)
#   nftables      the lab routers' NAT, firewall and loss
#   nginx-light, caddy  the reverse proxy examples in deploy/proxy, run in front of khadga (never as services)
# and, with the machine's npm, the PeerJS server khadga-bench compares against.
# It is idempotent: when everything is present it returns at once.
#
# coturn, nginx and caddy come with services that Debian starts on install.
# The tests only run their programs, in the foreground on ports of their own,
# so while it installs this script forbids services to start (a temporary
# /usr/sbin/policy-rc.d that answers 101), and afterwards it disables the
# services of the packages it installed itself. Services that were there
# before it ran are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v gcc >/dev/null 2>&1 || need+=(build-essential)
command -v make >/dev/null 2>&1 || need+=(make)
command -v git >/dev/null 2>&1 || need+=(git)
command -v turnutils_uclient >/dev/null 2>&1 || need+=(coturn)
command -v chromium >/dev/null 2>&1 || need+=(chromium chromium-driver)
pkg-config --exists vpx 2>/dev/null || need+=(libvpx-dev pkg-config)
[ -e /usr/include/libyuv.h ] || need+=(libyuv-dev) # no .pc file in Debian's package
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev pkg-config)
/usr/bin/python3 -c 'import numpy' 2>/dev/null || need+=(python3 python3-numpy)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v caddy >/dev/null 2>&1 || need+=(caddy)

# The PeerJS server that khadga-bench compares against (TestPeerJS), from
# the npm registry with the machine's Node.js. It is a yardstick, not a part
# of khadga: if npm cannot fetch it, the test says it skipped and why.
if command -v npm >/dev/null 2>&1 && [ ! -f bench/peerjs/node_modules/peer/package.json ]; then
	bash bench/peerjs/setup.sh >/dev/null 2>&1 || echo "setup: npm could not install the PeerJS server; TestPeerJS will skip" >&2
fi

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "setup: the tests need these Debian packages, which are missing: ${need[*]}" >&2
	echo "setup: install them with: sudo apt-get install ${need[*]}" >&2
	echo "setup: (or run 'sudo bash scripts/setup.sh', or 'make test' as root)" >&2
	exit 1
fi
echo "setup: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive

# The packages this run installs that bring a service, and the service.
declare -A service_of=([coturn]=coturn [nginx-light]=nginx [caddy]=caddy)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q ' installed$'; }
ours=()
for pkg in "${need[@]}"; do
	if [ -n "${service_of[$pkg]:-}" ] && ! installed "$pkg"; then ours+=("$pkg"); fi
done

# invoke-rc.d and deb-systemd-invoke, which the packages' scripts start
# their services with, ask policy-rc.d first; 101 means "not allowed".
# Made only if there is none (a container image may have its own), and
# removed however this script ends. SETUP_POLICY_RC_D is for the tests.
policy_rc_d=${SETUP_POLICY_RC_D:-/usr/sbin/policy-rc.d}
if (set -C && printf '#!/bin/sh\n# scripts/setup.sh (khadga) while it installs packages; removed when it ends.\nexit 101\n' >"$policy_rc_d") 2>/dev/null; then
	trap 'rm -f "$policy_rc_d"' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	chmod 755 "$policy_rc_d"
fi

status=0
if ! apt-get update -qq || ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
	echo "setup: apt-get could not install: ${need[*]}" >&2
	status=1
fi
# Installed now (all, or some before apt-get failed), so enabled for the
# next boot: disable them, and stop any that started all the same.
for pkg in "${ours[@]}"; do
	if installed "$pkg" && command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now "${service_of[$pkg]}" >/dev/null 2>&1 || true
	fi
done
exit $status

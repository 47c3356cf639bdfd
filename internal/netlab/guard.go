package netlab

import (
	"encoding/json"
	"fmt"
	"strings"
)

// guardTable is the nftables table that every namespace of a lab gets
// before anything runs in it. It lets a packet that the namespace itself
// sends leave only for loopback, the lab's two documentation ranges and
// the link-local multicast block 224.0.0.0/24, which no router forwards
// (IGMP reports and mDNS, which kernels and WebRTC stacks send on their
// own); it drops everything else, IPv6 included, and remembers each
// destination it dropped, which the lab's cleanup reports as a test
// failure. Forwarded packets were sent by another namespace of the lab,
// whose own guard saw them.
const guardTable = "netlab_guard"

const guardRules = `table inet ` + guardTable + ` {
	set outside { type ipv4_addr; flags dynamic; }
	set outside6 { type ipv6_addr; flags dynamic; }
	chain output {
		type filter hook output priority filter; policy accept;
		meta nfproto ipv6 add @outside6 { ip6 daddr } drop
		ip daddr { 127.0.0.0/8, 198.51.100.0/24, 203.0.113.0/24 } accept
		ip daddr 224.0.0.0/24 accept
		add @outside { ip daddr } drop
	}
}`

// guarded returns the destinations the namespace's guard dropped, or an
// error when the guard cannot be read.
func (n *Netns) guarded() ([]string, error) {
	var dropped []string
	for _, set := range []string{"outside", "outside6"} {
		out, err := n.run(nil, "nft", "-j", "list", "set", "inet", guardTable, set)
		if err != nil {
			return nil, fmt.Errorf("nft list set %s: %v: %s", set, err, out)
		}
		var v struct {
			Nftables []struct {
				Set *struct {
					Elem []any `json:"elem"`
				} `json:"set"`
			} `json:"nftables"`
		}
		if err := json.Unmarshal(out, &v); err != nil {
			return nil, fmt.Errorf("nft list set %s: %v", set, err)
		}
		for _, o := range v.Nftables {
			if o.Set == nil {
				continue
			}
			for _, e := range o.Set.Elem {
				dropped = append(dropped, fmt.Sprint(e))
			}
		}
	}
	return dropped, nil
}

// tablesBut returns the nft commands that delete every table of the
// namespace except the guard, given `nft list tables`.
func tablesBut(list string) string {
	var b strings.Builder
	for line := range strings.Lines(list) {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "table" && (f[1] != "inet" || f[2] != guardTable) {
			fmt.Fprintf(&b, "delete table %s %s\n", f[1], f[2])
		}
	}
	return b.String()
}

// Package cidr parses the address ranges that operators write in flags and
// config files (TURN's allowed and denied peers, the trusted reverse
// proxies): a CIDR or a bare IP.
package cidr

import (
	"fmt"
	"net/netip"
)

// Parse reads a CIDR ("10.0.0.0/8", host bits cleared) or a bare IP (a /32
// or /128, zone dropped). IPv4-mapped IPv6 forms come out as IPv4, so that
// they match the unmapped addresses callers compare them with:
// ::ffff:10.0.0.0/104 is 10.0.0.0/8. A mapped prefix shorter than /96
// covers more than IPv4 and stays IPv6.
func Parse(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		p = p.Masked()
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96), nil
		}
		return p, nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an IP", s)
	}
	ip = ip.Unmap().WithZone("")
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

// ParseAll parses every entry of ss, failing on the first bad one.
func ParseAll(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := Parse(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

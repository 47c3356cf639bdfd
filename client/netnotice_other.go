//go:build !linux

package client

import "errors"

// netNotices: only Linux tells of address changes here (netnotice_linux.go);
// elsewhere the watch reads the host's addresses on its timer.
type netNotices struct{}

func openNetNotices() (*netNotices, error) {
	return nil, errors.New("no notices of address changes on this system")
}

func (*netNotices) notices() <-chan struct{} { return nil }

func (*netNotices) close() {}

// hasDefaultRoute is not known here: taken as true.
func hasDefaultRoute() bool { return true }

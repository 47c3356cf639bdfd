package main

import (
	"os"
	"runtime/debug"
)

// peerGCPercent is the garbage collector's target for khadga-peer when
// GOGC is not set. A peer moves bulk data through pion, which allocates
// about 20 bytes for every byte sent or received (packetizing, SCTP and
// DTLS marshalling, encryption), so at Go's default of 100 collection is
// about 12% of a file transfer's CPU and the transfer is CPU-bound. A peer
// process holds little live memory (a few MiB plus the file queue), so
// letting the heap grow to five times the live heap before collecting
// costs some tens of MiB and makes a loopback transfer markedly faster
// (docs/benchmarks.md, "Go client"). The client library leaves the
// collector alone: only a program may choose this for its own process.
const peerGCPercent = 400

// setGCPercent applies peerGCPercent unless the user set GOGC, which
// always wins.
func setGCPercent() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(peerGCPercent)
	}
}

// Command khadga-bench measures a khadga signaling server, and the PeerJS
// server as a yardstick, under the loads of issues 2 and 12:
//
//  1. idle: server memory (RSS) per idle authenticated connection at 1,000,
//     5,000 and 10,000 connections, each sending a heartbeat every 5 s;
//     khadga twice, with its presence feed off (?presence=0) and on
//     (?presence=1, as the web app opens it), PeerJS (which has no
//     presence) once;
//  2. open: the time to open and authenticate 1,000 connections with 50
//     dialers;
//  3. relay-max: a 1 KiB signal relayed between 200 concurrent pairs for
//     10 s as fast as possible (signals/s, p50/p99 latency);
//  4. relay-rate: the same at a fixed 10,000 signals/s in total (p50/p99).
//
// One run covers every combination of scheme (-schemes ws,wss) and load
// client (-clients tuned,plain). The tuned client is lean, so that the
// server gets the cores: raw system calls, small buffers and, over ws, its
// own frame reader in the relay phases. The plain client is
// gorilla/websocket as users run it: the default dialer, one WriteMessage
// per signal, a ReadMessage loop, and the presence feed on in every phase
// (?presence=1, as the web app opens it), so that its figures are those
// of what users run. The tuned client leaves the feed off except in the
// second idle run. For wss the bench makes a self-signed
// certificate for 127.0.0.1, which both servers present and the clients
// trust.
//
// Each combination starts fresh servers: khadga, built from ./cmd/khadga
// into a temporary directory and run as a separate process (so that its
// RSS is the server's alone) on a temporary data directory; a second one
// (khadga-idle) for the idle phase with the presence feed the other way;
// and the PeerJS server
// (bench/peerjs, npm package "peer"). Each phase then runs on every target
// back to back, and the open and relay phases run -rounds times with the
// order alternating, so that the figures come from the same conditions on
// a shared machine; the summary figures are medians over the rounds, and
// the floors of issue 12 are checked for each combination:
//
//	go run ./cmd/khadga-bench                  # everything, a table per combination
//	go run ./cmd/khadga-bench -json            # one JSON object
//	go run ./cmd/khadga-bench -schemes wss -clients plain
//	go run ./cmd/khadga-bench -target khadga -url http://127.0.0.1:8080 -pid 1234
//
// With -cluster N a run also measures khadga-cluster, issue 13's cluster:
// nats-server (built from the module cache, the version go.mod requires)
// with JetStream on 127.0.0.1 as a process of its own, and N `khadga serve
// --nats` nodes, each a process with its own ports and data dir.
// Connections go to the nodes in turn, and every relay pair has its peers
// on different nodes, so that each signal crosses NATS. Its memory is the
// sum of the nodes' RSS, with NATS's apart, and its server CPU is the
// nodes', with NATS's apart. Its floors: relay max at least PeerJS's, and
// p99 at -rate at most 3 ms.
//
//	go run ./cmd/khadga-bench -cluster 3
//
// -scale N is a run of its own instead: N idle authenticated connections
// (presence feed off, a heartbeat every -heartbeat) spread over
// -scale-nodes nodes (5) on one nats-server. The connections are held by
// load processes, the bench re-executed with KHADGA_BENCH_ROLE=load, at
// most 18,000 each (-scale-procs), so that no process passes the
// machine's descriptor limit; the bench checks each node's limit against
// its share plus the descriptors it holds of its own before it starts.
// A dial that a node refuses for now (503 with Retry-After, while its
// store does not answer in time) is waited out and tried again, as a
// client would, and counted.
// It reports the nodes' RSS per connection (NATS's apart), NATS's traffic
// per idle connection (from nats-server's /varz, against the same window
// before any connection), the most descriptors any process held, and
// asserts -scale-signals signals, each between two random peers on
// different nodes that join a room of their own:
//
//	go run ./cmd/khadga-bench -scale 99750 -scale-nodes 5
//
// -soak D is another run of its own: -soak-clients clients (300) churn for
// D at -soak-rate operations/s in all (200), as users do, against a fresh
// single node and then, with -cluster N, against N nodes (connections and
// resumes go to random nodes; -soak-single=false leaves the single node
// out). Each client opens the presence feed, joins
// and leaves a few rooms, signals peers it shares a room with, drops its
// socket (a FIN, no close frame) and resumes with its token, closes
// cleanly, abandons its session for a new one; one in a hundred reads
// slowly. After -soak-warmup of churn and every client closed, the
// baseline is read; every -soak-every the bench samples each node's RSS
// and descriptors (/proc) and its goroutines, heap, sessions, rooms and
// connections (its /metrics), and a cluster's NATS server's RSS and
// JetStream's stored messages (/jsz); at the end every client closes
// and each node must come back within -soak-settle to its baseline
// (goroutines and descriptors within a small slack, no session, room or
// connection left). Every signal carries a number: it must be read by its target or
// refused back to its sender, once. The report has the samples, each
// figure's least-squares growth per hour over the second half, and a
// verdict; the bench exits non-zero when it fails:
//
//	go run ./cmd/khadga-bench -soak 10m -cluster 3
//
// Latency is measured by a send timestamp inside each signal's payload; the
// load client runs on the same machine as the server. The bench reads
// /proc and uses Linux system calls, so it runs on Linux only; elsewhere it
// builds to a command that says so.
package main

// The PeerJS server that khadga-bench --target peerjs measures khadga against.
//
// It is the npm package "peer" with its defaults, except that it listens on
// 127.0.0.1 on the port given in argv[2] (0 picks a free one), at path "/",
// and that concurrent_limit is raised so that the bench can open 10,000
// connections. When it listens it prints one JSON line to stdout:
// {"port":N}. It exits when its stdin closes, so that it never outlives the
// bench that started it.
"use strict";

const { PeerServer } = require("peer");

const port = Number(process.argv[2] || 0);
const limit = Number(process.argv[3] || 20000);

const server = PeerServer(
  { host: "127.0.0.1", port, path: "/", concurrent_limit: limit },
  (httpServer) => {
    process.stdout.write(JSON.stringify({ port: httpServer.address().port }) + "\n");
  },
);
server.on("error", (err) => process.stderr.write(`peerjs: ${err}\n`));

process.stdin.on("end", () => process.exit(0));
process.stdin.on("close", () => process.exit(0));
process.stdin.resume();

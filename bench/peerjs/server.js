// The PeerJS server that khadga-bench --target peerjs measures khadga against.
//
//   node server.js [PORT [LIMIT [KEY_FILE CERT_FILE]]]
//
// It is the npm package "peer" with its defaults, except that it listens on
// 127.0.0.1 on PORT (0, the default, picks a free one), at path "/", and
// that concurrent_limit is LIMIT (default 20000) so that the bench can open
// 10,000 connections. With KEY_FILE and CERT_FILE (PEM) it serves https and
// wss through PeerServer's ssl option; without them, plain http and ws.
// When it listens it prints one JSON line to stdout: {"port":N}. It exits
// when its stdin closes, so that it never outlives the bench that started it.
"use strict";

const fs = require("node:fs");
const { PeerServer } = require("peer");

const port = Number(process.argv[2] || 0);
const limit = Number(process.argv[3] || 20000);
const [keyFile, certFile] = process.argv.slice(4, 6);
if (Boolean(keyFile) !== Boolean(certFile)) {
  process.stderr.write("peerjs: give both KEY_FILE and CERT_FILE, or neither\n");
  process.exit(2);
}

const options = { host: "127.0.0.1", port, path: "/", concurrent_limit: limit };
if (keyFile) {
  options.ssl = { key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) };
}

const server = PeerServer(options, (httpServer) => {
  process.stdout.write(JSON.stringify({ port: httpServer.address().port }) + "\n");
});
server.on("error", (err) => process.stderr.write(`peerjs: ${err}\n`));

process.stdin.on("end", () => process.exit(0));
process.stdin.on("close", () => process.exit(0));
process.stdin.resume();

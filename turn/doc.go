// Package turn is khadga's TURN server: pion/turn v4 with the policy a public
// relay needs.
//
// It adds to pion:
//
//   - Listeners: UDP and TCP on one port (several UDP sockets bound with
//     SO_REUSEPORT so the relay uses every core, since pion reads each socket
//     from one goroutine), and TURNS over TLS when a certificate is given.
//   - Credentials: the TURN REST API scheme that coturn implements with
//     use-auth-secret. The username is "<unix-expiry>:<user>" and the password
//     base64(HMAC-SHA1(secret, username)). Several secrets may be listed so an
//     operator can rotate: any listed secret is accepted, the first one mints.
//     Expiry is checked on every authenticated request, refreshes included.
//   - No open relay: every CreatePermission and ChannelBind goes through a
//     peer-address policy that denies loopback, private, link-local,
//     multicast, reserved and unspecified addresses (IPv4-mapped IPv6 forms
//     included) and the server's own addresses, unless the operator allows
//     them.
//   - Quotas on allocations per user and in total, and on permissions per
//     allocation. Pion answers 486 (Allocation Quota Reached) when one is hit.
//   - Prometheus metrics: allocations, authentication failures, policy
//     denials, quota refusals, and bytes and packets relayed.
//
// The caller owns listening, as with pion's ServerConfig and tailscale's
// derp server: Listen opens the usual sockets (UDP with SO_REUSEPORT and
// TCP on one port, TLS on another), or the caller opens its own, and New
// takes them with a Config and starts serving at once:
//
//	ls, err := turn.Listen(ctx, turn.ListenConfig{Addr: "0.0.0.0:3478"})
//	srv, err := turn.New(turn.Config{Secrets: secrets}, ls)
//	defer srv.Close() // closes ls too
//
// ICEServers mints fresh credentials in the browser's RTCIceServer shape;
// ICEConfig does the same for a signaling server that does not run the TURN
// server itself.
package turn

// khadga JavaScript SDK (an ES module, no build step).
//
//   import { Session, Khadga } from '/sdk/khadga.js';
//   const session = await Session.login('alice', 'correct horse battery');
//   const k = new Khadga({ session });
//   k.on('message', ({ from, text }) => console.log(from.user, text));
//   await k.connect();
//   await k.join('lobby');
//   k.send('lobby', 'hello');
//
// The server (signaling) only relays the WebRTC handshake: chat travels on
// RTCDataChannels and media on RTP, peer to peer. See docs/sdk.md for the API.

import { Session, ApiError, api, register, resendVerification, requestPasswordReset, resetPassword } from './auth.js';
import { Peer, polite, maxMessageText } from './peer.js';
import { Transfer, validFileName, defaultMaxFileSize, defaultFileStallTimeout } from './files.js';
import { SHA256 } from './sha256.js';

export { Session, ApiError, api, register, resendVerification, requestPasswordReset, resetPassword, polite, maxMessageText, Transfer, SHA256, validFileName };

/** Subprotocol is the WebSocket subprotocol of protocol version 1. */
export const Subprotocol = 'khadga.v1';

// Limits on what this page accepts from the server.
const maxServerMessage = 1 << 20;
// maxClientMessage is the server's limit on one message from us
// (proto.MaxMessageSize): it answers a larger one too_large and closes the
// socket (1009). A signal that large (an offer with a remote's worth of
// m-lines) is not sent: sent, it would close the socket again after each
// resume, which sends an unanswered offer again.
const maxClientMessage = 64 * 1024;
const maxPeers = 256;
const requestTimeout = 15000;
// A ping every pingInterval; no answer within pongTimeout means a dead socket.
const pingInterval = 20000;
const pongTimeout = 10000;
// probeTimeout is how long the socket has to answer when a peer connection
// dropped (probe).
const probeTimeout = 1500;
const backoffMin = 250;
const backoffMax = 15000;

/**
 * Khadga is one signed-in session on the signaling server, plus one peer
 * connection for every member of the rooms it is in. Events (use on(), or
 * addEventListener and read event.detail):
 *
 *   welcome        {peer, user, role, resumed, ...}   each (re)connection
 *   presence       {kind, peers, online}              online is the whole list after the change
 *   peer-joined    {room, peer, existing}              peer is {peer, user, role}; existing: already there when we joined
 *   peer-left      {room, peer}
 *   peer-connected {peer}                               chat channel open
 *   peer-state     {peer, state}                       RTCPeerConnection.connectionState
 *   peer-interrupted {peer, network}                    a connection that was up dropped (the network changed or broke); ICE restarts. network: the browser said its network changed, and the restart began at once
 *   peer-failed    {peer, stalled}                      ICE or the connection failed (a restart follows), or stalled: no path within connectGrace (20 s)
 *   peer-reconnected {peer}                             connected again after peer-interrupted
 *   message        {room, from, text, time, transport} transport is 'datachannel'
 *   file-offer     {peer, room, transfer}             a peer offers a file: transfer.accept() or .reject(reason)
 *   track          {peer, track, stream}
 *   track-removed  {peer, track, stream}
 *   disconnected   {code, reason, retryIn}             socket lost, reconnecting
 *   reconnected    {resumed, peer}
 *   room-lost      {room, code, message}               after a new session, the server refused to let us back in (code: invite_required, room_full, ...)
 *   error          {code, message, ref}                 an error message from the server
 *   warning        {message, peer?}
 *   closed         {}                                  close() was called, or sign-in failed for good
 */
export class Khadga extends EventTarget {
  /**
   * @param {object} opts
   * @param {Session} [opts.session] signs in each (re)connection with a fresh ticket
   * @param {string} [opts.token] an access token (a ticket is minted from it)
   * @param {string|(() => Promise<string>)} [opts.ticket] a ticket, or a function that mints one per connection
   * @param {string} [opts.server] base URL; '' (default) is this page's origin
   * @param {boolean} [opts.relayOnly] iceTransportPolicy 'relay': media only through TURN
   * @param {boolean} [opts.presence] false asks the server not to send the online list
   * @param {boolean} [opts.shareWithRecorder] send media to recorder peers (default false)
   * @param {number} [opts.maxFileSize] largest file accepted from a peer, in bytes (default 1 GiB: it is held in memory)
   * @param {number} [opts.fileStallTimeout] ms an accepted incoming file may go without data from its sender before it fails (default 2 minutes, as the Go client)
   */
  constructor(opts = {}) {
    super();
    const stall = opts.fileStallTimeout;
    // setTimeout takes at most 2^31-1 ms (24.8 days), and fires at once past it.
    if (stall !== undefined && !(Number.isFinite(stall) && stall > 0 && stall <= 0x7fffffff)) {
      throw new RangeError(`khadga: fileStallTimeout must be a number of milliseconds from 1 to 2147483647, not ${String(stall).slice(0, 32)}`);
    }
    this.opts = { presence: true, ...opts };
    if (!opts.session && opts.token) this.opts.session = Session.fromAccessToken(opts.token, { server: opts.server });
    this.server = opts.server || '';
    this.self = null; // {peer, user, role}
    this.resumeToken = '';
    this.resumeInProtocol = false;
    this.resumeWindow = 0;
    this.iceServers = [];
    this.rooms = new Set();
    this.rejoining = new Set(); // rooms to join again after a new session (rejoin)
    this.invites = new Map(); // room -> the invite it was joined with, to join again
    this.peers = new Map(); // peer id -> Peer
    this.online = new Map(); // peer id -> member
    this.local = new Map(); // MediaStreamTrack -> MediaStream
    this.shareWithRecorder = !!opts.shareWithRecorder;
    this.pending = new Map(); // request id -> {resolve, reject, timer}
    this.reqID = 0;
    this.ws = null;
    this.closedByUser = false;
    this.attempt = 0;
    this.connected = false;
  }

  /** on subscribes fn(detail) to an event and returns a function that unsubscribes. */
  on(type, fn) {
    const h = (e) => fn(e.detail);
    this.addEventListener(type, h);
    return () => this.removeEventListener(type, h);
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  /** connect opens the signaling socket and resolves with the welcome. */
  async connect() {
    this.closedByUser = false;
    this.watchNetwork(true);
    this.watchUnload(true);
    return this.open('');
  }

  // watchUnload ends the session when the page goes away (closed,
  // reloaded, navigated elsewhere). Such a page cannot resume: its resume
  // token goes with it. The browser closes the socket with 1001, which
  // the server takes for a dropped connection, so the session would wait
  // the resume window (30 s): online and in its rooms for everyone, and
  // beside the new session of a reloaded page, which would even try to
  // call it. Closing with 1000 first tells the server the session has
  // left. Its peer connections close too: the others see it leave, and
  // a browser keeps a page with open ones out of its back-forward cache
  // (Chromium: "WebRTC"). A page that comes back from that cache
  // reconnects as after any drop, with a new session, joins its rooms
  // again and calls their members anew.
  watchUnload(on) {
    if (!this.onPageHide) {
      this.onPageHide = () => {
        if (this.ws) this.ws.close(1000, 'page closed');
        for (const p of [...this.peers.values()]) this.dropPeer(p);
      };
    }
    globalThis[on ? 'addEventListener' : 'removeEventListener']?.('pagehide', this.onPageHide);
  }

  // watchNetwork follows the browser's word that the network changed
  // (Wi-Fi to a phone's hotspot): the browser knows within milliseconds,
  // while ICE calls a path gone only when its checks have failed for
  // seconds (5-8 s in Chromium), and the signaling socket, bound to the old
  // address, dies silently. On the word, networkChanged checks the socket
  // and restarts ICE with every peer at once.
  // A connection 'change' counts only when its type changes: Chrome fires
  // it for new estimates of bandwidth and round trip too.
  watchNetwork(on) {
    const conn = globalThis.navigator?.connection;
    if (!this.onOnline) {
      this.onOnline = () => this.networkChanged();
      this.onConnChange = () => {
        if (conn.type === this.netType) return;
        this.netType = conn.type;
        this.networkChanged();
      };
    }
    this.netType = conn?.type;
    const op = on ? 'addEventListener' : 'removeEventListener';
    globalThis[op]?.('online', this.onOnline);
    conn?.[op]?.('change', this.onConnChange);
  }

  networkChanged() {
    // Offline, a restart would gather no candidates: wait for 'online'.
    if (this.closedByUser || globalThis.navigator?.onLine === false) return;
    this.probe(); // a dead socket is given up after probeTimeout, and resumed
    for (const p of this.peers.values()) p.networkChanged();
  }

  async ticket() {
    const t = this.opts.ticket;
    if (typeof t === 'function') return t();
    if (typeof t === 'string' && t) { this.opts.ticket = ''; return t; } // single use
    if (this.opts.session) return this.opts.session.ticket();
    throw new Error('khadga: need a session, a token or a ticket function to connect');
  }

  // wsURL is the socket's URL, and protocols what goes in its
  // Sec-WebSocket-Protocol: the version, then the ticket and the resume
  // token, kept out of the URL, which proxies write to their logs. The
  // resume token goes there only if the welcome that gave it said the
  // server reads it there (a server from before takes it in the query),
  // and a credential that could not be a protocol entry goes in the query.
  wsURL(ticket, resume) {
    const base = this.server ? new URL(this.server) : new URL(location.href);
    const u = new URL('/ws', base);
    u.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
    const protocols = [Subprotocol];
    for (const [name, value, header] of [['ticket', ticket, true], ['resume', resume, this.resumeInProtocol]]) {
      if (!value) continue;
      if (header && /^[A-Za-z0-9._~-]+$/.test(value)) protocols.push(`khadga.${name}.${value}`);
      else u.searchParams.set(name, value);
    }
    if (!this.opts.presence) u.searchParams.set('presence', '0');
    return { url: u.toString(), protocols };
  }

  // open dials once and resolves with the welcome, or rejects when the
  // socket closes first.
  async open(resume) {
    const ticket = await this.ticket();
    return new Promise((resolve, reject) => {
      const { url, protocols } = this.wsURL(ticket, resume);
      const ws = new WebSocket(url, protocols);
      this.ws = ws;
      let welcomed = false;
      ws.onmessage = (e) => {
        if (typeof e.data !== 'string' || e.data.length > maxServerMessage) return;
        let m;
        try { m = JSON.parse(e.data); } catch { return; }
        if (!welcomed) {
          if (m.type !== 'welcome') return;
          welcomed = true;
          this.onWelcome(m.data || {}, resume);
          resolve(m.data);
          return;
        }
        this.dispatch(m);
      };
      ws.onclose = (e) => {
        if (this.ws !== ws) return;
        this.ws = null;
        this.connected = false;
        clearInterval(this.pinger);
        this.failPending(new Error('signaling connection closed'));
        // A browser shows no status for a refused upgrade: say what to check.
        if (!welcomed) {
          reject(new Error(`the live connection to the server (WebSocket) did not open (close code ${e.code}): ` +
            'the server refused it, or a proxy in between does not pass WebSockets'));
        }
        else this.onDrop(e);
      };
      ws.abandon = (code, reason) => { ws.onclose({ code, reason }); ws.close(code, reason); };
    });
  }

  onWelcome(w, resumedWith) {
    const oldPeer = this.self && this.self.peer;
    this.self = { peer: w.peer, user: w.user, role: w.role };
    this.resumeToken = w.resume_token || '';
    this.resumeInProtocol = !!w.protocol_credentials;
    this.resumeWindow = w.resume_window || 0;
    this.iceServers = Array.isArray(w.ice_servers) ? w.ice_servers : [];
    this.iceServersExpire = w.ice_servers_expire || 0;
    this.connected = true;
    this.attempt = 0;
    this.startPinger();
    const resumed = !!(resumedWith && w.resumed && w.peer === oldPeer);
    this.emit('welcome', { ...w });
    if (!resumedWith) return;
    if (resumed) {
      // Same session: peer connections stay; they take the fresh TURN credentials.
      for (const p of this.peers.values()) p.setICEServers(this.iceServers);
      // A room left while the socket was down (or whose join failed with
      // the socket) is still the session's on the server: leave it now,
      // or its members would go on seeing this session there, and calling it.
      for (const r of Array.isArray(w.rooms) ? w.rooms : []) {
        if (!this.rooms.has(r) && !this.rejoining.has(r)) this.request({ type: 'leave', room: r }).catch(() => {});
      }
    } else {
      // A new session has a new peer id: rebuild everything and rejoin.
      for (const p of this.peers.values()) this.dropPeer(p);
      const rooms = [...this.rooms];
      this.rooms.clear();
      for (const r of rooms) { this.rejoining.add(r); this.rejoin(r); }
    }
    this.emit('reconnected', { resumed, peer: w.peer });
  }

  startPinger() {
    clearInterval(this.pinger);
    this.pinger = setInterval(() => this.ping(pongTimeout), pingInterval);
  }

  // ping gives up on a socket that does not answer within timeout. A dead
  // socket may not say so for minutes, even after close() (the closing
  // handshake waits for the server too), so the SDK stops using it at
  // once and reconnects.
  ping(timeout) {
    const ws = this.ws;
    if (!ws || !this.connected) return;
    this.request({ type: 'ping' }, timeout).catch(() => {
      if (this.ws === ws) ws.abandon(4000, 'no pong');
    });
  }

  // probe checks the signaling connection now: a peer connection dropped,
  // the network may have changed, and ICE restart offers and answers need
  // a live socket. Probes while one is out are folded into it.
  probe() {
    if (this.probing) return;
    this.probing = true;
    setTimeout(() => { this.probing = false; }, probeTimeout);
    this.ping(probeTimeout);
  }

  // onDrop reconnects with backoff and resumes the session.
  onDrop(e) {
    if (this.closedByUser) return;
    const wait = this.reconnectAfter || Math.min(backoffMax, backoffMin * 2 ** this.attempt) * (0.75 + Math.random() / 2);
    this.reconnectAfter = 0;
    this.attempt++;
    this.emit('disconnected', { code: e.code, reason: e.reason, retryIn: Math.round(wait) });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.retry(), wait);
  }

  async retry() {
    if (this.closedByUser) return;
    try {
      await this.open(this.resumeToken);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.emit('warning', { message: 'signed out: ' + e.message });
        this.close();
        return;
      }
      this.onDrop({ code: 0, reason: e.message });
    }
  }

  /** dropSocket closes the socket as a network failure would; the SDK resumes. For tests and diagnosis. */
  dropSocket() { if (this.ws) this.ws.close(4001, 'dropped by page'); }

  write(m) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    const s = JSON.stringify(m);
    const size = s.length * 3 > maxClientMessage ? new TextEncoder().encode(s).length : s.length;
    if (size > maxClientMessage) {
      const p = m.to && this.peers.get(m.to);
      this.emit('warning', { peer: p ? p.member : undefined, message: `not sending a ${m.type} of ${size} bytes: over the server's limit of ${maxClientMessage}` });
      return false;
    }
    this.ws.send(s);
    return true;
  }

  // request sends m with a fresh id and resolves with the answer (joined,
  // ack or pong) or rejects with its error.
  request(m, timeout = requestTimeout) {
    const id = 'r' + ++this.reqID;
    return new Promise((resolve, reject) => {
      if (!this.write({ ...m, id })) { reject(new Error('not connected')); return; }
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(`${m.type}: no answer`)); }, timeout);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  resolve(ref, fn) {
    const p = this.pending.get(ref);
    if (!p) return false;
    this.pending.delete(ref);
    clearTimeout(p.timer);
    fn(p);
    return true;
  }

  failPending(err) {
    for (const [id, p] of this.pending) { clearTimeout(p.timer); p.reject(err); this.pending.delete(id); }
  }

  dispatch(m) {
    const d = m.data || {};
    switch (m.type) {
      case 'joined': this.resolve(m.ref, (p) => p.resolve(m)); break;
      case 'ack': case 'pong': this.resolve(m.ref, (p) => p.resolve(m)); break;
      case 'error': {
        const err = Object.assign(new Error(d.message || d.code), { code: d.code, ref: m.ref });
        if (!this.resolve(m.ref, (p) => p.reject(err))) this.emit('error', { code: d.code, message: d.message, ref: m.ref });
        break;
      }
      case 'peer-joined': this.memberJoined(m.room, d); break;
      case 'peer-left': this.memberLeft(m.room, d.peer); break;
      case 'signal': this.onSignal(m); break;
      case 'presence': this.onPresence(d); break;
      case 'reconnect':
        this.reconnectAfter = Math.min(Math.max(Number(d.after) || 0, 0), 30000);
        break; // the server closes next; onDrop reconnects after the hint
      default: break; // newer server: ignore what we do not know
    }
  }

  onPresence(d) {
    const peers = Array.isArray(d.peers) ? d.peers : [];
    if (d.kind === 'full') this.online.clear();
    for (const p of peers) {
      if (d.kind === 'offline') this.online.delete(p.peer);
      else if (this.online.size < 10000) this.online.set(p.peer, p);
    }
    // The server counts everyone online (global scope), listed or not;
    // without its count (rooms scope) the list is everyone.
    if (Number.isInteger(d.count) && d.count > 0) this.onlineCount = d.count;
    else if (d.kind === 'full') this.onlineCount = 0;
    const count = Math.max(this.onlineCount || 0, this.online.size);
    this.emit('presence', { kind: d.kind, peers, online: [...this.online.values()], truncated: !!d.truncated, count });
  }

  /**
   * join enters a room and resolves with the members already there.
   * opts.invite is the invite token of a room whose owner requires one (the
   * SDK keeps it, to join again after a reconnection with a new session).
   * Without the right one the join rejects with an Error whose code is
   * 'invite_required' or 'bad_invite'; a full room gives 'room_full'.
   */
  async join(room, opts = {}) {
    const invite = opts.invite || '';
    const m = await this.request(invite ? { type: 'join', room, data: { invite } } : { type: 'join', room });
    this.rooms.add(room);
    if (invite) this.invites.set(room, invite);
    const members = (m.data && m.data.peers) || [];
    for (const p of members) this.memberJoined(room, p, true);
    return members;
  }

  // rejoin joins room again after a reconnect that lost the session. A
  // refusal that asking again will not change (the room now wants an
  // invite, or is full) ends the room: 'room-lost'. Anything else (no
  // answer, the socket dropping again, rate_limited) is tried again after
  // a pause from 1 s doubling to 30 s, until it takes, the room is left,
  // or the client closes. A join of a room the session is in already is
  // answered as a join, so a retry after a lost answer does no harm.
  async rejoin(room, pause = 1000) {
    if (this.closedByUser || !this.rejoining.has(room)) return;
    try {
      await this.join(room, { invite: this.invites.get(room) });
      this.rejoining.delete(room);
    } catch (e) {
      if (this.closedByUser || !this.rejoining.has(room)) return;
      if (e.code && e.code !== 'rate_limited' && e.code !== 'internal') {
        this.rejoining.delete(room);
        this.invites.delete(room);
        this.emit('room-lost', { room, code: e.code, message: e.message });
        return;
      }
      this.emit('warning', { message: `rejoin ${room}: ${e.message}; trying again` });
      setTimeout(() => this.rejoin(room, Math.min(2 * pause, 30000)), pause);
    }
  }

  /** leave leaves a room; peer connections shared only through it close. */
  async leave(room) {
    this.rejoining.delete(room);
    this.rooms.delete(room);
    this.invites.delete(room);
    for (const p of [...this.peers.values()]) {
      if (p.rooms.delete(room) && p.rooms.size === 0) this.dropPeer(p);
    }
    try {
      await this.request({ type: 'leave', room });
    } catch (e) {
      // The socket is down (or went down under the request): the resume
      // leaves the room (onWelcome), and a new session is in no room.
      if (e.code) throw e;
    }
  }

  memberJoined(room, member, existing = false) {
    // Not for a room left meanwhile (its leave still on the way): the
    // member would get a peer connection, and the camera.
    if (!member || !member.peer || !this.self || member.peer === this.self.peer || !this.rooms.has(room)) return;
    let p = this.peers.get(member.peer);
    if (!p) p = this.newPeer(member);
    if (!p) return;
    if (member.user) {
      p.member = { ...member };
      this.shareMedia(p); // its role may have been unknown until now
    }
    if (!p.rooms.has(room)) {
      p.rooms.add(room);
      if (p.consent) p.sendConsent([room]);
      this.emit('peer-joined', { room, peer: p.member, existing });
    }
  }

  memberLeft(room, id) {
    const p = this.peers.get(id);
    if (!p || !p.rooms.has(room)) return;
    p.rooms.delete(room);
    this.emit('peer-left', { room, peer: p.member });
    if (p.rooms.size === 0) this.dropPeer(p);
  }

  newPeer(member) {
    if (this.peers.size >= maxPeers) {
      this.emit('warning', { message: 'too many peers; ignoring ' + member.peer });
      return null;
    }
    const config = { iceServers: this.iceServers };
    if (this.opts.relayOnly) config.iceTransportPolicy = 'relay';
    const p = new Peer({
      self: this.self.peer, member, config, maxFileSize: this.opts.maxFileSize || defaultMaxFileSize,
      fileStallTimeout: this.opts.fileStallTimeout || defaultFileStallTimeout,
      signal: (data) => this.write({ type: 'signal', to: member.peer, room: [...p.rooms][0] || undefined, data }),
      emit: (type, detail) => this.emit(type, detail),
      probe: () => this.probe(),
    });
    this.peers.set(member.peer, p);
    this.shareMedia(p);
    return p;
  }

  /**
   * shareMedia gives p the local tracks, or takes them back, by its role:
   * a recorder gets them only while the user shares with recorders. A peer
   * whose role is not known yet (its signal overtook its peer-joined) may
   * be a recorder, so it gets none until peer-joined says.
   */
  shareMedia(p) {
    const roleKnown = !!p.member.user;
    const send = roleKnown && (!p.isRecorder || this.shareWithRecorder);
    if (p.isRecorder && this.shareWithRecorder) p.setConsent(true);
    for (const [track, stream] of this.local) send ? p.addTrack(track, stream) : p.removeTrack(track);
  }

  dropPeer(p) {
    this.peers.delete(p.id);
    p.close();
    this.emit('peer-closed', { peer: p.member });
  }

  onSignal(m) {
    const d = m.data;
    if (!m.from || !d || typeof d !== 'object') return;
    let p = this.peers.get(m.from);
    if (!p) {
      // A signal can overtake the peer-joined that announces its sender.
      if (!m.room || !this.rooms.has(m.room)) return;
      this.memberJoined(m.room, { peer: m.from, user: '', role: '' });
      p = this.peers.get(m.from);
      if (!p) return;
    }
    p.handleSignal(d);
  }

  /**
   * send sends a chat message to every connected member of room, peer to
   * peer over the "chat" data channel, and returns how many got it.
   */
  send(room, text) {
    text = String(text);
    if (new TextEncoder().encode(text).length > maxMessageText) throw new RangeError(`message over ${maxMessageText} bytes`);
    let n = 0;
    for (const p of this.peers.values()) {
      if (p.rooms.has(room) && p.sendChat(room, this.self.user, text)) n++;
    }
    return n;
  }

  /**
   * sendFile offers file (a File, or a Blob and a name) to the member with
   * peer id peerID, in room (default: the first room shared with it), and
   * sends it peer to peer once accepted. It returns a Transfer: listen to
   * its 'progress' and 'end' events, or await transfer.finished; its state
   * is 'done' only when the receiver verified size and SHA-256.
   */
  sendFile(peerID, file, { room, name } = {}) {
    const p = this.peers.get(peerID);
    if (!p) throw new Error(`no peer ${peerID}`);
    const r = room || [...p.rooms][0];
    if (!r || !p.rooms.has(r)) throw new Error(`peer ${peerID} is not in room ${room}`);
    return p.sendFile(r, file, name);
  }

  /** addTrack sends track (in stream) to every peer, recorders only after setShareWithRecorder(true). */
  addTrack(track, stream) {
    stream = stream || new MediaStream([track]);
    this.local.set(track, stream);
    for (const p of this.peers.values()) {
      if (p.member.user && (!p.isRecorder || this.shareWithRecorder)) p.addTrack(track, stream);
    }
  }

  /** removeTrack stops sending track to every peer (it does not stop the track). */
  removeTrack(track) {
    this.local.delete(track);
    for (const p of this.peers.values()) p.removeTrack(track);
  }

  /**
   * setShareWithRecorder switches sending media to recorder-role peers on
   * or off, and tells them that the user consents to being recorded, or
   * no longer does (they record only while the user consents).
   */
  setShareWithRecorder(on) {
    this.shareWithRecorder = !!on;
    for (const p of this.peers.values()) {
      if (!p.isRecorder) continue;
      p.setConsent(this.shareWithRecorder); // first, so the recorder knows when consent came
      for (const [track, stream] of this.local) on ? p.addTrack(track, stream) : p.removeTrack(track);
    }
  }

  /** members lists the members of room (not this session). */
  members(room) {
    return [...this.peers.values()].filter((p) => p.rooms.has(room)).map((p) => p.member);
  }

  /** connectionKind resolves to 'direct', 'relayed' or '' for a peer id. */
  connectionKind(peerID) {
    const p = this.peers.get(peerID);
    return p ? p.connectionKind() : Promise.resolve('');
  }

  /** close leaves the server and closes every peer connection. */
  close() {
    if (this.closedByUser) return;
    this.closedByUser = true;
    this.watchNetwork(false);
    this.watchUnload(false);
    clearTimeout(this.retryTimer);
    clearInterval(this.pinger);
    for (const p of [...this.peers.values()]) this.dropPeer(p);
    this.rooms.clear();
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(1000, 'bye'); }
    this.connected = false;
    this.emit('closed', {});
  }
}

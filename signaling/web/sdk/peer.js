// One remote peer: one RTCPeerConnection negotiated with the W3C "perfect
// negotiation" pattern, and the negotiated "chat" data channel (id 0) that
// the Go client (package client) opens on its side too. The peer whose id
// sorts first is polite (proto.Polite), so both sides agree without talking.
// Files travel on channels of their own (files.js).

import { fileLabel, maxIncomingPerPeer, defaultMaxFileSize, defaultFileStallTimeout, receiveFile, sendFile } from './files.js';

/** polite reports whether self is the polite side with other (as proto.Polite). */
export function polite(self, other) { return self < other; }

// Limits that protect a page from a misbehaving remote.
export const maxMessageText = 16 * 1024;
// JSON may spell one byte of text in six (\u001b; Go's encoder writes '<'
// as \u003c): a message within maxMessageText must arrive whatever it holds.
const maxChatFrame = 6 * maxMessageText + 1024;
// Chat from one peer: chatBurst messages, then chatPerSecond. Each message
// costs the receiving page (laid out, and kept by the app): one member
// sending without end froze every other member's page (3,000 messages in
// 7.5 s left a tab unresponsive for over 45 s). People type far slower.
export const chatBurst = 20;
export const chatPerSecond = 5;
// chatDropNotice spaces the 'chat-dropped' events of one peer.
const chatDropNotice = 10000;
const maxPendingCandidates = 128;
// maxRemoteCandidates bounds the candidates taken from a remote for one set
// of its ICE credentials (a browser sends a few dozen): each is kept, paired
// and checked, with STUN sent wherever it points.
const maxRemoteCandidates = 256;
// maxRequestedTransceivers bounds what one renegotiation request may ask
// for, and what requests together may make of each kind: a remote can send
// requests without end, and each transceiver is an m-line of every offer
// (Chrome's video one is about 4 KB): 16 video m-lines make an offer over
// the server's 64 KiB message limit.
const maxRequestedTransceivers = 8;
// restartMinInterval spaces automatic ICE restarts; disconnectedGrace is how
// long ICE may stay disconnected before the impolite side restarts it. The
// browser's ICE already waited a few seconds without answers before saying
// disconnected, so a short grace keeps a call that lost its path (a
// network change) within 10 s of coming back, as the Go client does.
// politeGrace is the polite side's, a little longer, so that the impolite
// side's restart offer usually comes first (see onICEState).
const restartMinInterval = 3000;
// networkGrace is how long a restart after a network change has to pick a
// new pair before a connection that stayed up is taken to be back.
const networkGrace = 8000;
const disconnectedGrace = 1000;
const politeGrace = 1500;
// firstOfferGrace is how long the polite side waits for the first offer.
const firstOfferGrace = 5000;
// connectGrace is how long a new connection may take before the page is
// told that no path works yet ('peer-failed' with stalled set). ICE alone
// may never say 'failed': while a TURN server's TCP port drops the
// connection attempts, gathering does not end, and ICE keeps checking.
export const connectGrace = 20000;

/** sdpOrigin is the o= line of an SDP body, '' if none. */
function sdpOrigin(sdp) {
  const m = /^o=.*$/m.exec(sdp || '');
  return m ? m[0].trim() : '';
}

export class Peer {
  /**
   * @param {object} o
   * @param {string} o.self our peer id
   * @param {{peer:string,user:string,role:string}} o.member the remote
   * @param {RTCConfiguration} o.config
   * @param {(signal: object) => void} o.signal sends a signal to the remote
   * @param {(type: string, detail: object) => void} o.emit
   * @param {number} [o.maxFileSize] largest file accepted from this peer
   * @param {number} [o.fileStallTimeout] ms an accepted file from this peer may go without data before it fails
   * @param {() => void} [o.probe] checks the signaling connection now
   */
  constructor(o) {
    this.id = o.member.peer;
    this.member = { ...o.member };
    this.rooms = new Set();
    this.polite = polite(o.self, this.id);
    this.signal = o.signal;
    this.emit = o.emit;
    this.probe = o.probe || (() => {});
    this.interrupted = false; // a connection that was up went down
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.pending = [];
    this.candUfrag = ''; // the remote ICE ufrag candCount counts for
    this.candCount = 0;
    this.queue = Promise.resolve();
    this.lastRestart = 0;
    this.senders = new Map(); // MediaStreamTrack -> RTCRtpSender
    this.closed = false;
    this.everConnected = false;
    this.stalled = false; // no path found within connectGrace
    this.watchdog = setTimeout(() => this.checkStalled(), connectGrace);
    this.incomingFiles = 0;
    this.chatTokens = chatBurst;
    this.chatAt = Date.now();
    this.chatDropped = 0; // since the last 'chat-dropped'
    this.chatNoticeAt = 0;
    this.maxFileSize = o.maxFileSize || defaultMaxFileSize;
    this.fileStallTimeout = o.fileStallTimeout || defaultFileStallTimeout;
    this.pc = new RTCPeerConnection(o.config);
    this.chat = this.pc.createDataChannel('chat', { negotiated: true, id: 0 });
    this.wire();
  }

  get isRecorder() { return this.member.role === 'recorder'; }

  wire() {
    const pc = this.pc;
    pc.onnegotiationneeded = () => this.negotiate();
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.signal({ candidate: candidate.toJSON() });
    };
    pc.oniceconnectionstatechange = () => this.onICEState();
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      if (state === 'connected') {
        this.connectedAt = Date.now();
        const reconnected = this.everConnected && this.interrupted;
        this.everConnected = true;
        this.interrupted = false;
        this.failing = false;
        if (reconnected) this.emit('peer-reconnected', { peer: this.member });
      }
      if ((state === 'disconnected' || state === 'failed') && this.everConnected && !this.interrupted && !this.closed) {
        this.interrupted = true;
        this.emit('peer-interrupted', { peer: this.member });
      }
      if (state === 'failed') this.failed();
      this.emit('peer-state', { peer: this.member, state });
    };
    pc.ontrack = ({ track, streams }) => {
      const stream = streams[0] || new MediaStream([track]);
      stream.onremovetrack = (e) => this.emit('track-removed', { peer: this.member, track: e.track, stream });
      this.emit('track', { peer: this.member, track, stream });
    };
    // Besides the negotiated chat channel, a peer opens one "file" channel
    // per file it sends; anything else is closed.
    pc.ondatachannel = ({ channel }) => (channel.label === fileLabel ? this.onFileChannel(channel) : channel.close());
    this.chat.onopen = () => {
      this.stalled = false;
      clearTimeout(this.watchdog);
      if (this.consent) this.sendConsent([...this.rooms]);
      this.emit('peer-connected', { peer: this.member });
    };
    this.chat.onclose = () => this.emit('peer-disconnected', { peer: this.member });
    this.chat.onmessage = (e) => this.onChat(e.data);
  }

  // negotiate is the sending half of perfect negotiation: an implicit offer
  // (setLocalDescription with no argument) sent to the remote.
  //
  // The polite side leaves the first offer to the impolite one (both create
  // the chat channel at once, so both want to negotiate). Perfect
  // negotiation would resolve that collision, but Chrome can stall ICE
  // gathering on a transport created by an offer and then rolled back, so
  // the first exchange avoids the rollback. A timer covers a remote that
  // never offers.
  async negotiate() {
    if (this.closed) return;
    if (this.polite && !this.pc.remoteDescription) {
      if (!this.deferred) {
        this.deferred = true;
        setTimeout(() => { if (this.deferred && !this.pc.remoteDescription) { this.deferred = false; this.forced = true; this.negotiate(); } }, firstOfferGrace);
      }
      if (!this.forced) return;
    }
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      this.signal({ description: this.pc.localDescription.toJSON() });
    } catch (e) {
      this.emit('warning', { peer: this.member, message: 'offer failed: ' + e.message });
    } finally {
      this.makingOffer = false;
    }
  }

  /** handleSignal takes a signal's data; signals are handled one at a time, in order. */
  handleSignal(data) {
    this.queue = this.queue.then(() => this.onSignal(data)).catch((e) => {
      this.emit('warning', { peer: this.member, message: 'signal failed: ' + e.message });
    });
    return this.queue;
  }

  async onSignal({ description, candidate, renegotiate }) {
    if (this.closed) return;
    const pc = this.pc;
    if (globalThis.khadgaDebug) {
      console.debug('khadga signal from', this.member.user, description ? description.type : 'candidate',
        candidate ? candidate.candidate : '', 'state', pc.signalingState, 'makingOffer', this.makingOffer, 'ignoreOffer', this.ignoreOffer);
    }
    if (renegotiate && typeof renegotiate === 'object') {
      this.onRenegotiate(renegotiate);
    } else if (description) {
      if (description.type !== 'offer' && description.type !== 'answer') return;
      if (this.duplicate(description)) return;
      const collision = description.type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable');
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      if (description.type === 'answer' && pc.signalingState !== 'have-local-offer') return; // answer to a rolled-back offer
      await pc.setRemoteDescription(description); // rolls back our offer implicitly when polite
      for (const c of this.pending.splice(0)) if (this.countCandidate()) await pc.addIceCandidate(c).catch(() => {});
      if (description.type === 'offer') {
        await pc.setLocalDescription();
        this.signal({ description: pc.localDescription.toJSON() });
        if (this.deferred) {
          // Tracks added before the first offer still need their own round.
          this.deferred = false;
          if (this.senders.size > 0) this.negotiate();
        }
      }
    } else if (candidate) {
      if (!candidate.candidate) return; // end of candidates
      if (!pc.remoteDescription) {
        // Kept even while ignoring an offer: a peer that rolls back reuses
        // its ICE credentials (pion does), and a candidate for credentials
        // that did not survive fails harmlessly when it is added.
        if (this.pending.length < maxPendingCandidates) this.pending.push(candidate);
        return;
      }
      if (!this.countCandidate()) return;
      try {
        await pc.addIceCandidate(candidate);
      } catch (e) {
        if (!this.ignoreOffer) throw e;
      }
    }
  }

  /** countCandidate counts a remote candidate for the remote's current ICE ufrag; false past the limit. */
  countCandidate() {
    const m = /^a=ice-ufrag:(.*)$/m.exec((this.pc.remoteDescription && this.pc.remoteDescription.sdp) || '');
    const ufrag = m ? m[1].trim() : '';
    if (ufrag !== this.candUfrag) { this.candUfrag = ufrag; this.candCount = 0; }
    if (this.candCount >= maxRemoteCandidates) return false;
    this.candCount++;
    return true;
  }

  // onRenegotiate answers a polite Go peer (package client) that asks the
  // impolite side for an offer with room for its new tracks: pion cannot
  // roll back an offer, so the Go client never offers to a peer that
  // honours these requests. The transceivers are sendrecv, as the Go side
  // makes them.
  onRenegotiate(req) {
    if (this.polite) return;
    const n = (v) => Math.min(Math.max(Number(v) || 0, 0), maxRequestedTransceivers);
    let changed = false;
    for (const [kind, count] of [['video', n(req.video)], ['audio', n(req.audio)]]) {
      let have = this.pc.getTransceivers().filter((t) => t.receiver.track.kind === kind).length;
      for (let i = 0; i < count && have < maxRequestedTransceivers; i++, have++) {
        this.pc.addTransceiver(kind, { direction: 'sendrecv' });
        changed = true;
      }
    }
    if (req.ice_restart) { this.resendOffer(); this.pc.restartIce(); changed = true; }
    if (!changed) this.negotiate(); // nothing for negotiationneeded to notice: offer anyway
  }

  // onICEState restarts ICE when it fails or stays disconnected. The
  // impolite side restarts at once on failure and after disconnectedGrace;
  // the polite side waits politeGrace in either case and restarts only if
  // nothing came of the wait. Its restart is not redundant: the impolite
  // side's restart offer may have been lost with a signaling connection that
  // died under a network change, our own connection may have resumed
  // before ICE noticed (so the resume did not restart it), and then the
  // impolite side waits for an answer while we wait for an offer, for
  // ever. Our offer ends that: a Go peer ignores it and sends its own again
  // (which we roll back to and answer); a browser rolls back to ours or
  // has us roll back to its own, as perfect negotiation does.
  onICEState() {
    const s = this.pc.iceConnectionState;
    if (s === 'failed') this.failed();
    if ((s !== 'disconnected' && s !== 'failed') || this.closed) return;
    // A restart needs signaling, which may have died with the path (a
    // network change): have it checked now rather than at the next ping.
    this.probe();
    if (!this.polite && s === 'failed') { this.restartICE(); return; }
    // A polite side whose signaling resumed since the path last worked
    // does not wait for the impolite side's offer: it most likely went to
    // the socket that died with the network change (ICE noticed the
    // change only now, seconds after the socket did).
    const resumedSince = (this.resumedAt || 0) > (this.connectedAt || 0);
    if (this.polite && resumedSince) { this.restartICE(); return; }
    setTimeout(() => {
      const now = this.pc.iceConnectionState;
      if (now === 'disconnected' || now === 'failed') this.restartICE();
    }, this.polite ? politeGrace : disconnectedGrace);
  }

  // failed tells the page once per failure, whether ICE said so or the
  // connection as a whole did: when a TURN relay's TCP connection drops,
  // Chrome fails the connection while ICE stays 'disconnected'.
  failed() {
    if (this.failing || this.closed) return;
    this.failing = true;
    this.emit('peer-failed', { peer: this.member });
  }

  // checkStalled tells the page when the first connection has not come up
  // in connectGrace, so that it can say so instead of spinning.
  checkStalled() {
    if (this.closed || this.chat.readyState === 'open') return;
    this.stalled = true;
    this.emit('peer-failed', { peer: this.member, stalled: true });
  }

  // duplicate recognises a description applied already and sent again by a
  // remote that feared it lost (resendOffer): same o= line (session id and
  // version). A copy of the offer we answered gets that answer again; a
  // copy of the answer we applied is dropped, so that it is never taken for
  // the answer to a newer offer.
  duplicate(d) {
    const origin = sdpOrigin(d.sdp);
    const cur = this.pc.currentRemoteDescription;
    if (!origin || !cur || cur.type !== d.type || sdpOrigin(cur.sdp) !== origin) return false;
    if (d.type === 'offer') {
      if (this.pc.signalingState !== 'stable' || !this.pc.currentLocalDescription) return false;
      this.signal({ description: this.pc.currentLocalDescription.toJSON() });
    }
    return true;
  }

  // resendOffer sends our unanswered offer again, for a remote that may
  // have lost it with a signaling connection that died under a network
  // change; a remote that got it answers twice, and the second answer is
  // ignored.
  // Both sides recognise copies (duplicate), so one that crosses a quick
  // answer does no harm.
  resendOffer() {
    if (this.closed || this.pc.signalingState !== 'have-local-offer' || this.makingOffer) return;
    this.signal({ description: this.pc.localDescription.toJSON() });
  }

  // resendAnswer sends our last answer again, if we are stable after
  // answering: a remote that lost it with a signaling connection that died
  // would wait in have-local-offer for ever. A remote that had it drops the
  // copy (duplicate).
  resendAnswer() {
    const d = this.pc.currentLocalDescription;
    if (this.closed || this.pc.signalingState !== 'stable' || !d || d.type !== 'answer') return;
    this.signal({ description: d.toJSON() });
  }

  // networkChanged restarts ICE on a connection that was up, when the
  // browser says the network changed: the pair it used may be gone with
  // the old address, and ICE would take seconds to notice. A restart on a
  // path that still works costs one offer and answer; its offer, if the
  // signaling socket died meanwhile, is sent again after the resume
  // (setICEServers).
  //
  // The page is told, as when ICE itself calls the path gone: the call
  // freezes until the restart has picked a new pair, and that pick
  // (selectedcandidatepairchange) is when it is back. A browser without
  // that event restarts quietly: nothing would say when it was back.
  networkChanged() {
    if (this.closed || !this.everConnected) return;
    const ice = this.pc.sctp?.transport?.iceTransport;
    if (ice && 'onselectedcandidatepairchange' in ice && !this.interrupted) {
      if (!this.watchingPair) {
        this.watchingPair = true;
        ice.addEventListener('selectedcandidatepairchange', () => this.pairChanged());
      }
      this.interrupted = true;
      this.emit('peer-interrupted', { peer: this.member, network: true });
      // A restart that never picks a pair (its offer unanswered) on a
      // path that kept working must not leave the page saying "lost".
      clearTimeout(this.networkTimer);
      this.networkTimer = setTimeout(() => this.pairChanged(), networkGrace);
    }
    this.restartICE();
  }

  // pairChanged ends an interruption that a network change began, once the
  // restart has a new pair and the connection is up.
  pairChanged() {
    if (!this.interrupted || this.closed || this.pc.connectionState !== 'connected') return;
    clearTimeout(this.networkTimer);
    this.interrupted = false;
    this.emit('peer-reconnected', { peer: this.member });
  }

  restartICE() {
    if (this.closed) return;
    const wait = this.lastRestart + restartMinInterval - Date.now();
    if (wait > 0) {
      // One deferred restart stands for every request made meanwhile.
      if (!this.restartTimer) this.restartTimer = setTimeout(() => { this.restartTimer = 0; this.restartICE(); }, wait);
      return;
    }
    this.lastRestart = Date.now();
    this.pc.restartIce(); // fires negotiationneeded with an ICE-restart offer
  }

  /**
   * setICEServers applies fresh ICE servers (after a resume). ICE restarts
   * when the connection is down, or when it goes through a TURN relay whose
   * allocation was made with the old, soon expired, credentials.
   */
  async setICEServers(iceServers) {
    if (this.closed) return;
    const cfg = this.pc.getConfiguration();
    cfg.iceServers = iceServers;
    this.resumedAt = Date.now();
    try { this.pc.setConfiguration(cfg); } catch (e) {
      this.emit('warning', { peer: this.member, message: 'setConfiguration: ' + e.message });
      return;
    }
    // Signals sent while the old socket died may be lost: an unanswered
    // offer goes out again, and so does our last answer.
    this.resendOffer();
    this.resendAnswer();
    const s = this.pc.iceConnectionState;
    const down = s === 'failed' || s === 'disconnected';
    if (down || (await this.connectionKind()) === 'relayed') this.restartICE();
  }

  onChat(data) {
    if (typeof data !== 'string' || data.length > maxChatFrame) return;
    let m;
    try { m = JSON.parse(data); } catch { return; }
    if (!m || typeof m.text !== 'string' || m.text.length > maxMessageText) return;
    const room = typeof m.room === 'string' && this.rooms.has(m.room) ? m.room : '';
    if (!room && this.rooms.size > 0 && m.room) return; // names a room we do not share
    if (!this.takeChat()) return;
    const time = new Date(m.time);
    // The sender is the member this channel belongs to, never what the
    // message claims, so that it cannot be forged.
    this.emit('message', {
      room: room || [...this.rooms][0] || '', from: this.member, text: m.text,
      time: isNaN(time) ? new Date() : time, transport: 'datachannel', channel: this.chat.label,
    });
  }

  // takeChat takes one message from the peer's chat budget, or counts it
  // dropped and says so (at most every chatDropNotice).
  takeChat() {
    const now = Date.now();
    this.chatTokens = Math.min(chatBurst, this.chatTokens + ((now - this.chatAt) / 1000) * chatPerSecond);
    this.chatAt = now;
    if (this.chatTokens >= 1) {
      this.chatTokens--;
      return true;
    }
    this.chatDropped++;
    if (now - this.chatNoticeAt >= chatDropNotice) {
      this.chatNoticeAt = now;
      this.emit('chat-dropped', { peer: this.member, dropped: this.chatDropped });
      this.chatDropped = 0;
    }
    return false;
  }

  /**
   * setConsent tells a recorder peer that the user consents to being
   * recorded in the rooms shared with it, or no longer does: at once, or
   * when the chat channel opens. The recorder records what it gets only
   * while the user consents, and logs when consent came and went.
   */
  setConsent(granted) {
    granted = !!granted;
    if (!!this.consent === granted) return;
    this.consent = granted;
    this.sendConsent([...this.rooms]);
  }

  /** sendConsent sends the consent in force for rooms, if the channel is open. */
  sendConsent(rooms) {
    if (this.chat.readyState !== 'open') return; // onopen sends it
    for (const room of rooms) this.chat.send(JSON.stringify({ room, consent: !!this.consent, time: new Date().toISOString() }));
  }

  /** sendChat sends one chat message; false when the channel is not open. */
  sendChat(room, sender, text) {
    if (this.chat.readyState !== 'open') return false;
    this.chat.send(JSON.stringify({ room, text, sender, time: new Date().toISOString() }));
    return true;
  }

  // onFileChannel takes a file the remote sends, up to maxIncomingPerPeer at once.
  onFileChannel(channel) {
    if (this.incomingFiles >= maxIncomingPerPeer) {
      channel.onopen = () => { channel.send(JSON.stringify({ type: 'reject', message: 'too many transfers' })); channel.close(); };
      return;
    }
    this.incomingFiles++;
    channel.addEventListener('close', () => { this.incomingFiles--; });
    receiveFile(channel, {
      peer: this.member, rooms: this.rooms, maxFileSize: this.maxFileSize, stallTimeout: this.fileStallTimeout,
      offer: (transfer) => { this.emit('file-offer', { peer: this.member, room: transfer.room, transfer }); return true; },
    });
  }

  /** sendFile offers file to this peer in room; it returns the Transfer (see files.js). */
  sendFile(room, file, name) {
    if (this.closed || this.pc.connectionState !== 'connected') throw new Error(`not connected to ${this.member.user || this.id}`);
    return sendFile(this.pc, this.member, room, file, name);
  }

  addTrack(track, stream) {
    if (this.senders.has(track) || this.closed) return;
    this.senders.set(track, this.pc.addTrack(track, stream));
  }

  removeTrack(track) {
    const s = this.senders.get(track);
    if (!s) return;
    this.senders.delete(track);
    if (!this.closed && this.pc.signalingState !== 'closed') this.pc.removeTrack(s);
  }

  /**
   * connectionKind reads the selected ICE candidate pair from getStats:
   * 'relayed' (through TURN), 'direct', or '' before a pair is selected.
   */
  async connectionKind() {
    const info = await this.candidatePair();
    if (!info) return '';
    return info.local === 'relay' || info.remote === 'relay' ? 'relayed' : 'direct';
  }

  /**
   * candidatePair returns the selected pair's candidate types {local, remote}
   * and, for a local relay candidate, how it reaches the TURN server
   * (relayProtocol: udp, tcp or tls), or null.
   */
  async candidatePair() {
    if (this.closed) return null;
    const stats = await this.pc.getStats();
    let pairId = '';
    stats.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId; });
    let pair = pairId ? stats.get(pairId) : null;
    if (!pair) stats.forEach((r) => { if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r; });
    if (!pair) return null;
    const l = stats.get(pair.localCandidateId), r = stats.get(pair.remoteCandidateId);
    if (!l || !r) return null;
    return { local: l.candidateType, remote: r.candidateType, relayProtocol: l.relayProtocol || '' };
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.watchdog);
    clearTimeout(this.restartTimer);
    clearTimeout(this.networkTimer);
    this.chat.close();
    this.pc.close();
  }
}

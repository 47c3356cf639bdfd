// File transfers between peers, in the protocol of the Go client
// (client/file.go), so that a browser and khadga-peer exchange files
// either way. The sender opens a data channel labelled "file" for each
// transfer (reliable, ordered) and the two sides say, as JSON text frames:
//
//   sender   -> {"type":"offer","room":R,"name":N,"size":S}
//   receiver -> {"type":"accept"} or {"type":"reject","message":M}
//   sender   -> the bytes, in binary frames of at most 32 KiB
//   sender   -> {"type":"end","size":S,"sha256":HEX}
//   receiver -> {"type":"ok"} or {"type":"error","message":M}
//
// The receiver hashes what arrives and checks size and SHA-256 against
// "end". Either side cancels with {"type":"error","message":M} and closes
// the channel; a channel that closes before "ok" is an interrupted transfer.

import { SHA256 } from './sha256.js';

export const fileLabel = 'file';
/** fileChunk is the largest binary frame, as the Go client sends. */
export const fileChunk = 32 * 1024;
/** maxFileName is the longest file name, in UTF-8 bytes. */
export const maxFileName = 255;
/** defaultMaxFileSize bounds a received file: a page holds it in memory. */
export const defaultMaxFileSize = 1024 * 1024 * 1024;
/**
 * defaultFileStallTimeout (ms) ends an accepted incoming transfer whose
 * sender sent nothing for that long, as the Go client does: a sender waits
 * as long for our answers, and without it a room member who offers a file
 * and never sends it (or stops half-way) keeps the transfer, and the parts
 * held in memory, for ever.
 */
export const defaultFileStallTimeout = 2 * 60 * 1000;
/** maxIncomingPerPeer caps the transfers one peer may have open towards us. */
export const maxIncomingPerPeer = 8;

// The sender keeps at most highWater bytes queued in the channel and
// refills below lowWater; Chrome closes a channel whose queue passes 16 MiB.
const highWater = 4 * 1024 * 1024;
const lowWater = 1024 * 1024;
// readBlock is how much of the file is read (and hashed) at a time.
const readBlock = 1024 * 1024;
const maxControl = 4096;
// offerTimeout bounds the wait for the channel and its offer;
// answerTimeout the wait for accept and for the final ok, as in Go.
const offerTimeout = 10000;
const answerTimeout = 120000;
const okGrace = 5000;

/** validFileName returns '' for a plain file name, else why it is not one. */
export function validFileName(name) {
  const bytes = new TextEncoder().encode(name).length;
  if (typeof name !== 'string' || bytes === 0 || bytes > maxFileName || name === '.' || name === '..' || /[/\\]/.test(name)) {
    return `file name must be a plain name of 1 to ${maxFileName} bytes`;
  }
  // C0 and C1 controls reach terminals as escapes; bidi controls make
  // "exe.pdf" of "fdp.exe"; a lone surrogate is no text (as Go's check).
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufffd]/.test(name) || !name.isWellFormed()) {
    return 'file name must not contain control characters';
  }
  return '';
}

let nextID = 0;

/**
 * Transfer is one file going to ('out') or coming from ('in') a peer. It
 * is an EventTarget: 'progress' (detail {done, total}) as bytes move, and
 * 'end' (detail {state, error}) once. state is:
 *
 *   out: 'opening', 'offered' (waiting for the answer), 'sending',
 *        'verifying' (waiting for the receiver's check)
 *   in:  'offered' (call accept() or reject()), 'receiving'
 *   end: 'done' (size and SHA-256 verified), 'rejected', 'cancelled', 'failed'
 *
 * A received file is `file` (a File) once done. `finished` is a promise of
 * the transfer when it ends, whatever the outcome.
 */
export class Transfer extends EventTarget {
  constructor({ direction, name, size, peer, room, channel }) {
    super();
    this.id = 't' + ++nextID;
    this.direction = direction;
    this.name = name;
    this.size = size;
    this.peer = peer;
    this.room = room;
    this.channel = channel;
    this.state = direction === 'out' ? 'opening' : 'offered';
    this.done = 0;
    this.sha256 = '';
    this.error = '';
    this.file = null;
    this.finished = new Promise((resolve) => { this.resolveFinished = resolve; });
  }

  get ended() { return ['done', 'rejected', 'cancelled', 'failed'].includes(this.state); }

  setState(s) {
    this.state = s;
    this.dispatchEvent(new CustomEvent('state', { detail: { state: s } }));
  }

  progress(done) {
    this.done = Math.max(0, Math.min(done, this.size));
    this.dispatchEvent(new CustomEvent('progress', { detail: { done: this.done, total: this.size } }));
  }

  // end settles the transfer once and closes its channel: at once, or
  // for a receiver that just sent "ok", after the sender closed it (as it
  // does once it read "ok") or a grace period.
  end(state, error = '') {
    if (this.ended) return;
    this.state = state;
    this.error = error;
    if (state === 'done') this.progress(this.size);
    const close = () => { try { this.channel.close(); } catch { /* already closed */ } };
    if (state === 'done' && this.direction === 'in') setTimeout(close, okGrace);
    else close();
    this.dispatchEvent(new CustomEvent('end', { detail: { state, error } }));
    this.resolveFinished(this);
  }

  control(m) {
    if (this.channel.readyState !== 'open') return false;
    this.channel.send(JSON.stringify(m));
    return true;
  }

  /** cancel stops the transfer (or declines an offer) and tells the peer why. */
  cancel(reason = '') {
    if (this.ended) return;
    if (this.direction === 'in' && this.state === 'offered') { this.reject(reason || 'declined'); return; }
    const why = reason || `cancelled by the ${this.direction === 'out' ? 'sender' : 'receiver'}`;
    this.control({ type: 'error', message: why });
    this.end('cancelled', why);
  }
}

// controls turns a channel's text frames into an awaitable queue.
function controls(dc, t) {
  const queue = [];
  let waiter = null;
  dc.addEventListener('message', (e) => {
    if (typeof e.data !== 'string') return;
    let m = null;
    if (e.data.length <= maxControl) { try { m = JSON.parse(e.data); } catch { /* not JSON */ } }
    if (!m || typeof m.type !== 'string') m = { type: 'error', message: 'bad control message' };
    if (waiter) { const w = waiter; waiter = null; w(m); } else if (queue.length < 8) queue.push(m);
  });
  dc.addEventListener('close', () => { if (waiter) { const w = waiter; waiter = null; w(null); } });
  return {
    // next resolves with the next control message, or null when the
    // channel closed, the transfer ended or the time ran out.
    next(timeout) {
      if (queue.length) return Promise.resolve(queue.shift());
      if (dc.readyState === 'closed' || t.ended) return Promise.resolve(null);
      return new Promise((resolve) => {
        const timer = setTimeout(() => { waiter = null; resolve(null); }, timeout);
        waiter = (m) => { clearTimeout(timer); resolve(m); };
      });
    },
    // pending returns a message that arrived unasked (a cancel), if any.
    pending() { return queue.shift() || null; },
  };
}

function waitEvent(target, type, timeout) {
  return new Promise((resolve) => {
    const done = (ok) => { clearTimeout(timer); target.removeEventListener(type, on); target.removeEventListener('close', off); resolve(ok); };
    const on = () => done(true);
    const off = () => done(false);
    const timer = setTimeout(() => done(false), timeout);
    target.addEventListener(type, on);
    target.addEventListener('close', off);
  });
}

/**
 * sendFile offers file (a File or a Blob with a name) to the peer on pc and
 * sends it once accepted. It returns the Transfer at once.
 */
export function sendFile(pc, peer, room, file, name = file.name) {
  const bad = validFileName(name);
  if (bad) throw new RangeError(bad);
  const dc = pc.createDataChannel(fileLabel, { ordered: true });
  dc.binaryType = 'arraybuffer';
  dc.bufferedAmountLowThreshold = lowWater;
  const t = new Transfer({ direction: 'out', name, size: file.size, peer, room, channel: dc });
  // Listening before controls() does, this settles a closed transfer
  // before a wait that the close ends can report something vaguer.
  let ctl = null;
  dc.addEventListener('close', () => {
    // A receiver that cancels says why just before it closes.
    const m = ctl.pending();
    t.end('failed', m ? 'receiver says ' + String(m.message || m.type).slice(0, 200) : 'the connection closed before the receiver confirmed the file');
  });
  ctl = controls(dc, t);
  runSender(t, dc, ctl, file).catch((e) => t.end('failed', e.message || String(e)));
  return t;
}

async function runSender(t, dc, ctl, file) {
  if (dc.readyState !== 'open' && !(await waitEvent(dc, 'open', offerTimeout))) {
    t.end('failed', 'the file channel did not open');
    return;
  }
  t.control({ type: 'offer', room: t.room, name: t.name, size: t.size });
  t.setState('offered');
  const answer = await ctl.next(answerTimeout);
  if (t.ended) return;
  if (!answer) { t.end('failed', 'the receiver did not answer'); return; }
  if (answer.type !== 'accept') { t.end('rejected', String(answer.message || 'declined').slice(0, 200)); return; }
  t.setState('sending');
  const h = new SHA256();
  let handed = 0;
  for (let off = 0; off < t.size; off += readBlock) {
    const block = new Uint8Array(await file.slice(off, Math.min(off + readBlock, t.size)).arrayBuffer());
    h.update(block);
    for (let i = 0; i < block.length; i += fileChunk) {
      const stop = ctl.pending();
      if (stop) { t.end('failed', 'receiver says ' + String(stop.message || stop.type).slice(0, 200)); return; }
      while (dc.bufferedAmount > highWater) {
        t.progress(handed - dc.bufferedAmount);
        if (!(await waitEvent(dc, 'bufferedamountlow', answerTimeout))) {
          t.end('failed', 'the transfer stalled or the channel closed');
          return;
        }
      }
      if (t.ended) return;
      const piece = block.subarray(i, Math.min(i + fileChunk, block.length));
      dc.send(piece);
      handed += piece.length;
    }
    t.progress(handed - dc.bufferedAmount);
  }
  if (handed !== t.size) { t.end('failed', `the file changed: read ${handed} of ${t.size} bytes`); return; }
  t.sha256 = h.hex();
  t.control({ type: 'end', size: handed, sha256: t.sha256 });
  t.setState('verifying');
  const verdict = await ctl.next(answerTimeout);
  if (t.ended) return;
  if (verdict && verdict.type === 'ok') t.end('done');
  else t.end('failed', verdict ? 'receiver says ' + String(verdict.message || verdict.type).slice(0, 200) : 'the receiver did not confirm the file');
}

/**
 * receiveFile handles a "file" channel a peer opened. o.rooms are the rooms
 * shared with the peer, o.maxFileSize the largest file accepted,
 * o.stallTimeout (ms, default defaultFileStallTimeout) how long an accepted
 * transfer waits for the sender's next message before it fails, and
 * o.offer(transfer) is called with an incoming Transfer to accept() or
 * reject(); it returns false when nobody can take it.
 */
export function receiveFile(dc, o) {
  dc.binaryType = 'arraybuffer';
  let t = null;
  let h = null;
  let parts = [];
  const stallTimeout = o.stallTimeout || defaultFileStallTimeout;
  let idle = 0; // ends an accepted transfer whose sender went silent (stalled)
  const timer = setTimeout(() => { if (!t) dc.close(); }, offerTimeout);
  const answerOnce = (m) => { if (dc.readyState === 'open') dc.send(JSON.stringify(m)); };
  dc.addEventListener('close', () => {
    clearTimeout(timer);
    parts = [];
    if (t) t.end('failed', 'the connection closed before the whole file arrived');
  });
  dc.addEventListener('message', (e) => {
    if (t && t.ended) return;
    if (typeof e.data !== 'string') {
      onChunk(e.data);
      return;
    }
    let m = null;
    if (e.data.length <= maxControl) { try { m = JSON.parse(e.data); } catch { /* not JSON */ } }
    if (!m || typeof m.type !== 'string') { abort('bad control message'); return; }
    if (m.type === 'offer' && !t) onOffer(m);
    else if (m.type === 'end' && t && t.state === 'receiving') onEnd(m);
    else if (m.type === 'error' && t) t.end('cancelled', 'sender says ' + String(m.message || 'cancelled').slice(0, 200));
    else abort(`unexpected "${String(m.type).slice(0, 32)}" message`);
  });

  function abort(why) {
    answerOnce({ type: 'error', message: why });
    if (t) t.end('failed', why);
    else dc.close();
  }

  function onOffer(m) {
    clearTimeout(timer);
    const size = Number(m.size);
    const refuse = (why) => { answerOnce({ type: 'reject', message: why }); dc.close(); };
    if (typeof m.room !== 'string' || !o.rooms.has(m.room)) return refuse('not in that room');
    if (typeof m.name !== 'string' || validFileName(m.name)) return refuse('bad file name');
    if (!Number.isSafeInteger(size) || size < 0 || size > o.maxFileSize) return refuse(`size ${m.size} is over the limit ${o.maxFileSize}`);
    t = new Transfer({ direction: 'in', name: m.name, size, peer: o.peer, room: m.room, channel: dc });
    t.addEventListener('end', () => {
      clearTimeout(idle);
      if (t.state !== 'done') parts = []; // a failed transfer's parts are of no use: free them now
    });
    t.accept = () => {
      if (t.state !== 'offered') return false;
      h = new SHA256();
      t.setState('receiving');
      answerOnce({ type: 'accept' });
      watch();
      return true;
    };
    t.reject = (why = 'declined') => {
      if (t.state !== 'offered') return;
      answerOnce({ type: 'reject', message: String(why).slice(0, 200) });
      t.end('rejected', why);
    };
    if (!o.offer(t)) t.reject('receiver is busy');
  }

  function onChunk(data) {
    if (!t || t.state !== 'receiving') { abort('data before accept'); return; }
    if (t.done + data.byteLength > t.size) { abort(`more data than the offered ${t.size} bytes`); return; }
    h.update(data);
    parts.push(data);
    t.progress(t.done + data.byteLength);
    watch();
  }

  // watch (re)starts the wait for the sender's next message: each chunk
  // starts it again, and a sender silent for stallTimeout is told why
  // and the transfer fails.
  function watch() {
    clearTimeout(idle);
    idle = setTimeout(() => {
      if (t.state === 'receiving') abort(`the sender sent nothing for ${stallTimeout % 1000 ? stallTimeout + ' ms' : stallTimeout / 1000 + ' s'}`);
    }, stallTimeout);
  }

  function onEnd(m) {
    const sum = h.hex();
    if (t.done !== t.size || Number(m.size) !== t.done || String(m.sha256).toLowerCase() !== sum) {
      abort(`checksum mismatch: got ${t.done} bytes sha256 ${sum}, sender says ${Number(m.size)} bytes sha256 ${String(m.sha256).slice(0, 64)}`);
      return;
    }
    answerOnce({ type: 'ok' });
    t.sha256 = sum;
    t.file = new File(parts, t.name, { type: 'application/octet-stream' });
    parts = [];
    // The sender closes the channel once it has read "ok".
    t.end('done');
  }
}

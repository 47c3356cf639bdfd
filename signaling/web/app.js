// The khadga web app, built on the SDK at /sdk/khadga.js. Plain ES modules,
// no build step. Every text that comes from the network is put on the page
// with textContent, never as HTML.

import { Session, Khadga, register, resendVerification, requestPasswordReset, resetPassword, ApiError, maxMessageText } from '/sdk/khadga.js';
import { VideoWindow } from '/videowindow.js';
import { takeInvite, makeInviteLink } from '/invites.js';

const $ = (id) => document.getElementById(id);
const refreshKey = 'khadga.refresh'; // sessionStorage: survives a reload, not the tab
const cameraKey = 'khadga.camera'; // sessionStorage: set while the camera is on, so that a reload can say it is off

const state = {
  session: null,
  k: null,
  camera: null, // MediaStream from getUserMedia
  windows: new Map(), // peer id -> VideoWindow
  badgeTimer: 0,
  transfers: new Map(), // transfer id -> {t, li, url}
  kept: [], // the chat log entries kept in sessionStorage
  pickFor: null, // {peer, room}: who the file picker's files go to
  reset: null, // {user, token} of the password-reset link the page was opened with
};

// Tests and curious people can reach the live objects from the console.
window.khadgaApp = {
  get client() { return state.k; },
  get session() { return state.session; },
  get camera() { return state.camera; },
  get transfers() { return [...state.transfers.values()].map((x) => x.t); },
};

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role' || k === 'type' || k === 'title') e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function showBanner(text) {
  const b = $('banner');
  b.textContent = text;
  b.hidden = !text;
}

// sentence makes text read as the sentence the page shows it as: the
// server's words ("invalid username or password") start in lower case and
// without a full stop, to go after a colon.
function sentence(text) {
  const t = String(text).trim();
  if (!t) return t;
  const s = t[0].toUpperCase() + t.slice(1);
  return /[.!?…]$/.test(s) ? s : s + '.';
}

function errorText(e) {
  if (e instanceof ApiError) {
    if (e.status === 429 && e.retryAfter) return `${e.message} (try again in ${e.retryAfter} s)`;
    return e.message;
  }
  return e && e.message ? e.message : String(e);
}

// ---- sign in ----

function credentials() {
  const username = $('username').value.trim().toLowerCase();
  const password = $('password').value;
  if (!/^[a-z0-9][a-z0-9_.-]{2,31}$/.test(username)) throw new Error('Username: 3 to 32 characters of a-z, 0-9, _ - . starting with a letter or digit.');
  if ([...password].length < 10) throw new Error('Password: at least 10 characters.');
  return { username, password };
}

async function onLogin(ev) {
  ev.preventDefault();
  signinMessage('');
  $('resend-row').hidden = true;
  try {
    const { username, password } = credentials();
    const code = $('totp-code').value.trim();
    await start(await Session.login(username, password, { code }));
    $('totp-code').value = '';
    $('code-row').hidden = true;
  } catch (e) {
    if (e instanceof ApiError && e.code === 'totp_required') {
      // The password was right; the account wants its second factor.
      $('code-row').hidden = false;
      $('totp-code').focus();
      signinMessage('Enter the code from your authenticator app, then sign in again.');
      return;
    }
    if (unverified(e)) return;
    signinMessage(e instanceof ApiError && e.code === 'totp_invalid' ? 'That code is wrong or already used.' : errorText(e));
  }
}

// unverified shows how to get a new link when e says the account's email
// address is not confirmed yet.
function unverified(e) {
  if (!(e instanceof ApiError) || e.code !== 'email_unverified') return false;
  signinMessage('Confirm your email address first: open the link we sent you.');
  $('resend-row').hidden = false;
  return true;
}

async function onResend() {
  signinMessage('');
  try {
    const { username, password } = credentials();
    const email = $('email').value.trim();
    await resendVerification('', username, password, email);
    $('signin-notice').textContent = `A new link is on its way${email ? ' to ' + email : ''}. Open it, then sign in.`;
    $('signin-notice').hidden = false;
    $('resend-row').hidden = true;
  } catch (e) {
    signinMessage(errorText(e));
  }
}

async function onRegister() {
  signinMessage('');
  $('resend-row').hidden = true;
  try {
    const { username, password } = credentials();
    await register('', username, password, $('email').value.trim());
    await start(await Session.login(username, password));
  } catch (e) {
    if (unverified(e)) return;
    signinMessage(e instanceof ApiError && e.status === 409 ? 'That username is taken.' : errorText(e));
  }
}

// onForgot asks for a password-reset link for the username typed in.
async function onForgot() {
  signinMessage('');
  const username = $('username').value.trim().toLowerCase();
  if (!/^[a-z0-9][a-z0-9_.-]{2,31}$/.test(username)) {
    signinMessage('Type your username first, then ask for the link.');
    return;
  }
  try {
    await requestPasswordReset('', username);
    $('signin-notice').textContent = `If ${username} has a confirmed email address, a link to choose a new password is on its way.`;
    $('signin-notice').hidden = false;
  } catch (e) {
    signinMessage(errorText(e));
  }
}

// takeReset shows the new-password form when the page was opened from a
// password-reset link (#reset=<username>&token=<token>), and takes the
// fragment out of the address bar and the history. Signed in, it does
// nothing. The form names the account plainly: a page that holds this tab
// can set the fragment to a link of its own account, and a password typed
// into it would sign the person in there.
function takeReset() {
  const q = new URLSearchParams(location.hash.slice(1));
  const user = q.get('reset') || '', token = q.get('token') || '';
  if (!user || !token) return;
  history.replaceState(null, '', location.pathname + location.search);
  if (state.session) return;
  state.reset = { user, token };
  $('reset-for').replaceChildren('for the account ', el('strong', {}, user), ' (check that it is yours)');
  $('reset-error').textContent = '';
  $('reset').hidden = false;
  $('reset-password').focus();
}

async function onReset(ev) {
  ev.preventDefault();
  const r = state.reset;
  const pw = $('reset-password').value;
  if (!r) return;
  if ([...pw].length < 10) {
    $('reset-error').textContent = 'Password: at least 10 characters.';
    return;
  }
  try {
    await resetPassword('', r.user, r.token, pw);
  } catch (e) {
    $('reset-error').textContent = e instanceof ApiError && e.code === 'link_invalid'
      ? 'This link is invalid, expired, or the password was changed since it was sent. Ask for a new one with "Forgot password?".'
      : sentence(errorText(e));
    return;
  }
  state.reset = null;
  $('reset-password').value = '';
  $('reset').hidden = true;
  $('signin-notice').textContent = `The password of ${r.user} is changed, and it is signed out everywhere. Sign in with the new password.`;
  $('signin-notice').hidden = false;
}

// start shows the app for session once its socket is open. A sign-in with
// the form gives up at the first failure: the person is there to try
// again. A sign-in restored after a reload (restored) has nobody to try
// again, so while the socket cannot open for a reason that may pass (the
// ticket request answered 429 or 503, no network, or a WebSocket that did
// not open: a browser shows no status for a failed upgrade, but the ticket
// it used was just granted) it keeps the sign-in and tries again. Only a
// refusal ends it: the session's refresh refused ('expired', which signs
// out), another 4xx, or a sign-in with the form meanwhile.
async function start(session, { restored = false } = {}) {
  state.session = session;
  $('password').value = '';
  const current = () => state.session === session && state.k === k;
  // Both listeners check that the session is still the page's: one given
  // up on keeps no token and signs nobody out.
  const keep = () => { if (state.session === session && session.refreshToken) sessionStorage.setItem(refreshKey, session.refreshToken); };
  keep();
  session.addEventListener('tokens', keep);
  // The server's reason, when it ended this sign-in (the password changed
  // in another tab, the account deleted or disabled): the refresh that
  // follows is refused, and the person should know why.
  let revoked = '';
  session.addEventListener('expired', () => {
    if (state.session === session) signOut(revoked ? `Signed out: ${revoked}.` : 'Your session expired. Please sign in again.');
  });
  const k = new Khadga({ session, relayOnly: $('relay-only').checked });
  k.on('disconnected', ({ code, reason }) => { if (code === 4401 && reason) revoked = reason; });
  state.k = k;
  wire(k);
  let w;
  try {
    w = restored ? await keepTrying('Signed in, but could not connect to the server', () => k.connect(), () => !current()) : await k.connect();
    if (!current()) throw new Error('signed in again meanwhile');
  } catch (e) {
    forget(session, k);
    throw e;
  }
  $('whoami').textContent = `Signed in as ${w.user}`;
  $('whoami').hidden = false;
  $('signout').hidden = false;
  $('skip').hidden = false; // signed out, there is no chat to skip to
  $('signin').hidden = true;
  $('app').hidden = false;
  $('room-name').focus();
  state.badgeTimer = setInterval(updateBadges, 2000);
  // A sign-in restored from the tab asks first, as offerInvite does:
  // another page that holds this tab can load the app in it with an
  // invite link, and nobody signed in by hand to take that invite.
  if (restored) {
    cameraOffAfterReload();
    const inv = pendingInvite();
    sessionStorage.removeItem(inviteKey);
    $('signin-notice').hidden = true;
    if (inv) offer(inv);
    return;
  }
  await joinInvite();
}

// signinMessage puts text under the sign-in form: an error (the default),
// or with kind 'note' a confirmation, such as "Signed out.", which is
// neither styled nor announced as an alert.
function signinMessage(text, kind = 'error') {
  const m = $('signin-error');
  m.textContent = sentence(text);
  m.className = kind === 'note' ? 'note' : 'error';
  m.setAttribute('role', kind === 'note' ? 'status' : 'alert');
}

async function signOut(message, kind = 'error') {
  clearInterval(state.badgeTimer);
  cameraOff();
  const k = state.k;
  state.k = null; // before close, so that its 'closed' event does not sign out twice
  if (k) k.close();
  for (const key of [refreshKey, logKey, roomsKey, invitesKey, cameraKey]) sessionStorage.removeItem(key);
  state.kept = [];
  if (state.session) await state.session.logout();
  state.session = null;
  for (const w of state.windows.values()) w.remove();
  state.windows.clear();
  clearTransfers();
  sessionStorage.removeItem(inviteKey);
  for (const id of ['presence', 'rooms', 'chat-log', 'chat-room', 'invite-offer']) $(id).replaceChildren();
  $('rooms-error').textContent = '';
  $('online-count').textContent = '0';
  $('invite-offer').hidden = $('recorder-note').hidden = true;
  $('share-recorder').checked = false; // the next one to sign in has not said yes
  resetSecurity();
  $('app').hidden = true;
  $('signin').hidden = false;
  $('whoami').hidden = true;
  $('signout').hidden = true;
  $('skip').hidden = true;
  showBanner('');
  signinMessage(typeof message === 'string' ? message : '', kind);
  $('username').focus();
}

// ---- events from the SDK ----

function wire(k) {
  k.on('presence', ({ online, count }) => renderPresence(online, count));
  k.on('peer-joined', ({ room, peer, existing }) => { renderRoom(room); notice(room, `${peer.user || peer.peer} ${existing ? 'is here' : 'joined'}`); });
  k.on('peer-left', ({ room, peer }) => { renderRoom(room); notice(room, `${peer.user || peer.peer} left`); });
  k.on('peer-state', ({ peer }) => renderPeer(peer.peer));
  k.on('peer-connected', ({ peer }) => renderPeer(peer.peer));
  k.on('peer-failed', ({ peer, stalled }) => {
    const p = k.peers.get(peer.peer);
    if (p && p.everConnected && !stalled) {
      // It worked before, and peer-interrupted has said the path went
      // away; a firewall is not the likely cause.
      if (!p.interrupted) noticeAll(peer, `Lost the connection to ${peer.user}; reconnecting…`);
    } else {
      noticeAll(peer, `Cannot reach ${peer.user}: no network path worked, neither direct nor through the server's TURN relay. ` +
        'A firewall on your side or theirs probably blocks UDP and the TURN ports (3478 UDP and TCP, 5349 TLS). Still trying…');
    }
    renderPeer(peer.peer);
  });
  k.on('peer-interrupted', ({ peer }) => noticeAll(peer, `Lost the connection to ${peer.user} (the network changed or broke); reconnecting…`));
  k.on('peer-reconnected', ({ peer }) => noticeAll(peer, `Connection to ${peer.user} is back.`));
  k.on('peer-closed', ({ peer }) => closeWindow(peer.peer));
  k.on('message', addMessage);
  k.on('chat-dropped', ({ peer }) => noticeAll(peer, `${peer.user} sends messages faster than anyone types: some are not shown.`));
  k.on('file-offer', ({ transfer }) => showTransfer(transfer));
  k.on('track', onTrack);
  k.on('track-removed', ({ peer, stream }) => { if (stream.getTracks().length === 0) closeWindow(peer.peer); });
  k.on('disconnected', ({ retryIn }) => showBanner(`Connection to the server lost. Reconnecting in ${Math.ceil(retryIn / 1000)} s… Calls in progress keep going.`));
  k.on('reconnected', ({ resumed }) => {
    showBanner('');
    noticeEverywhere(resumed ? 'Reconnected to the server.' : 'Reconnected with a new session; rejoining rooms.');
  });
  k.on('room-lost', ({ room, message }) => {
    forgetRoom(room);
    noticeEverywhere(`The server did not let you back into ${room} after the reconnect: ${message}`);
  });
  k.on('error', ({ message }) => noticeEverywhere('Server: ' + message));
  k.on('closed', () => { if (state.k === k) signOut('Signed out.'); });
}

function roleMark(member) {
  if (member.role !== 'recorder') return null;
  return el('span', { class: 'rec', 'data-recorder': 'true', title: 'This peer records what is shared with it' }, 'REC recorder');
}

// renderPresence lists who is online; count is how many are, which is
// more than the list when the server lists only the first (--presence-list).
function renderPresence(online, count) {
  const me = state.k && state.k.self;
  const list = [...online].sort((a, b) => a.user.localeCompare(b.user));
  const more = Math.max((count || 0) - list.length, 0);
  $('online-count').textContent = String(list.length + more);
  $('presence').replaceChildren(...list.map((m) => el('li', { 'data-peer': m.peer, 'data-user': m.user },
    el('span', { class: 'dot', 'aria-hidden': 'true' }), m.user, me && me.peer === m.peer ? ' (you)' : '', roleMark(m))),
  ...(more ? [el('li', { class: 'more' }, `and ${more} more`)] : []));
}

function roomSection(room) {
  let s = document.querySelector(`#rooms section[data-room="${CSS.escape(room)}"]`);
  if (s) return s;
  const leave = el('button', { type: 'button', class: 'secondary', 'aria-label': `Leave room ${room}` }, 'Leave');
  leave.addEventListener('click', () => leaveRoom(room));
  const invite = el('button', { type: 'button', class: 'secondary invite', 'aria-label': `Make an invite link for room ${room}` }, 'Invite link');
  invite.addEventListener('click', () => onInviteLink(room));
  s = el('section', { class: 'room', 'data-room': room, 'aria-label': `Room ${room}` },
    el('div', { class: 'row room-head' }, el('h3', {}, room), leave, invite),
    el('div', { class: 'invite-box', hidden: true }),
    el('ul', { class: 'people members', 'aria-label': `Members of ${room}` }));
  $('rooms').append(s);
  $('chat-room').append(el('option', { value: room }, room));
  $('chat-room').value = room;
  return s;
}

function renderRoom(room) {
  const k = state.k;
  if (!k || !k.rooms.has(room)) return;
  const s = roomSection(room);
  const items = k.members(room).map((m) => memberItem(m, room));
  if (items.length === 0) items.push(el('li', { class: 'empty' }, 'Nobody else here yet.'));
  s.querySelector('.members').replaceChildren(...items);
  const recorder = [...k.peers.values()].some((p) => p.isRecorder);
  $('recorder-note').hidden = !recorder;
}

function memberItem(m, room) {
  const p = state.k.peers.get(m.peer);
  const st = p ? p.pc.connectionState : 'new';
  const send = el('button', { type: 'button', class: 'secondary send-file', 'data-peer': m.peer, 'data-user': m.user,
    'aria-label': `Send a file to ${m.user || m.peer}` }, 'Send file');
  send.disabled = st !== 'connected';
  send.addEventListener('click', () => { state.pickFor = { peer: m.peer, room }; $('file-picker').click(); });
  const li = el('li', { 'data-peer': m.peer, 'data-user': m.user },
    el('span', { class: 'dot ' + st, 'aria-hidden': 'true' }), m.user || m.peer, roleMark(m),
    el('span', { class: 'state' }, st),
    el('span', { class: 'badge', 'data-peer': m.peer, 'data-kind': p && p.kind ? p.kind : '' }, p && p.kind ? badgeText[p.kind] || p.kind : '…'),
    send);
  acceptDrops(li, m.peer, room);
  return li;
}

// acceptDrops makes li a drop target: files dropped on it go to peer.
function acceptDrops(li, peer, room) {
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes('Files');
  li.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
    li.classList.add('drop');
  });
  li.addEventListener('dragleave', () => li.classList.remove('drop'));
  li.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    li.classList.remove('drop');
    for (const f of e.dataTransfer.files) sendFileTo(peer, room, f);
  });
}

function renderPeer(id) {
  const p = state.k && state.k.peers.get(id);
  if (p) for (const r of p.rooms) renderRoom(r);
}

const badgeText = { direct: 'direct', relayed: 'relayed', failed: 'no path' };
const badgeTitle = {
  direct: 'Directly between you',
  relayed: 'Through the TURN relay',
  failed: 'No network path worked, direct or relayed; still trying',
};

// updateBadges reads each peer's selected candidate pair: direct or
// relayed, or failed when ICE found no path.
async function updateBadges() {
  const k = state.k;
  if (!k) return;
  for (const p of k.peers.values()) {
    // A failed connection says so, rather than spinning: ICE tried every
    // path it had.
    const down = p.pc.iceConnectionState === 'failed' || (p.stalled && p.chat.readyState !== 'open');
    const kind = down ? 'failed' : await p.connectionKind().catch(() => '');
    if (kind === p.kind) continue;
    p.kind = kind;
    for (const b of document.querySelectorAll(`.badge[data-peer="${CSS.escape(p.id)}"]`)) {
      b.dataset.kind = kind;
      b.textContent = badgeText[kind] || '…';
      b.title = badgeTitle[kind] || 'Connecting…';
    }
  }
}

// ---- rooms ----

async function onJoin(ev) {
  ev.preventDefault();
  const room = $('room-name').value.trim();
  $('rooms-error').textContent = '';
  // The input has no maxlength: a pasted name that is too long is refused
  // with a word, not cut to a name the person did not mean.
  if (room.length > 64) {
    $('rooms-error').textContent = `That room name is ${room.length} characters long; room names are at most 64.`;
    return;
  }
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(room) || room === '.' || room === '..') {
    $('rooms-error').textContent = 'Room names are 1 to 64 characters of A-Z, a-z, 0-9, _ - . (but not . or ..)';
    return;
  }
  try {
    await state.k.join(room);
    roomSection(room);
    renderRoom(room);
    keepRooms();
    $('room-name').value = '';
    $('chat-input').focus();
  } catch (e) {
    $('rooms-error').textContent = `Could not join ${room}: ${errorText(e)}`;
  }
}

// onInviteLink makes room the user's (if nobody owns it) with a new
// invite, and shows the link: from then on only people who have it (and
// the owner) can join.
async function onInviteLink(room) {
  const box = roomSection(room).querySelector('.invite-box');
  box.hidden = false;
  box.replaceChildren(el('p', { class: 'note' }, 'Making a link…'));
  let link;
  try {
    link = await makeInviteLink(state.session, room);
  } catch (e) {
    box.replaceChildren(el('p', { class: 'error', role: 'alert' }, sentence(errorText(e))));
    return;
  }
  const field = el('input', { readOnly: true, value: link, 'data-invite-link': room, 'aria-label': `Invite link for room ${room}` });
  const copy = el('button', { type: 'button', class: 'secondary copy' }, 'Copy');
  const said = el('p', { class: 'note', role: 'status' }); // there before it speaks, or screen readers miss it
  copy.addEventListener('click', () => copyLink(link, field, copy, said));
  box.replaceChildren(el('div', { class: 'row' }, field, copy), said,
    el('p', { class: 'note' }, `You own ${room}. Only people with this link can join it now; a new link stops this one working.`));
  field.focus();
  field.select();
}

// copyLink copies link and says so, on the button for a moment (a click
// that changes nothing looks broken) and in said, a status message for
// screen readers. Where the browser refuses (no clipboard permission, an
// insecure origin), the link stays selected in field to copy by hand.
async function copyLink(link, field, copy, said) {
  field.select();
  clearTimeout(copy.copiedTimer);
  try {
    await navigator.clipboard.writeText(link);
  } catch {
    copy.textContent = 'Copy';
    said.textContent = 'Could not copy: the link is selected, so copy it with Ctrl+C (⌘C on a Mac).';
    return;
  }
  copy.textContent = 'Copied';
  said.textContent = 'Invite link copied.';
  copy.copiedTimer = setTimeout(() => { copy.textContent = 'Copy'; said.textContent = ''; }, 2000);
}

// The invite this page was opened with (takeInvite), kept in the tab until
// the user is signed in and has joined with it.
const inviteKey = 'khadga.invite';

function showInvite() {
  const inv = takeInvite();
  if (inv) sessionStorage.setItem(inviteKey, JSON.stringify(inv));
  const kept = pendingInvite();
  if (!kept) return;
  $('signin-notice').textContent = `You are invited to room ${kept.room}. Sign in or register to join it.`;
  $('signin-notice').hidden = false;
}

function pendingInvite() {
  try {
    const inv = JSON.parse(sessionStorage.getItem(inviteKey) || 'null');
    return inv && typeof inv.room === 'string' && typeof inv.invite === 'string' ? inv : null;
  } catch { return null; }
}

// offerInvite asks a signed-in user to join the room of an invite that
// came in a fragment change, with a button, and joins on the click. The
// offer stays on this page only: kept in the tab, a reload or the next
// sign-in would join it without asking.
function offerInvite() {
  const inv = takeInvite();
  if (inv) offer(inv);
}

function offer(inv) {
  const join = el('button', { type: 'button', class: 'join-invite' }, `Join ${inv.room}`);
  join.addEventListener('click', () => {
    sessionStorage.setItem(inviteKey, JSON.stringify(inv));
    joinInvite();
  });
  $('invite-offer').replaceChildren(`You are invited to room ${inv.room}. `, join);
  $('invite-offer').hidden = false;
}

// joinInvite joins the room of the invite the page was opened with, once
// signed in (or, for one that came later, when the user says so).
async function joinInvite() {
  const inv = pendingInvite();
  if (!inv || !state.k) return;
  sessionStorage.removeItem(inviteKey);
  $('signin-notice').hidden = true;
  $('invite-offer').hidden = true;
  try {
    await state.k.join(inv.room, { invite: inv.invite });
    roomSection(inv.room);
    renderRoom(inv.room);
    keepRooms();
  } catch (e) {
    $('rooms-error').textContent = `Could not join ${inv.room} with the invite: ${errorText(e)}`;
  }
}

async function leaveRoom(room) {
  try { await state.k.leave(room); } catch (e) { $('rooms-error').textContent = sentence(errorText(e)); }
  forgetRoom(room);
}

// forgetRoom takes a room we are no longer in off the page. Focus inside
// it (its Leave button, pressed from the keyboard) goes to the room name
// box, not back to the start of the page.
function forgetRoom(room) {
  keepRooms();
  const s = document.querySelector(`#rooms section[data-room="${CSS.escape(room)}"]`);
  if (s && s.contains(document.activeElement)) $('room-name').focus();
  if (s) s.remove();
  const o = [...$('chat-room').options].find((x) => x.value === room);
  if (o) o.remove();
}

// ---- chat ----

function fmtTime(t) { return t.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }); }

// The chat log is also kept in this tab's sessionStorage, like the refresh
// token: a reload signs in again, rejoins the rooms and puts the log back,
// so that what was said stays on screen. Signing out forgets it.
const logKey = 'khadga.chat';
const roomsKey = 'khadga.rooms';
const invitesKey = 'khadga.invites'; // room -> invite, for rooms joined with one
const maxKeptEntries = 200;
const maxKeptChars = 256 * 1024;

function addMessage({ room, from, text, time, transport }) {
  logEntry({ kind: 'msg', room, from: { user: from.user, peer: from.peer }, text, time: time.toISOString(), transport });
}

// logEntry puts one message or notice on screen and keeps it, unless it
// is being put back from storage.
function logEntry(e, restoring = false) {
  const time = new Date(e.time);
  const stamp = el('time', { dateTime: e.time }, fmtTime(time));
  if (e.kind === 'msg') {
    append(el('li', { class: 'msg', 'data-room': e.room, 'data-from': e.from.user, 'data-transport': e.transport },
      stamp, ' ', el('span', { class: 'room-tag' }, e.room), ' ',
      el('strong', {}, e.from.user || e.from.peer), ' ', el('span', { class: 'text' }, e.text)));
  } else {
    const attrs = { class: e.peer ? 'notice peer-notice' : 'notice' };
    if (e.room !== undefined) attrs['data-room'] = e.room;
    if (e.peer) attrs['data-peer'] = e.peer;
    append(el('li', attrs, stamp, ' ', e.text));
  }
  if (!restoring) keepEntry(e);
}

function keepEntry(e) {
  state.kept.push(e);
  let chars = state.kept.reduce((n, x) => n + x.text.length, 0);
  while (state.kept.length > maxKeptEntries || chars > maxKeptChars) chars -= state.kept.shift().text.length;
  try { sessionStorage.setItem(logKey, JSON.stringify(state.kept)); } catch { /* storage full: the screen still has it */ }
}

function keepRooms() {
  if (!state.k) return;
  sessionStorage.setItem(roomsKey, JSON.stringify([...state.k.rooms]));
  sessionStorage.setItem(invitesKey, JSON.stringify(Object.fromEntries(state.k.invites)));
}

// restoreLog puts the kept log back on screen after a reload.
function restoreLog() {
  let kept = [];
  try { kept = JSON.parse(sessionStorage.getItem(logKey) || '[]'); } catch { kept = []; }
  state.kept = Array.isArray(kept) ? kept.filter((e) => e && typeof e.text === 'string' && typeof e.time === 'string') : [];
  for (const e of state.kept) logEntry(e, true);
}

async function rejoinKeptRooms() {
  let rooms = [];
  let invites = {};
  try { rooms = JSON.parse(sessionStorage.getItem(roomsKey) || '[]'); } catch { rooms = []; }
  try { invites = JSON.parse(sessionStorage.getItem(invitesKey) || '{}') || {}; } catch { invites = {}; }
  for (const room of Array.isArray(rooms) ? rooms : []) {
    if (typeof room !== 'string' || state.k.rooms.has(room)) continue;
    const invite = typeof invites[room] === 'string' ? invites[room] : '';
    try {
      await state.k.join(room, { invite });
      roomSection(room);
      renderRoom(room);
    } catch (e) {
      noticeEverywhere(`Could not join ${room} again: ${errorText(e)}`);
    }
  }
}

function append(li) {
  const log = $('chat-log');
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
  log.append(li);
  while (log.children.length > 500) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function notice(room, text) {
  logEntry({ kind: 'notice', room, text, time: new Date().toISOString() });
}
function noticeAll(peer, text) {
  const p = state.k && state.k.peers.get(peer.peer);
  const rooms = p ? [...p.rooms] : [];
  logEntry({ kind: 'notice', room: rooms.join(' '), peer: peer.peer, text, time: new Date().toISOString() });
}
function noticeEverywhere(text) { logEntry({ kind: 'notice', text, time: new Date().toISOString() }); }

function onSend(ev) {
  ev.preventDefault();
  const room = $('chat-room').value;
  const text = $('chat-input').value;
  if (!text.trim()) return;
  if (!room) {
    noticeEverywhere('Join a room first: a message goes to the people in a room.');
    return;
  }
  // The box counts characters, the limit bytes: an emoji takes four.
  const bytes = new TextEncoder().encode(text).length;
  if (bytes > maxMessageText) {
    noticeEverywhere(`That message is too long to send: ${Math.ceil(bytes / 1024)} KiB, and a message takes at most ` +
      `${maxMessageText / 1024} KiB (an emoji or an accented letter counts more than once). Shorten it, or send it as a file.`);
    return;
  }
  let n;
  try { n = state.k.send(room, text); } catch (e) { noticeEverywhere(errorText(e)); return; }
  const me = state.k.self;
  addMessage({ room, from: me, text, time: new Date(), transport: 'self' });
  if (n === 0) notice(room, 'Nobody received that: no peer in this room is connected yet.');
  $('chat-input').value = '';
}

// ---- files ----

const maxListedTransfers = 50;

function sendFileTo(peer, room, file) {
  try {
    showTransfer(state.k.sendFile(peer, file, { room }));
  } catch (e) {
    notice(room, `Could not send ${file.name}: ${errorText(e)}`);
  }
}

function onPick() {
  const to = state.pickFor;
  const files = [...$('file-picker').files];
  $('file-picker').value = '';
  state.pickFor = null;
  if (to && state.k) for (const f of files) sendFileTo(to.peer, to.room, f);
}

function mib(n) { return n < 1024 * 1024 ? `${Math.ceil(n / 1024)} KiB` : `${(n / 1048576).toFixed(1)} MiB`; }

// showTransfer lists a transfer in the Files card and keeps its row up to date.
function showTransfer(t) {
  const who = t.peer.user || t.peer.peer;
  const bar = el('progress', { max: Math.max(t.size, 1), value: 0, 'aria-label': `${t.name} progress` });
  const status = el('span', { class: 'status' });
  const actions = el('span', { class: 'actions' });
  const li = el('li', { 'data-transfer': t.id, 'data-direction': t.direction, 'data-state': t.state, 'data-name': t.name, 'data-user': who },
    el('span', { class: 'what' }, el('strong', {}, t.name), t.direction === 'out' ? ` to ${who}` : ` from ${who}`, ` (${mib(t.size)}) in ${t.room}`),
    actions, bar, status);
  const entry = { t, li, url: '' };
  state.transfers.set(t.id, entry);
  let pending = false;
  const render = () => {
    pending = false;
    li.dataset.state = t.state;
    bar.value = t.done;
    status.textContent = transferStatus(t);
    renderActions(entry, actions);
  };
  const soon = () => { if (!pending) { pending = true; setTimeout(render, 100); } };
  t.addEventListener('progress', soon);
  t.addEventListener('state', render);
  t.addEventListener('end', () => {
    if (t.file) entry.url = URL.createObjectURL(t.file);
    render();
  });
  render();
  $('transfers').prepend(li);
  pruneTransfers();
  if (t.direction === 'in') noticeAll(t.peer, `${who} offers you ${t.name} (${mib(t.size)}); see Files.`);
}

function transferStatus(t) {
  const pct = t.size ? Math.floor((100 * t.done) / t.size) : 100;
  const who = t.peer.user || t.peer.peer;
  switch (t.state) {
    case 'opening': return 'Connecting…';
    case 'offered': return t.direction === 'out' ? `Waiting for ${who} to accept…` : `${who} offers this file.`;
    case 'sending': return `Sending: ${pct} %`;
    case 'receiving': return `Receiving: ${pct} %`;
    case 'verifying': return `Sent; ${who} is checking it…`;
    case 'done': return `${t.direction === 'out' ? 'Sent' : 'Received'}; SHA-256 verified (${t.sha256.slice(0, 16)}…)`;
    // The reason is the other side's words; the SDK's own is "declined".
    case 'rejected': return !t.error || t.error === 'declined' ? 'Declined.' : `Declined: ${t.error}`;
    case 'cancelled': return `Cancelled: ${t.error}`;
    default: return `Failed: ${t.error}`;
  }
}

function renderActions(entry, actions) {
  const { t } = entry;
  const button = (label, cls, fn) => {
    const b = el('button', { type: 'button', class: cls, 'aria-label': `${label} ${t.name}` }, label);
    b.addEventListener('click', fn);
    return b;
  };
  const items = [];
  if (t.direction === 'in' && t.state === 'offered') {
    items.push(button('Accept', 'accept', () => t.accept()), button('Decline', 'secondary decline', () => t.reject('declined')));
  } else if (!t.ended) {
    items.push(button('Cancel', 'secondary cancel', () => t.cancel()));
  } else if (entry.url) {
    items.push(el('a', { href: entry.url, download: t.name, class: 'save' }, 'Save'));
  }
  const now = [...actions.children].map((c) => c.className).join();
  if (now !== items.map((c) => c.className).join()) actions.replaceChildren(...items);
}

// pruneTransfers keeps the list short, dropping the oldest finished rows.
function pruneTransfers() {
  for (const [id, e] of state.transfers) {
    if (state.transfers.size <= maxListedTransfers) break;
    if (!e.t.ended) continue;
    if (e.url) URL.revokeObjectURL(e.url);
    e.li.remove();
    state.transfers.delete(id);
  }
}

function clearTransfers() {
  for (const e of state.transfers.values()) {
    e.t.cancel('signed out');
    if (e.url) URL.revokeObjectURL(e.url);
  }
  state.transfers.clear();
  $('transfers').replaceChildren();
}

// ---- camera ----

async function toggleCamera() {
  if (state.camera) { cameraOff(); return; }
  const k = state.k;
  if (!k) return;
  // One camera at a time: a second click while the first waits for the
  // camera (or the permission prompt) would open another, which "Camera
  // off" would never close.
  $('camera').disabled = true;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
  } catch (e) {
    if (state.k === k) noticeEverywhere('Camera: ' + errorText(e));
    return;
  } finally {
    $('camera').disabled = false;
  }
  if (state.k !== k) {
    // Signed out while it opened: nobody to send it to.
    for (const t of stream.getTracks()) t.stop();
    return;
  }
  state.camera = stream;
  sessionStorage.setItem(cameraKey, '1');
  $('camera-note').hidden = true;
  for (const t of stream.getTracks()) k.addTrack(t, stream);
  const v = $('local-video');
  v.srcObject = stream;
  v.hidden = false;
  $('camera').textContent = 'Camera off';
  $('camera').setAttribute('aria-pressed', 'true');
  $('mute').disabled = stream.getAudioTracks().length === 0;
}

function cameraOff() {
  $('camera-note').hidden = true;
  const s = state.camera;
  if (!s) return;
  state.camera = null;
  sessionStorage.removeItem(cameraKey);
  for (const t of s.getTracks()) { if (state.k) state.k.removeTrack(t); t.stop(); }
  const v = $('local-video');
  v.srcObject = null;
  v.hidden = true;
  $('camera').textContent = 'Camera on';
  $('camera').setAttribute('aria-pressed', 'false');
  $('mute').disabled = true;
  $('mute').textContent = 'Mute microphone';
  $('mute').setAttribute('aria-pressed', 'false');
}

// cameraOffAfterReload says, by the camera button, that the camera is
// off when it was on before the page reloaded: the page does not open it
// by itself (that would send video nobody asked for again), and the person
// may think the others still see them.
function cameraOffAfterReload() {
  if (!sessionStorage.getItem(cameraKey)) return;
  sessionStorage.removeItem(cameraKey);
  $('camera-note').hidden = false;
  $('camera-note').textContent = 'Your camera is off since the page reloaded. Turn it on again to be seen.';
}

function toggleMute() {
  const tracks = state.camera ? state.camera.getAudioTracks() : [];
  if (!tracks.length) return;
  const muted = tracks[0].enabled;
  for (const t of tracks) t.enabled = !muted;
  $('mute').textContent = muted ? 'Unmute microphone' : 'Mute microphone';
  $('mute').setAttribute('aria-pressed', String(muted));
}

function onTrack({ peer, stream }) {
  let w = state.windows.get(peer.peer);
  if (!w) {
    w = new VideoWindow($('videos'), peer, state.windows.size);
    state.windows.set(peer.peer, w);
  }
  w.show(stream);
}

function closeWindow(id) {
  const w = state.windows.get(id);
  if (!w) return;
  w.remove();
  state.windows.delete(id);
}

// ---- two-factor authentication ----

function totpMessage(text) { $('totp-message').textContent = sentence(text); }

async function onTOTPEnroll() {
  totpMessage('');
  try {
    const e = await state.session.totpEnroll();
    $('totp-qr').src = e.qr_png; // a data: URL, which the page's CSP allows for images
    $('totp-secret').textContent = e.secret;
    $('totp-setup').hidden = false;
    $('totp-enroll').hidden = true;
    $('totp-confirm-password').focus();
  } catch (err) {
    if (err instanceof ApiError && err.code === 'conflict') {
      $('totp-enroll').hidden = true;
      $('totp-disable-form').hidden = false;
    }
    totpMessage(errorText(err));
  }
}

// totpFieldsMissing says what a two-factor form lacks, so that an empty
// field is never sent: the server would answer "wrong password" (and count
// it against the sign-in limits) or "wrong code".
function totpFieldsMissing(password, code) {
  if (!password) return 'Enter your password.';
  if (!code) return 'Enter the code from your authenticator app.';
  return '';
}

async function onTOTPConfirm(ev) {
  ev.preventDefault();
  const password = $('totp-confirm-password').value, code = $('totp-confirm-code').value.trim();
  totpMessage(totpFieldsMissing(password, code));
  if (!password || !code) return;
  try {
    const r = await state.session.totpConfirm(password, code);
    $('totp-confirm-password').value = '';
    $('totp-setup').hidden = true;
    $('totp-secret').textContent = '';
    $('totp-qr').removeAttribute('src');
    $('totp-recovery-codes').replaceChildren(...(r.recovery_codes || []).map((c) => el('li', {}, c)));
    $('totp-recovery').hidden = false;
    $('totp-disable-form').hidden = false;
  } catch (err) {
    totpMessage(err instanceof ApiError && err.code === 'totp_invalid' ? 'That code is wrong; try the next one.'
      : err instanceof ApiError && err.code === 'unauthorized' ? 'The password is wrong.' : errorText(err));
  }
}

async function onTOTPDisable(ev) {
  ev.preventDefault();
  const password = $('totp-disable-password').value, code = $('totp-disable-code').value.trim();
  totpMessage(totpFieldsMissing(password, code));
  if (!password || !code) return;
  try {
    await state.session.totpDisable(password, code);
    $('totp-disable-password').value = $('totp-disable-code').value = '';
    $('totp-disable-form').hidden = true;
    $('totp-recovery').hidden = true;
    $('totp-enroll').hidden = false;
    totpMessage('Two-factor authentication is off.');
  } catch (err) {
    totpMessage(errorText(err));
  }
}

// ---- password ----

async function onPasswordChange(ev) {
  ev.preventDefault();
  const msg = $('password-message');
  msg.className = 'error';
  const current = $('current-password').value;
  const next = $('new-password').value;
  if ([...next].length < 10) { msg.textContent = 'The new password needs at least 10 characters.'; return; }
  if (next !== $('new-password-again').value) { msg.textContent = 'The two new passwords differ.'; return; }
  try {
    await state.session.changePassword(current, next);
    for (const id of ['current-password', 'new-password', 'new-password-again']) $(id).value = '';
    msg.className = 'note';
    msg.textContent = 'Password changed. Your other sessions are signed out.';
  } catch (e) {
    msg.textContent = e instanceof ApiError && e.status === 401 ? 'The current password is wrong.' : sentence(errorText(e));
  }
}

// onLogoutOthers signs out the account's other devices; this one goes on.
async function onLogoutOthers(ev) {
  ev.preventDefault();
  const msg = $('others-message');
  msg.className = 'error';
  try {
    await state.session.logoutOthers($('others-password').value);
    $('others-password').value = '';
    msg.className = 'note';
    msg.textContent = 'Your other devices are signed out.';
  } catch (e) {
    msg.textContent = e instanceof ApiError && e.status === 401 ? 'The password is wrong.' : sentence(errorText(e));
  }
}

// ---- deleting the account ----

async function onDeleteAccount(ev) {
  ev.preventDefault();
  const msg = $('delete-message');
  if (!$('delete-confirm').checked) {
    msg.textContent = 'Tick the box first: deleting cannot be undone.';
    return;
  }
  try {
    await state.session.deleteAccount($('delete-password').value, $('delete-code').value.trim());
  } catch (e) {
    msg.textContent = !(e instanceof ApiError) ? sentence(errorText(e))
      : e.code === 'totp_required' ? 'Enter the code from your authenticator app as well.'
        : e.code === 'totp_invalid' ? 'That code is wrong or already used.'
          : e.status === 401 ? 'The password is wrong.' : sentence(errorText(e));
    return;
  }
  await signOut('Your account is deleted.', 'note');
}

function resetSecurity() {
  $('totp-setup').hidden = $('totp-recovery').hidden = $('totp-disable-form').hidden = true;
  $('totp-enroll').hidden = false;
  $('totp-recovery-codes').replaceChildren();
  $('totp-secret').textContent = '';
  totpMessage('');
  for (const id of ['current-password', 'new-password', 'new-password-again', 'others-password', 'delete-password', 'delete-code']) $(id).value = '';
  $('delete-confirm').checked = false;
  $('password-message').textContent = $('others-message').textContent = $('delete-message').textContent = '';
}

// ---- start ----

async function restore() {
  const rt = sessionStorage.getItem(refreshKey);
  if (!rt) return;
  restoreLog(); // first, so that it comes before what the new connection says
  try {
    const session = await signInAgain(rt);
    if (state.session) {
      // The form signed in while the refresh was under way (a slow
      // answer). Started, this one would take the page over and leave the
      // form's client connected behind it; checked here, with nothing
      // awaited before start, so that no sign-in comes in between.
      session.logout();
      return;
    }
    await start(session, { restored: true });
  } catch {
    if (state.session) return; // signed in with the form meanwhile
    for (const key of [refreshKey, logKey, roomsKey, invitesKey, cameraKey]) sessionStorage.removeItem(key);
    state.kept = [];
    $('chat-log').replaceChildren();
    return;
  }
  await rejoinKeptRooms();
}

// forget drops a sign-in whose socket never opened: its client, its
// token kept in the tab (unless a newer sign-in's replaced it), and its
// refresh token family on the server.
function forget(session, k) {
  if (state.k === k) state.k = null; // before close: its 'closed' signs out only the page's client
  if (state.session === session) state.session = null;
  k.close();
  if (session.refreshToken && sessionStorage.getItem(refreshKey) === session.refreshToken) sessionStorage.removeItem(refreshKey);
  session.logout();
}

// signInAgain trades the refresh token kept in the tab for a session, and
// tries again while the server is busy, limiting or unreachable (see
// keepTrying), until it works or the user signs in with the form.
function signInAgain(rt) {
  return keepTrying('Could not sign in again', () => Session.fromRefreshToken(rt), () => state.session !== null);
}

// retryable says whether an attempt that failed with e may work later:
// the server was busy or limiting (503, 429) or out of reach (no answer,
// or a WebSocket that did not open). Any other answer, 401 above all
// (signed out, revoked, expired or used), is a refusal.
function retryable(e) {
  return !(e instanceof ApiError) || e.status === 429 || e.status >= 500;
}

// keepTrying resolves with what attempt resolves with, trying again after
// a retryable failure: after Retry-After, or 1 s doubling to 30 s, saying
// so (what: the failure) on the sign-in form, which shows meanwhile. It
// rejects on a refusal, or once gaveUp() says the attempt is no longer
// wanted (the user signed in with the form, or was signed out). An attempt
// under way when that happens may still resolve: the caller checks again,
// and drops what it got.
async function keepTrying(what, attempt, gaveUp) {
  for (let wait = 1000; ; wait = Math.min(2 * wait, 30000)) {
    try {
      const v = await attempt();
      if (!gaveUp()) signinMessage('');
      return v;
    } catch (e) {
      if (!retryable(e) || gaveUp()) throw e;
      const ms = e instanceof ApiError && e.retryAfter ? e.retryAfter * 1000 : wait;
      signinMessage(`${what}: ${e.message}. Trying again in ${Math.ceil(ms / 1000)} s…`);
      await new Promise((resolve) => setTimeout(resolve, ms));
      if (gaveUp()) throw new Error('no longer wanted');
    }
  }
}

function init() {
  $('signin-form').addEventListener('submit', onLogin);
  $('register').addEventListener('click', onRegister);
  $('signout').addEventListener('click', () => signOut('Signed out.', 'note'));
  $('join-form').addEventListener('submit', onJoin);
  $('chat-form').addEventListener('submit', onSend);
  $('camera').addEventListener('click', toggleCamera);
  $('mute').addEventListener('click', toggleMute);
  $('totp-enroll').addEventListener('click', onTOTPEnroll);
  $('totp-confirm-form').addEventListener('submit', onTOTPConfirm);
  $('totp-disable-form').addEventListener('submit', onTOTPDisable);
  $('share-recorder').addEventListener('change', (e) => state.k && state.k.setShareWithRecorder(e.target.checked));
  $('file-picker').addEventListener('change', onPick);
  $('password-form').addEventListener('submit', onPasswordChange);
  $('others-form').addEventListener('submit', onLogoutOthers);
  $('delete-form').addEventListener('submit', onDeleteAccount);
  $('resend').addEventListener('click', onResend);
  $('forgot').addEventListener('click', onForgot);
  $('reset-form').addEventListener('submit', onReset);
  // A file dropped beside a member would make the browser open it instead.
  for (const type of ['dragover', 'drop']) document.addEventListener(type, (e) => { if (!e.defaultPrevented) e.preventDefault(); });
  emailVerifiedNotice();
  takeReset();
  showInvite();
  // An invite link opened in a tab that shows the app already changes only
  // the fragment: no reload, so read it here. Signed in, it asks first:
  // another page that holds this tab (window.open) can change its
  // fragment, and a join sends the camera and microphone to the room.
  window.addEventListener('hashchange', () => { takeReset(); if (state.k) offerInvite(); else showInvite(); });
  restore();
}

// emailVerifiedNotice shows that the emailed link worked: the server
// redirects it to /?email-verified=1.
function emailVerifiedNotice() {
  const q = new URLSearchParams(location.search);
  if (q.get('email-verified') !== '1') return;
  $('signin-notice').textContent = 'Your email address is confirmed. You can sign in now.';
  $('signin-notice').hidden = false;
  history.replaceState(null, '', location.pathname);
}

init();

// The SDK example: sign in, join a room, chat. Everything the SDK reports
// goes to the log; every remote track plays in a <video>.
import { Session, Khadga } from '/sdk/khadga.js';

const $ = (id) => document.getElementById(id);
const log = (text) => $('log').append(Object.assign(document.createElement('li'), { textContent: text }));
let k = null;
let room = '';

$('form').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    const session = await Session.login($('user').value, $('pass').value);
    k = new Khadga({ session });
    k.on('presence', ({ online }) => log(`online: ${online.map((m) => m.user).join(', ')}`));
    k.on('peer-joined', ({ room, peer }) => log(`${peer.user} joined ${room}`));
    k.on('peer-left', ({ room, peer }) => log(`${peer.user} left ${room}`));
    k.on('peer-connected', ({ peer }) => log(`connected to ${peer.user}`));
    k.on('message', ({ from, text }) => log(`${from.user}: ${text}`));
    k.on('track', ({ peer, stream }) => {
      const v = Object.assign(document.createElement('video'), { autoplay: true, playsInline: true, srcObject: stream });
      v.setAttribute('aria-label', `video from ${peer.user}`);
      document.body.append(v);
    });
    k.on('disconnected', () => log('reconnecting…'));
    k.on('reconnected', ({ resumed }) => log(resumed ? 'resumed' : 'new session'));
    const w = await k.connect();
    log(`signed in as ${w.user}`);
    room = $('room').value;
    const members = await k.join(room);
    log(`joined ${room} with ${members.length} others`);
  } catch (err) {
    log('error: ' + err.message);
  }
});

$('chat').addEventListener('submit', (e) => {
  e.preventDefault();
  if (!k || !room) return;
  const n = k.send(room, $('text').value);
  log(`me (to ${n}): ${$('text').value}`);
  $('text').value = '';
});

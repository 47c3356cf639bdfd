// Invite links of the web app: https://HOST/#room=ROOM&invite=TOKEN. A
// room's owner makes one (the server makes the token and keeps only its
// hash); whoever opens it joins the room with the token. The token is in
// the fragment, which the browser never sends to a server, so it stays out
// of every request line and access log; the app removes it from the
// address bar as soon as it has read it.

import { ApiError } from '/sdk/khadga.js';

const roomRE = /^[A-Za-z0-9_.-]{1,64}$/; // proto.ValidRoom
const inviteRE = /^[A-Za-z0-9_.-]{1,64}$/; // proto.ValidInvite

/** inviteLink is the link that joins room with token, on this server. */
export function inviteLink(room, token) {
  const u = new URL('/', location.href);
  u.hash = new URLSearchParams({ room, invite: token }).toString();
  return u.toString();
}

/**
 * takeInvite reads an invite link's fragment from the address bar, removes
 * it from there (and from the history entry), and returns {room, invite},
 * or null when the page was not opened from a valid invite link.
 */
export function takeInvite() {
  if (!location.hash) return null;
  const q = new URLSearchParams(location.hash.slice(1));
  const room = q.get('room') || '';
  const invite = q.get('invite') || '';
  if (!roomRE.test(room) || !inviteRE.test(invite)) return null;
  history.replaceState(null, '', location.pathname + location.search);
  return { room, invite };
}

/**
 * makeInviteLink makes a new invite link for room: it claims the room for
 * the signed-in user if nobody owns it, or makes a new token if the user
 * owns it (earlier links then stop working). It throws when someone else
 * owns the room.
 */
export async function makeInviteLink(session, room) {
  let settings = null;
  try {
    settings = await session.room(room);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
  }
  if (settings && settings.owner !== session.user) {
    throw new Error(`Room ${room} belongs to ${settings.owner}; ask them for an invite link.`);
  }
  const answer = settings ? await session.newInvite(room) : await session.claimRoom(room, { invite: true });
  return inviteLink(room, answer.invite_token);
}

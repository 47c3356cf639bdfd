// Sign-in half of the khadga SDK: the HTTP API (register, login, refresh,
// logout, WebSocket tickets) and Session, which keeps the tokens in memory
// and refreshes the access token before it expires, without a page reload.
//
// Tokens never go into URLs. The WebSocket is authenticated with a one-time
// ticket (POST /api/ws-ticket), which is the only credential that appears in
// a query string, and it is useless once redeemed or after 30 seconds.

/** ApiError is a non-2xx answer of the khadga HTTP API. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code || 'http_' + status;
    this.retryAfter = retryAfter || 0;
  }
}

// Bodies over this size are not read: no khadga answer comes close.
const maxAnswer = 64 * 1024;

/**
 * api sends a JSON body to path on server ('' means this page's origin)
 * with method (default POST; GET and DELETE send no body) and returns the
 * decoded answer (null for 204). It throws ApiError for an answer that
 * is not a success, and an Error "cannot reach the server (...)" (its
 * cause the browser's TypeError) when none came.
 */
export async function api(server, path, body, accessToken, method = 'POST') {
  const headers = {};
  if (accessToken) headers.Authorization = 'Bearer ' + accessToken;
  const init = { method, headers, credentials: 'omit', cache: 'no-store', referrerPolicy: 'no-referrer' };
  if (method !== 'GET' && method !== 'DELETE') {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body || {});
  }
  let res;
  try {
    res = await fetch((server || '') + path, init);
  } catch (e) {
    // No answer at all: the browser says only "Failed to fetch" (Chrome),
    // "NetworkError when attempting to fetch resource." (Firefox) or
    // "Load failed" (Safari).
    throw new Error(`cannot reach the server (${e.message})`, { cause: e });
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  if (text && text.length <= maxAnswer) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(res.status, e.code, e.message, Number(res.headers.get('Retry-After')) || 0);
  }
  return data;
}

/**
 * register creates an account. Username: 3-32 of a-z 0-9 _ - . ; password:
 * 10+ characters; email only where the server asks for one (it then sends a
 * link to confirm it before the first login).
 */
export function register(server, username, password, email) {
  const body = { username, password };
  if (email) body.email = email;
  return api(server, '/api/register', body);
}

/**
 * resendVerification mails a fresh verification link to an account whose
 * email address is not confirmed yet (the previous link stops working);
 * email, if given, corrects the address first. It takes the password, and
 * the server limits how often it may be asked (ApiError 429 with retryAfter).
 */
export function resendVerification(server, username, password, email) {
  const body = { username, password };
  if (email) body.email = email;
  return api(server, '/api/resend-verification', body);
}

/**
 * requestPasswordReset asks the server to mail a password-reset link to
 * the account's confirmed email address, where the server checks
 * addresses (404 otherwise). The answer is the same whether or not the
 * account exists or has a confirmed address; the server limits how often
 * one client address may ask (ApiError 429 with retryAfter).
 */
export function requestPasswordReset(server, username) {
  return api(server, '/api/password-reset', { username });
}

/**
 * resetPassword sets a new password with the token of a reset link (its
 * fragment holds reset=<username>&token=<token>); every sign-in of the
 * account ends. ApiError code 'link_invalid' when the link expired or the
 * password changed since it was sent (a reset with any link included).
 */
export function resetPassword(server, username, token, newPassword) {
  return api(server, '/api/password-reset/confirm', { username, token, new_password: newPassword });
}

/**
 * Session is a signed-in user: it holds the access and refresh tokens in
 * memory, refreshes them before the access token expires (refresh tokens
 * rotate), and mints WebSocket tickets. Events (EventTarget):
 *   'tokens'  detail {access_token, refresh_token, expires_in} after login or refresh
 *   'expired' detail {error} when a refresh failed for good (sign in again)
 */
export class Session extends EventTarget {
  /** @param {{server?: string}} [opts] */
  constructor(opts = {}) {
    super();
    this.server = opts.server || '';
    this.access = '';
    this.refreshToken = '';
    this.expiresAt = 0; // ms since epoch
    this.timer = 0;
    this.inflight = null;
  }

  /**
   * login signs in with a username and password, and opts.code (a TOTP or
   * recovery code) when the account has two-factor authentication: without
   * it such a login fails with ApiError code 'totp_required'.
   */
  static async login(username, password, opts = {}) {
    const s = new Session(opts);
    const body = { username, password };
    if (opts.code) body.code = opts.code;
    s.apply(await api(s.server, '/api/login', body));
    return s;
  }

  /** resume signs in again with a stored refresh token (it is rotated). */
  static async fromRefreshToken(refreshToken, opts = {}) {
    const s = new Session(opts);
    s.apply(await api(s.server, '/api/refresh', { refresh_token: refreshToken }));
    return s;
  }

  /** fromAccessToken wraps a token minted elsewhere (a bot token); it is not refreshed. */
  static fromAccessToken(access, opts = {}) {
    const s = new Session(opts);
    s.access = access;
    s.expiresAt = Date.now() + 3600e3;
    return s;
  }

  get user() {
    try {
      const b64 = this.access.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(b64)).sub || '';
    } catch { return ''; }
  }

  apply(t) {
    this.access = t.access_token;
    this.refreshToken = t.refresh_token;
    this.expiresAt = Date.now() + t.expires_in * 1000;
    this.schedule(t.expires_in);
    this.dispatchEvent(new CustomEvent('tokens', { detail: t }));
  }

  // schedule refreshes at 80% of the lifetime (at least 5 s from now), so a
  // slow network or a sleeping tab still has time before expiry.
  schedule(expiresIn) {
    clearTimeout(this.timer);
    if (!this.refreshToken) return;
    const ms = Math.max(5000, expiresIn * 800);
    this.timer = setTimeout(() => this.refresh().catch(() => {}), ms);
  }

  /** refresh rotates the tokens now. Concurrent calls share one request. */
  refresh() {
    if (!this.inflight) {
      this.inflight = api(this.server, '/api/refresh', { refresh_token: this.refreshToken })
        .then((t) => { this.apply(t); return t; })
        .catch((error) => {
          if (error instanceof ApiError && error.status === 401) {
            this.dispatchEvent(new CustomEvent('expired', { detail: { error } }));
          } else {
            this.schedule(10); // network trouble: try again soon
          }
          throw error;
        })
        .finally(() => { this.inflight = null; });
    }
    return this.inflight;
  }

  /** accessToken returns a token valid for at least 10 more seconds. */
  async accessToken() {
    if (this.refreshToken && this.expiresAt - Date.now() < 10000) await this.refresh();
    return this.access;
  }

  /** ticket mints a one-time WebSocket ticket. */
  async ticket() {
    let t;
    try {
      t = await api(this.server, '/api/ws-ticket', {}, await this.accessToken());
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401 || !this.refreshToken) throw e;
      await this.refresh(); // the server may have a different clock: one retry
      t = await api(this.server, '/api/ws-ticket', {}, this.access);
    }
    return t.ticket;
  }

  /** totpEnroll starts turning on two-factor authentication: {secret, otpauth_url, qr_png (a data: URL)}. */
  async totpEnroll() {
    return api(this.server, '/api/totp/enroll', {}, await this.accessToken());
  }

  /**
   * totpConfirm turns it on with the password and a first code, and resolves with {recovery_codes} (shown once).
   * The password is asked so that a stolen access token cannot bind the account to another authenticator.
   */
  async totpConfirm(password, code) {
    return api(this.server, '/api/totp/confirm', { password, code }, await this.accessToken());
  }

  /** totpDisable turns it off; it takes the password and a current (or recovery) code. */
  async totpDisable(password, code) {
    return api(this.server, '/api/totp/disable', { password, code }, await this.accessToken());
  }

  /**
   * changePassword sets a new password; it takes the current one. The
   * server signs out every other session of the account and answers with
   * fresh tokens for this one, which the session takes ('tokens' fires).
   */
  async changePassword(current, next) {
    this.apply(await api(this.server, '/api/password', { password: current, new_password: next }, await this.accessToken()));
  }

  /**
   * logoutOthers signs out every other sign-in of the account (a lost or
   * shared device): their sessions end, the password stays. It takes the
   * password, and this session takes the fresh tokens it answers with.
   */
  async logoutOthers(password) {
    this.apply(await api(this.server, '/api/logout-others', { password }, await this.accessToken()));
  }

  /**
   * deleteAccount deletes the signed-in user's account for good: every
   * sign-in ends, the rooms it owns are released, and its name is free to
   * be registered again. It takes the password, and the second factor's
   * code (or a recovery code) when that is on: ApiError code
   * 'totp_required' without one. The session forgets its tokens.
   */
  async deleteAccount(password, code) {
    const body = { password };
    if (code) body.code = code;
    await api(this.server, '/api/account/delete', body, await this.accessToken());
    clearTimeout(this.timer);
    this.access = this.refreshToken = '';
  }

  // ---- rooms with owners: settings are {room, owner, max_members, invite, created} ----

  /** room resolves with a room's settings; ApiError 404 (code not_found) when nobody owns it. */
  async room(name) {
    return api(this.server, roomPath(name), null, await this.accessToken(), 'GET');
  }

  /** myRooms resolves with {rooms: [settings], max_owned}: the rooms this user owns. */
  async myRooms() {
    return api(this.server, '/api/rooms', null, await this.accessToken(), 'GET');
  }

  /**
   * claimRoom makes this user the owner of a room nobody owns, or changes
   * one it owns: opts.maxMembers caps the people in it (0: the server's
   * limit), opts.invite requires an invite. The answer carries
   * invite_token when it made one (shown once: the server keeps a hash).
   */
  async claimRoom(name, opts = {}) {
    const body = { max_members: opts.maxMembers || 0, invite: !!opts.invite };
    return api(this.server, roomPath(name), body, await this.accessToken(), 'PUT');
  }

  /** newInvite makes a new invite token for a room this user owns (the old one stops working): {invite_token, ...}. */
  async newInvite(name) {
    return api(this.server, roomPath(name) + '/invite', {}, await this.accessToken());
  }

  /** releaseRoom gives up ownership (an admin may release any room). */
  async releaseRoom(name) {
    return api(this.server, roomPath(name), null, await this.accessToken(), 'DELETE');
  }

  /** logout revokes the refresh token family and forgets the tokens. */
  async logout() {
    clearTimeout(this.timer);
    const rt = this.refreshToken;
    this.access = this.refreshToken = '';
    if (rt) await api(this.server, '/api/logout', { refresh_token: rt }).catch(() => {});
  }
}

function roomPath(name) { return '/api/rooms/' + encodeURIComponent(name); }

// The admin status page: signs in (tokens stay in memory) and shows
// GET /api/admin/status, refreshed every 5 seconds.
import { Session } from './sdk/auth.js';

const $ = (id) => document.getElementById(id);
const labels = {
  uptime: 'Uptime', rooms: 'Rooms', members: 'Room members', sessions: 'Sessions',
  connections: 'WebSocket connections', signals_relayed: 'Signals relayed', turn_allocations: 'TURN allocations',
};

function definitions(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = k;
    dd.textContent = String(v);
    return [dt, dd];
  }));
}

function render(st) {
  definitions($('status-figures'), Object.entries(labels).map(([k, label]) => [label, st[k]]));
  definitions($('status-errors'), Object.entries(st.errors || {}).filter(([, n]) => n > 0));
  $('status-failures').replaceChildren(...(st.recent_failures || []).map((ev) => {
    const li = document.createElement('li');
    li.textContent = `${new Date(ev.time).toLocaleString()} ${ev.kind} ${ev.user || ''} ${ev.addr || ''}`;
    return li;
  }));
  $('status-time').textContent = `at ${new Date().toLocaleTimeString()}`;
}

async function poll(session) {
  const resp = await fetch('/api/admin/status', { headers: { Authorization: `Bearer ${session.access}` } });
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error ? body.error.message : resp.statusText);
  render(body);
}

async function onSubmit(e) {
  e.preventDefault();
  $('admin-error').textContent = '';
  try {
    const session = await Session.login($('admin-user').value.trim(), $('admin-password').value,
      { code: $('admin-code').value.trim() || undefined });
    $('admin-password').value = '';
    await poll(session);
    $('admin-signin').hidden = true;
    $('status').hidden = false;
    setInterval(() => poll(session).catch((err) => { $('status-time').textContent = err.message; }), 5000);
  } catch (err) {
    $('admin-error').textContent = err.message || String(err);
  }
}

$('admin-form').addEventListener('submit', onSubmit);

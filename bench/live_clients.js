// bench/live.lua's clients: N counter views, each with its own dead render and
// WebSocket, joined as the official client does; then click round trips.
//   node bench/live_clients.js PORT N CLICKS [PATH EVENT]   (prints "joined" then one JSON line)
const http = require('http');
const WebSocket = require('ws');
const [port, n, clicks] = [Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4] || 500)];
const viewPath = process.argv[5] || '/';
const eventName = process.argv[6] || 'inc';
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
function get(path) {
  return new Promise((res, rej) => http.get({ port, host: '127.0.0.1', path, agent }, (r) => {
    let b = ''; r.on('data', (d) => b += d); r.on('end', () => res({ body: b, cookie: (r.headers['set-cookie'] || [''])[0].split(';')[0] }));
  }).on('error', rej));
}
const unesc = (s) => s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
async function view(i) {
  const p = await get(viewPath);
  const id = p.body.match(/<div id="(phx-[0-9a-f]+)"/)[1];
  const session = unesc(p.body.match(/data-phx-session="([^"]*)"/)[1]);
  const csrf = p.body.match(/name="csrf-token" content="([^"]*)"/)[1];
  const ws = new WebSocket(`ws://127.0.0.1:${port}/live/websocket?_csrf_token=${encodeURIComponent(csrf)}&vsn=2.0.0`, { headers: { cookie: p.cookie } });
  const v = { ws, id, ref: 10, waiting: null };
  ws.on('message', (m) => { const f = JSON.parse(m); if (v.waiting && f[1] === String(v.waitRef)) { const w = v.waiting; v.waiting = null; w(f); } });
  await new Promise((res, rej) => { ws.on('open', res); ws.on('error', rej); });
  await send(v, 'phx_join', { url: `http://127.0.0.1:${port}${viewPath}`, params: { _csrf_token: csrf, _mounts: 0 }, session, static: null });
  return v;
}
function send(v, event, payload) {
  v.ref++;
  return new Promise((res) => { v.waiting = res; v.waitRef = v.ref; v.ws.send(JSON.stringify(['1', String(v.ref), 'lv:' + v.id, event, payload])); });
}
(async () => {
  const views = [];
  const batch = 50;
  for (let i = 0; i < n; i += batch) {
    const part = await Promise.all(Array.from({ length: Math.min(batch, n - i) }, (_, j) => view(i + j)));
    views.push(...part);
  }
  // join refs are "1" for all; the server echoes them
  console.log('joined');
  await new Promise((r) => setTimeout(r, 3000));
  const lat = [];
  for (let c = 0; c < clicks; c++) {
    const v = views[Math.floor(Math.random() * views.length)];
    const t0 = process.hrtime.bigint();
    await send(v, 'event', { type: 'click', event: eventName, value: { value: '' } });
    lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  console.log(JSON.stringify({ views: views.length, p50: q(0.5), p99: q(0.99) }));
  process.exit(0);
})().catch((e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });

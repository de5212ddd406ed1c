// The official `phoenix` client (npm) under Node.js against moonbeam's channel
// endpoint. node phoenix_client.js PORT prints one JSON line of observations.
const { Socket } = require('phoenix');
const WebSocket = require('ws');
const port = process.argv[2];
const url = `ws://127.0.0.1:${port}/socket`;
const r = {};
const deadline = setTimeout(() => { r.error = 'timeout'; done(); }, 20000);
function done() { clearTimeout(deadline); console.log(JSON.stringify(r)); process.exit(0); }
function sock(params, extra) {
  const s = new Socket(url, Object.assign({ transport: WebSocket, params, reconnectAfterMs: () => 100,
    rejoinAfterMs: () => 100 }, extra || {}));
  s.connect();
  return s;
}
const push = (ch, ev, p) => new Promise((res) => ch.push(ev, p)
  .receive('ok', (x) => res({ ok: x })).receive('error', (x) => res({ error: x }))
  .receive('timeout', () => res({ timeout: true })));
const join = (ch) => new Promise((res) => ch.join()
  .receive('ok', (x) => res({ ok: x })).receive('error', (x) => res({ error: x }))
  .receive('timeout', () => res({ timeout: true })));
const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

(async () => {
  // refused connect: the socket errors and never opens
  const bad = sock({ token: 'wrong' });
  r.bad = await new Promise((res) => { bad.onOpen(() => res('open')); bad.onError(() => res('error')); });
  bad.disconnect();

  let heartbeats = 0;
  const a = sock({ token: 'letmein', user: 'ada' }, { heartbeatIntervalMs: 100 });
  a.onMessage((m) => { if (m.topic === 'phoenix' && m.event === 'phx_reply') heartbeats++; });
  const b = sock({ token: 'letmein', user: 'bob' });
  const la = a.channel('room:lobby', { name: 'A' });
  const lb = b.channel('room:lobby', { name: 'B' });
  const seenA = [], seenB = [];
  la.on('shout', (m) => seenA.push(m));
  lb.on('shout', (m) => seenB.push(m));
  la.on('pushed', (m) => seenA.push({ pushed: m.n }));
  r.joinA = await join(la);
  r.joinB = await join(lb);
  r.ping = await push(la, 'ping', { x: 41 });
  r.refuse = await push(la, 'refuse', {});
  r.unknown = await push(la, 'whatever', {});
  r.later = await push(la, 'later', {});
  await push(lb, 'shout', { text: 'hi all' });
  await push(la, 'shout_from', { text: 'not me' });
  la.push('push_me', { n: 7 });
  await sleep(300);
  r.seenA = seenA; r.seenB = seenB;

  // a crash in one channel: phx_error for it, automatic rejoin; the other lives
  const crash = a.channel('room:crash', {});
  let joins = 0, errors = 0;
  crash.on('phx_error', () => errors++);
  crash.onError(() => {});
  await join(crash); joins++;
  crash.push('boom', {});
  await new Promise((res) => { const t = setInterval(() => { if (crash.state === 'joined' && errors > 0) { clearInterval(t); res(); } }, 20); });
  r.crash = { errors, rejoined: crash.state };
  r.afterCrash = await push(la, 'ping', { x: 1 });
  r.crashPing = await push(crash, 'ping', { x: 2 });

  r.unmatched = await join(a.channel('nope:1', {}));
  r.refused = await join(a.channel('room:refuse', {}));
  r.joincrash = await join(a.channel('room:joincrash', {}));
  const leaving = a.channel('room:leave', {});
  await join(leaving);
  r.leave = await new Promise((res) => leaving.leave().receive('ok', () => res('ok')).receive('timeout', () => res('timeout')));
  await sleep(400);
  r.heartbeats = heartbeats;
  r.connected = a.isConnected();
  a.disconnect(); b.disconnect();
  done();
})().catch((e) => { r.error = String(e && e.stack || e); done(); });

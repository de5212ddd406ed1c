// A WebSocket peer for spec/websocket_spec.lua, using the npm `ws` package:
// node ws_client.js <url>  runs the scenario and prints one JSON line of results.
const WebSocket = require('ws');
const url = process.argv[2];
const out = {};
const ws = new WebSocket(url);
const inbox = [];
let waiter = null;
ws.on('message', (data, isBinary) => {
  const m = { binary: isBinary, data: isBinary ? data : data.toString() };
  if (waiter) { const w = waiter; waiter = null; w(m); } else inbox.push(m);
});
const next = () => new Promise((resolve) => {
  if (inbox.length) resolve(inbox.shift()); else waiter = resolve;
});
const fail = (e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); };
setTimeout(() => fail('timeout'), 20000);
ws.on('error', fail);
ws.on('open', async () => {
  ws.send('hello');
  out.text = (await next()).data;
  ws.send(Buffer.from([0, 1, 2, 255]));
  const b = await next();
  out.binary = b.binary && Array.from(b.data).join(',');
  const big = Buffer.alloc(1 << 20, 7);
  ws.send(big);
  const bb = await next();
  out.big = bb.data.length === big.length && bb.data.equals(big);
  ws.send('frag', { fin: false });
  ws.send('ment', { fin: false });
  ws.send('ed', { fin: true });
  out.fragmented = (await next()).data;
  ws.ping('pingdata');
  out.pong = await new Promise((resolve) => ws.once('pong', (d) => resolve(d.toString())));
  ws.send('count');
  out.count = (await next()).data;
  ws.on('close', (code, reason) => {
    out.close_code = code;
    out.close_reason = reason.toString();
    console.log(JSON.stringify(out));
    process.exit(0);
  });
  ws.close(4000, 'done');
});

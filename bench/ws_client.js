// Load for bench/ws.lua: node bench/ws_client.js URL MODE ARG
//   rtt SECONDS   one connection, one 32-byte text message at a time: msgs/s, mean and p99 µs
//   idle N        opens N connections, each sends one message and waits; prints when all are open
const WebSocket = require('ws');
const [url, mode, arg] = process.argv.slice(2);
if (mode === 'rtt') {
  const ws = new WebSocket(url);
  const lat = [];
  const msg = 'x'.repeat(32);
  let t0, end;
  ws.on('open', () => { end = Date.now() + Number(arg) * 1000; t0 = process.hrtime.bigint(); ws.send(msg); });
  ws.on('message', () => {
    const now = process.hrtime.bigint();
    lat.push(Number(now - t0) / 1000);
    if (Date.now() >= end) {
      lat.sort((a, b) => a - b);
      const mean = lat.reduce((a, b) => a + b, 0) / lat.length;
      console.log(JSON.stringify({ n: lat.length, rate: lat.length / Number(arg), mean, p99: lat[Math.floor(lat.length * 0.99)] }));
      process.exit(0);
    }
    t0 = process.hrtime.bigint();
    ws.send(msg);
  });
} else {
  const n = Number(arg);
  let open = 0;
  const socks = [];
  const next = (i) => {
    if (i >= n) return;
    const ws = new WebSocket(url);
    socks.push(ws);
    ws.on('open', () => { ws.send('hi'); });
    ws.once('message', () => { open++; if (open === n) console.log('open ' + open); });
    ws.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });
    if (i % 200 === 199) setTimeout(() => next(i + 1), 20); else next(i + 1);
  };
  next(0);
}

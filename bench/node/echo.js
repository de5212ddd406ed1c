// bench/node/echo.js: net echo round trips on loopback, 1 connection, the
// peer of bench/io.lua's "rtt" (one process holds the server and the client).
const net = require("net");
const n = parseInt(process.argv[2] || "20000", 10);
const server = net.createServer((s) => {
  s.setNoDelay(true);
  s.on("data", (d) => s.write(d));
});
server.listen(0, "127.0.0.1", () => {
  const c = net.connect(server.address().port, "127.0.0.1", () => {
    c.setNoDelay(true);
    let left = 1000 + n, t0 = 0;
    c.on("data", () => {
      left--;
      if (left === n) t0 = process.hrtime.bigint();
      if (left === 0) {
        const us = Number(process.hrtime.bigint() - t0) / n / 1000;
        console.log("rtt_us " + us.toFixed(3));
        c.destroy();
        server.close();
        return;
      }
      c.write("x");
    });
    c.write("x");
  });
});

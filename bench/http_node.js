// The Node.js side of bench/http.lua: node bench/http_node.js PORT
const http = require('http');
http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '13' });
  res.end('Hello, World!');
}).listen(Number(process.argv[2] || 8092), '127.0.0.1', () => console.log('ready'));

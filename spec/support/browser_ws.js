// Headless Chromium (Debian's chromium through npm's playwright-core) opens a
// page served by moonbeam, which connects a WebSocket and exchanges messages.
//   node browser_ws.js http://127.0.0.1:PORT/page   prints one JSON line
const { chromium } = require('playwright-core');
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--headless=new'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(process.argv[2]);
    await page.waitForFunction(() => window.result && window.result.done, null, { timeout: 15000 });
    console.log(JSON.stringify(await page.evaluate(() => window.result)));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });

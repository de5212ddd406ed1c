// Headless Chromium (Debian's chromium via npm's playwright-core) drives the
// live examples through the official phoenix / phoenix_live_view bundles.
//   node spec/browser/live.js http://127.0.0.1:PORT   prints one JSON line
const path = require('path');
const { chromium } = require(path.join(__dirname, '../support/node_modules/playwright-core'));
const base = process.argv[2];
const r = { console: [] };
// generous: the machine is shared and Chromium starts slowly under load
const T = { timeout: 30000 };

async function open(browser, url) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') r.console.push(m.text()); });
  page.on('pageerror', (e) => r.console.push('pageerror: ' + e.message));
  await page.goto(url);
  await page.waitForSelector('[data-phx-main].phx-connected', T);
  return page;
}
const text = (page, sel) => page.textContent(sel);

async function counter(browser) {
  const page = await open(browser, base + '/');
  for (let i = 1; i <= 3; i++) {
    await page.click('#inc');
    await page.waitForFunction((n) => document.querySelector('#count').textContent === String(n), i, T);
  }
  await page.click('#add');
  await page.waitForFunction(() => document.querySelector('#count').textContent === '13', null, T);
  await page.click('#dec');
  await page.waitForFunction(() => document.querySelector('#count').textContent === '12', null, T);
  // the client sets the title after the DOM patch: wait for it rather than race it
  await page.waitForFunction(() => document.title === 'Count 12', null, T).catch(() => {});
  r.counter = { count: await text(page, '#count'), title: await page.title() };
  for (let i = 0; i < 13; i++) await page.click('#dec');
  await page.waitForSelector('#neg', T);
  r.counter.negative = await text(page, '#neg');
  await page.context().close();
}

async function form(browser) {
  const page = await open(browser, base + '/form');
  await page.type('#name', 'a');
  await page.waitForSelector('#name-error', T);
  r.form = { nameError: await text(page, '#name-error'), emailErrorShown: await page.$('#email-error') !== null };
  await page.type('#name', 'da');
  await page.waitForSelector('#name-error', { state: 'detached', timeout: 30000 });
  await page.type('#email', 'ada');
  await page.waitForSelector('#email-error', T);
  r.form.emailError = await text(page, '#email-error');
  r.form.disabled = await page.$eval('#save', (b) => b.disabled);
  await page.type('#email', '@example.org');
  await page.waitForSelector('#email-error', { state: 'detached', timeout: 30000 });
  await page.click('#save');
  await page.waitForSelector('#flash', T);
  r.form.flash = await text(page, '#flash');
  r.form.saved = await text(page, '#saved');
  await page.context().close();
}

async function chat(browser) {
  const p1 = await open(browser, base + '/chat?nick=ann');
  const p2 = await open(browser, base + '/chat?nick=bob');
  await p1.fill('#text', 'hello from ann');
  await p1.click('#send');
  await p2.waitForFunction(() => document.querySelectorAll('#messages .msg').length === 1, null, T);
  await p2.fill('#text', 'hi ann');
  await p2.press('#text', 'Enter');
  await p1.waitForFunction(() => document.querySelectorAll('#messages .msg').length === 2, null, T);
  await p2.waitForFunction(() => document.querySelectorAll('#messages .msg').length === 2, null, T);
  r.chat = {
    p1: await p1.$$eval('#messages .msg', (els) => els.map((e) => e.textContent)),
    p2: await p2.$$eval('#messages .msg', (els) => els.map((e) => e.textContent)),
    title: await p1.title(),
  };
  await p1.context().close();
  await p2.context().close();
}

async function dashboard(browser) {
  const page = await open(browser, base + '/dashboard');
  // PubSub updates arrive without any click, the hook draws the chart
  await page.waitForFunction(() => Number(document.querySelector('#updates').textContent) >= 3, null, T);
  await page.waitForFunction(() => (document.querySelector('#chart').dataset.points || '') !== '', null, T);
  // the chart as drawn before the reset (a reset empties the history)
  const chart = /^[\d,]+$/.test(await page.$eval('#chart', (e) => e.dataset.points));
  const before = Number(await text(page, '#requests'));
  await page.click('#reset');
  // the reply sets the count back to 0 (later ticks add at most 5 each)
  const reset = await page.waitForFunction((b) => Number(document.querySelector('#requests').textContent) < b,
    before, T).then(() => true, () => false);
  await page.click('#refresh');
  r.dashboard = {
    grew: before > 0, reset,
    memory: /^\d+(\.\d)? (B|KB|MB)$/.test(await text(page, '#memory')),
    updated: /^\d\d:\d\d:\d\d$/.test(await text(page, '#updated')),
    chart,
    title: await page.title(),
  };
  await page.context().close();
}

async function features(browser) {
  const page = await open(browser, base + '/features');
  const f = {};
  await page.waitForFunction(() => document.querySelector('#hook').dataset.reply === '42', null, T);
  await page.waitForFunction(() => document.querySelector('#hook').dataset.pong === '41', null, T);
  f.pings = await text(page, '#pings');
  await page.type('#key', 'ab');
  await page.press('#key', 'Enter');
  await page.waitForFunction(() => document.querySelector('#last-key').textContent !== '', null, T);
  f.key = await text(page, '#last-key');
  await page.focus('#focus');
  await page.waitForFunction(() => document.querySelector('#focus-state').textContent === 'focused', null, T);
  await page.focus('#key');
  await page.waitForFunction(() => document.querySelector('#focus-state').textContent === 'blurred', null, T);
  f.focus = 'ok';
  await page.type('#q', 'moon', { delay: 20 });
  await page.waitForFunction(() => document.querySelector('#query').textContent === 'moon', null, T);
  f.searches = Number(await text(page, '#searches'));
  await page.click('#patch');
  await page.waitForFunction(() => document.querySelector('#tab').textContent === 'Tab two', null, T);
  f.patchUrl = new URL(page.url()).search;
  f.patchTitle = await page.title();
  await page.click('#server-patch');
  await page.waitForFunction(() => document.querySelector('#tab').textContent === 'Tab three', null, T);
  f.serverPatchUrl = new URL(page.url()).search;
  await page.evaluate(() => { window.samePage = true; });
  await page.click('#nav');
  await page.waitForFunction(() => document.querySelector('#count') && document.querySelector('#count').textContent === '5', null, T);
  f.navigatePath = new URL(page.url()).pathname;
  f.noReload = await page.evaluate(() => window.samePage === true);
  await page.click('#inc');
  await page.waitForFunction(() => document.querySelector('#count').textContent === '6', null, T);
  f.afterNavigate = await text(page, '#count');
  r.features = f;
  await page.context().close();
}

// Stateful components: each counter counts by itself (phx-target=@myself),
// the view adds and removes them, "reset all" goes through send_update, and
// a removed component is destroyed in two steps (frames watched on the socket).
async function components(browser) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const frames = [];
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => frames.push('> ' + f.payload));
    ws.on('framereceived', (f) => frames.push('< ' + f.payload));
  });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') r.console.push(m.text()); });
  page.on('pageerror', (e) => r.console.push('pageerror: ' + e.message));
  await page.goto(base + '/components');
  await page.waitForSelector('[data-phx-main].phx-connected', T);
  const n = (id) => page.textContent('#n-' + id);
  const waitN = (id, v) => page.waitForFunction(([i, x]) => {
    const el = document.querySelector('#n-' + i); return el && el.textContent === x; }, [id, v], T);
  const c = {};
  c.attr = await page.getAttribute('#item-1', 'data-phx-component');
  await page.click('#inc-2');
  await waitN(2, '1');
  await page.click('#inc-2');
  await page.click('#inc-2');
  await waitN(2, '3');
  await page.waitForSelector('#many-2', T);
  c.first = [await n(1), await n(2)];
  await page.click('#add');
  await page.waitForSelector('#item-3', T);
  await page.click('#inc-3');
  await waitN(3, '1');
  c.afterAdd = [await n(1), await n(2), await n(3)];
  await page.click('#reset');
  await waitN(2, '0');
  await waitN(3, '0');
  await page.waitForSelector('#many-2', { state: 'detached', timeout: 30000 });
  await page.click('#remove');
  await page.waitForSelector('#item-3', { state: 'detached', timeout: 30000 });
  await page.waitForFunction(() => true, null, T);
  for (let i = 0; i < 100 && !frames.some((f) => f.startsWith('<') && f.includes('"cids":[3]')); i++) {
    await page.waitForTimeout(100);
  }
  c.willDestroy = frames.some((f) => f.startsWith('>') && f.includes('"cids_will_destroy"') && f.includes('[3]'));
  c.destroyedReply = frames.some((f) => f.startsWith('<') && f.includes('"cids":[3]'));
  await page.click('#inc-1');
  await waitN(1, '1');
  c.last = [await n(1), await n(2), await page.textContent('#total')];
  r.components = c;
  await ctx.close();
}

// A chat whose messages are a stream: appended from PubSub in both pages,
// kept by the DOM only; delete one message, clear one page's list.
async function streamChat(browser) {
  const p1 = await open(browser, base + '/stream_chat?nick=ann');
  const p2 = await open(browser, base + '/stream_chat?nick=bob');
  const msgs = (p) => p.$$eval('#messages .msg b', (els) => els.map((e) => e.parentElement.firstChild.textContent + e.nextSibling.textContent.trim()));
  const count = (p, n) => p.waitForFunction((k) => document.querySelectorAll('#messages .msg').length === k, n, T);
  await p1.fill('#text', 'one');
  await p1.click('#send');
  await count(p2, 2);
  await p2.fill('#text', 'two');
  await p2.press('#text', 'Enter');
  await count(p1, 3);
  await count(p2, 3);
  const s = { p1: await msgs(p1), p2: await msgs(p2) };
  s.ids = await p1.$$eval('#messages .msg', (els) => els.map((e) => e.id.replace(/^messages-.*/, 'messages-*')));
  await p1.click('#messages .msg:nth-child(2) .del');
  await count(p1, 2);
  s.afterDelete = await msgs(p1);
  await p1.click('#clear');
  await count(p1, 0);
  await p2.fill('#text', 'three');
  await p2.click('#send');
  await count(p1, 1);
  s.afterClear = await msgs(p1);
  await count(p2, 4);
  s.p2Last = await msgs(p2);
  s.received = await text(p1, '#count');
  r.streamChat = s;
  await p1.context().close();
  await p2.context().close();
}

// Flash across a redirect (the __phoenix_flash__ cookie, read once by the
// next dead render) and across a live navigation (the join's flash).
async function flash(browser) {
  const page = await open(browser, base + '/features');
  const f = {};
  await page.click('#flash-redirect');
  await page.waitForURL('**/features?tab=r', T);
  await page.waitForSelector('[data-phx-main].phx-connected', T);
  f.afterRedirect = await text(page, '#flash');
  f.tab = await text(page, '#tab');
  f.cookieLeft = (await page.context().cookies()).some((c) => c.name === '__phoenix_flash__');
  await page.reload();
  await page.waitForSelector('[data-phx-main].phx-connected', T);
  f.afterReload = await text(page, '#flash');
  await page.evaluate(() => { window.samePage = true; });
  await page.click('#flash-navigate');
  await page.waitForFunction(() => document.querySelector('#tab').textContent === 'Tab n', null, T);
  await page.waitForSelector('[data-phx-main].phx-connected', T);
  f.afterNavigate = await text(page, '#flash');
  f.noReload = await page.evaluate(() => window.samePage === true);
  r.flash = f;
  await page.context().close();
}

// The server restarts (the spec stops it once `marker` exists and starts it
// again on the same port): the client reconnects, mount rebuilds the state.
async function reconnect(browser) {
  const fs = require('fs');
  const page = await open(browser, base + '/');
  await page.click('#inc');
  await page.click('#inc');
  await page.waitForFunction(() => document.querySelector('#count').textContent === '2', null, T);
  await page.evaluate(() => { window.__mark = 1; });
  fs.writeFileSync(process.argv[4], 'restart');
  await page.waitForSelector('[data-phx-main].phx-error, [data-phx-main].phx-loading', { timeout: 30000 });
  r.reconnect = { lost: true };
  await page.waitForFunction(() => document.querySelector('#count').textContent === '0', null, { timeout: 20000 });
  await page.waitForSelector('[data-phx-main].phx-connected', T);
  await page.click('#inc');
  await page.waitForFunction(() => document.querySelector('#count').textContent === '1', null, T);
  r.reconnect.count = await text(page, '#count');
  r.reconnect.reloaded = await page.evaluate(() => window.__mark !== 1);
  await page.context().close();
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless=new', '--no-sandbox', '--disable-gpu'],
  });
  const only = process.argv[3];
  try {
    for (const [name, fn] of [['counter', counter], ['form', form], ['chat', chat], ['dashboard', dashboard], ['features', features], ['components', components], ['streamChat', streamChat], ['flash', flash],
    ['reconnect', reconnect]]) {
      if (only ? only !== name : name === 'reconnect') continue;
      try { await fn(browser); } catch (e) { r[name + 'Error'] = String(e.message || e).split('\n')[0]; }
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(r));
})().catch((e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });

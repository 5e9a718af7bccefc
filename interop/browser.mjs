// Drives Debian's Chromium (headless, through playwright-core) for
// pushpull's browser tests. Generic: it opens pages, evaluates expressions in
// them, takes screenshots, and reports everything a page logs, so that a Go
// test (browser_test.go) decides what a page must do and what counts as a
// failure.
//
// Input: one JSON object as the first argument,
//   {"executablePath": "/usr/bin/chromium"}
// then one command per stdin line, each with an "id" echoed in its answer:
//   {"id":1,"cmd":"open","page":"name","url":"http://…"}
//       a new browser context (its own storage, like a fresh profile) and a
//       page in it, loaded from url
//       ("viewport": {"width","height"} sets its size, 1280×720 by default)
//   {"id":2,"cmd":"eval","page":"name","expr":"…"}
//       evaluates a JavaScript expression in the page; a promise is awaited
//   {"id":3,"cmd":"act","page":"name","selector":"css","action":"…","value":"…"}
//       what a person does to the first element matching selector, waiting
//       for it to be actionable: "click", "fill" (value), "press" (value, a
//       key such as "Tab" or "Enter", with focus on the element), "text" (its
//       innerText, the answer), "wait" (until it is visible)
//   {"id":4,"cmd":"key","page":"name","value":"Tab"}   a key press wherever focus is
//   {"id":5,"cmd":"screenshot","page":"name","path":"/tmp/x.png"}
//   {"id":6,"cmd":"close","page":"name"}
//
// Output: one JSON line per event on stdout:
//   {"event":"ready","version"}                      the browser is running
//   {"event":"result","id","value"} or {"event":"result","id","error"}
//   {"event":"console","page","type","text","location"}  every console call
//   {"event":"pageerror","page","error"}             an uncaught exception
//   {"event":"requestfailed","page","method","url","failure"}
//   {"event":"emit","page","data"}   a page called window.harnessEmit(data)
// It exits, closing the browser, when stdin closes or on SIGTERM.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const input = JSON.parse(process.argv[2] ?? '{}');

// Playwright gives the browser a fresh --user-data-dir of its own and
// removes it on close; every page gets its own context on top of that.
const browser = await chromium.launch({
  executablePath: input.executablePath ?? '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
out({ event: 'ready', version: browser.version() });

const pages = new Map();

const open = async (name, url, viewport) => {
  if (pages.has(name)) throw new Error(`page ${name} is already open`);
  const context = await browser.newContext(viewport ? { viewport } : {});
  // Bound before any page script runs, so a page can report from its first line.
  await context.exposeFunction('harnessEmit', (data) => out({ event: 'emit', page: name, data }));
  const page = await context.newPage();
  pages.set(name, { context, page });
  page.on('console', (m) => {
    const { url, lineNumber } = m.location();
    out({ event: 'console', page: name, type: m.type(), text: m.text(), location: url ? `${url}:${lineNumber}` : '' });
  });
  page.on('pageerror', (e) => out({ event: 'pageerror', page: name, error: e.stack ?? String(e) }));
  page.on('requestfailed', (r) => out({
    event: 'requestfailed', page: name, method: r.method(), url: r.url(), failure: r.failure()?.errorText ?? '',
  }));
  const resp = await page.goto(url);
  if (!resp?.ok()) throw new Error(`GET ${url}: ${resp?.status()}`);
};

const pageOf = (name) => {
  const p = pages.get(name);
  if (!p) throw new Error(`no page ${name}`);
  return p;
};

const commands = {
  open: (c) => open(c.page, c.url, c.viewport),
  eval: (c) => pageOf(c.page).page.evaluate(c.expr),
  act: (c) => {
    const target = pageOf(c.page).page.locator(c.selector).first();
    switch (c.action) {
      case 'click': return target.click();
      case 'fill': return target.fill(c.value);
      case 'press': return target.press(c.value);
      case 'text': return target.innerText();
      case 'wait': return target.waitFor({ state: 'visible' });
      default: throw new Error(`unknown action ${c.action}`);
    }
  },
  key: (c) => pageOf(c.page).page.keyboard.press(c.value),
  screenshot: (c) => pageOf(c.page).page.screenshot({ path: c.path, fullPage: true }).then(() => c.path),
  close: async (c) => {
    const { context } = pageOf(c.page);
    pages.delete(c.page);
    await context.close();
  },
};

let closing = null;
const stop = () => {
  closing ??= browser.close().finally(() => process.exit(0));
  return closing;
};
process.on('SIGTERM', stop);

for await (const line of createInterface({ input: process.stdin })) {
  const c = JSON.parse(line);
  // Commands run concurrently: a long evaluation on one page must not hold
  // up another page.
  Promise.resolve().then(() => commands[c.cmd](c)).then(
    (value) => out({ event: 'result', id: c.id, value: value ?? null }),
    (error) => out({ event: 'result', id: c.id, error: String(error?.message ?? error) }),
  );
}
await stop();

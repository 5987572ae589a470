// Drives the bm2 dashboard in a real headless Chromium (playwright-core), for
// crates/bm2/tests/dashboard_browser.rs.
//
//   node dashboard.mjs <tokened dashboard URL> <app name> <output dir>
//
// Environment: BM2_TEST_TOOLS (directory whose node_modules holds playwright-core), CHROMIUM
// (browser executable, default /usr/bin/chromium), BM2_BIN and BM2_HOME (to stop and start the
// dashboard for the reconnection check), DASHBOARD_METRICS_PORT (its Prometheus port, kept on
// restart), DASHBOARD_SCREENSHOT_POINTS (chart samples to wait for before the screenshot,
// default 4).
//
// The app must print `tick <n>` on stdout with <n> growing across restarts, and a line holding
// `multiple of ten` on stderr now and then. Exits 0 when every check passed; otherwise prints
// what failed and exits 1. The browser is always closed.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const [url, app, outDir] = process.argv.slice(2);
if (!url || !app || !outDir) {
  console.error('usage: node dashboard.mjs <dashboard URL> <app name> <output dir>');
  process.exit(2);
}
const tools = process.env.BM2_TEST_TOOLS;
if (!tools || !process.env.BM2_BIN) {
  console.error('BM2_TEST_TOOLS (where playwright-core is installed) and BM2_BIN (the bm2 binary) must be set');
  process.exit(2);
}
const { chromium } = createRequire(path.join(tools, 'package.json'))('playwright-core');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const TIMEOUT = 20_000;
const RECONNECT_LIMIT_MS = 2_000;
const started = Date.now();

function log(msg) {
  console.log(`[dashboard ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
}

class Failure extends Error {}

function check(cond, msg) {
  if (!cond) throw new Failure(msg);
}

// Runs `what`; a Playwright timeout becomes a failure that says what was awaited.
async function step(what, fn) {
  log(what);
  try {
    return await fn();
  } catch (e) {
    if (e instanceof Failure) throw e;
    throw new Failure(`${what}: ${e.message.split('\n')[0]}`);
  }
}

let currentPage = null; // for a screenshot when a check fails

const testid = (id) => `[data-testid="${id}"]`;
const rowSel = `tr[data-testid="process-row"][data-name="${app}"]`;

// Largest `tick <n>` among the log lines shown now (0 when none).
async function maxTick(page) {
  return page.$$eval(testid('log-line'), (lines) =>
    lines.reduce((max, l) => {
      const m = /\btick (\d+)\b/.exec(l.textContent);
      return m ? Math.max(max, Number(m[1])) : max;
    }, 0),
  );
}

async function waitTickAbove(page, n, why) {
  await step(`wait for a log line "tick N" with N > ${n} (${why})`, () =>
    page.waitForFunction(
      ([sel, n]) =>
        [...document.querySelectorAll(sel)].some((l) => {
          const m = /\btick (\d+)\b/.exec(l.textContent);
          return m && Number(m[1]) > n;
        }),
      [testid('log-line'), n],
      { timeout: TIMEOUT },
    ),
  );
}

async function restarts(page) {
  const text = await page.locator(`${rowSel} ${testid('restarts')}`).textContent();
  const n = Number(text);
  check(Number.isInteger(n), `restart count "${text}" is not a number`);
  return n;
}

function bm2(args) {
  return execFileSync(process.env.BM2_BIN, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: TIMEOUT });
}

// Without the token the page loads but says how to sign in, and shows no live connection.
async function withoutToken(browser) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    await step('open the dashboard without the token', () => page.goto(new URL('/', url).href));
    await step('wait for the "not signed in" banner', () =>
      page.locator(testid('auth-error')).waitFor({ state: 'visible' }),
    );
    await page.locator(`${testid('live')}[data-state="unauthorized"]`).waitFor();
    check((await page.locator(testid('process-row')).count()) === 0, 'processes are shown without the token');
  } finally {
    await context.close();
  }
}

async function run(browser) {
  await withoutToken(browser);
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, deviceScaleFactor: 2 });
  const page = await context.newPage();
  currentPage = page;
  page.setDefaultTimeout(TIMEOUT);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`uncaught exception in the page: ${e.message}`));
  page.on('console', (m) => {
    const text = m.text();
    if (/Content Security Policy|Refused to/i.test(text)) problems.push(`CSP violation: ${text}`);
    // While the dashboard is stopped, connections fail: that is expected, nothing else is.
    else if (m.type() === 'error' && !/ERR_CONNECTION_(REFUSED|RESET|CLOSED)|ERR_EMPTY_RESPONSE|WebSocket connection to/.test(text)) {
      problems.push(`console error: ${text}`);
    }
  });
  // Dialogs are answered only where a step expects one.
  let expected = null; // {type, answer}
  page.on('dialog', async (d) => {
    if (expected && expected.type === d.type()) {
      await d.accept(expected.answer);
    } else {
      problems.push(`unexpected ${d.type()} dialog: ${d.message()}`);
      await d.dismiss();
    }
    expected = null;
  });

  await step(`open ${url.replace(/token=[^&]+/, 'token=…')}`, () => page.goto(url, { waitUntil: 'load' }));
  check(!new URL(page.url()).searchParams.has('token'), `the token stayed in the address bar: ${page.url()}`);
  await step('wait for the live connection indicator', () =>
    page.locator(`${testid('live')}[data-state="connected"]`).waitFor(),
  );
  check(await page.locator(testid('auth-error')).isHidden(), 'the "not signed in" banner is shown after signing in');

  const row = page.locator(rowSel);
  await step(`wait for the row of ${app}, online`, () =>
    page.locator(`${rowSel}[data-status="online"]`).waitFor(),
  );
  check((await row.count()) === 1, `expected one row for ${app}, found ${await row.count()}`);
  const id = await row.getAttribute('data-id');
  const online = Number(await page.locator(testid('online-count')).textContent());
  check(online >= 1, `the online card shows ${online}`);
  // Status badges are colour-coded: an errored app (if any) is counted and shown in red.
  const errored = await page.locator('tr[data-testid="process-row"][data-status="errored"]').count();
  check(
    Number(await page.locator(testid('errored-count')).textContent()) === errored,
    'the errored card does not count the errored rows',
  );
  if (errored) {
    const badge = page.locator(`tr[data-status="errored"] ${testid('status')}`).first();
    const [bg, fg] = await badge.evaluate((b) => [getComputedStyle(b).backgroundColor, getComputedStyle(b).color]);
    const onlineFg = await row.locator(testid('status')).evaluate((b) => getComputedStyle(b).color);
    check(fg !== onlineFg && bg !== 'rgba(0, 0, 0, 0)', `errored and online badges look alike (${fg} on ${bg})`);
  }

  await step('wait for two metrics samples in the chart', () =>
    page.waitForFunction((sel) => Number(document.querySelector(sel).dataset.points) >= 2, testid('chart'), {
      timeout: TIMEOUT,
    }),
  );
  const canvas = await page.$eval(testid('chart'), (c) => ({
    w: c.width,
    h: c.height,
    cw: c.clientWidth,
    ch: c.clientHeight,
    dpr: window.devicePixelRatio,
  }));
  check(
    canvas.cw > 0 && canvas.w === Math.round(canvas.cw * canvas.dpr) && canvas.h === Math.round(canvas.ch * canvas.dpr),
    `the chart canvas is not sized for devicePixelRatio ${canvas.dpr}: ${JSON.stringify(canvas)}`,
  );
  const platform = await page.locator('#sys-platform').textContent();
  check(platform && platform !== '–', `system platform not shown (${platform})`);
  const memBar = await page.$eval(testid('memory-bar'), (b) => b.style.width);
  check(/^\d+(\.\d+)?%$/.test(memBar) && parseFloat(memBar) > 0, `memory bar width is "${memBar}"`);

  // Logs and details of the app, as a user opens them.
  await step('open the logs of the app', () => row.locator(testid('action-logs')).click());
  await step('wait for its log lines', () =>
    page.waitForFunction(
      (sel) => [...document.querySelectorAll(sel)].some((l) => /\btick \d+/.test(l.textContent)),
      testid('log-line'),
      { timeout: TIMEOUT },
    ),
  );
  const atOpen = await maxTick(page);
  log(`largest tick shown when the logs opened: ${atOpen}`);
  check(
    (await page.locator(testid('logs-name')).textContent()).includes(app),
    'the log viewer does not name the selected app',
  );
  await step('wait for the detail panel', () =>
    page.locator(`${testid('detail')} [data-field="out_log"]`).waitFor(),
  );
  const script = await page.locator(`${testid('detail')} [data-field="script"]`).textContent();
  check(script && script !== '–', `detail panel: no script (${script})`);
  const envText = await page.locator(`${testid('detail')} [data-field="env"]`).textContent();
  check(/^\d+ variables?/.test(envText), `detail panel: env shows "${envText}"`);
  const detailId = await page.locator(`${testid('detail')} [data-field="id"]`).textContent();
  check(detailId === id, `detail panel shows id ${detailId}, the row is ${id}`);

  // Restart from the table.
  const before = await restarts(page);
  await step('click restart', () => row.locator(testid('action-restart')).click());
  await step(`wait for the restart count to go above ${before}`, () =>
    page.waitForFunction(
      ([sel, before]) => Number(document.querySelector(sel)?.textContent) > before,
      [`${rowSel} ${testid('restarts')}`, before],
      { timeout: TIMEOUT },
    ),
  );
  await step('wait for the success notice', () =>
    page.locator(testid('toast'), { hasText: `Restarted ${app}` }).first().waitFor(),
  );
  await page.locator(`${rowSel}[data-status="online"]`).waitFor();
  // A line of the old process may still be on its way: a second of ticks later, the line can
  // only come from the new one.
  const afterRestart = Math.max(await maxTick(page), atOpen) + 5;
  await waitTickAbove(page, afterRestart, 'printed after the page loaded, by the restarted app');
  const restartsNow = await restarts(page);
  await step('wait for the detail panel to show the restart', () =>
    page.locator(`${testid('detail')} [data-field="restarts"]`, { hasText: new RegExp(`^${restartsNow} `) }).waitFor(),
  );

  // stderr tab.
  await step('switch to the err tab', () => page.locator(testid('tab-err')).click());
  await step('wait for a stderr line', () =>
    page.locator(testid('log-line'), { hasText: 'multiple of ten' }).first().waitFor(),
  );
  check(
    (await page.locator(`${testid('log-line')}[data-stream="out"]`).count()) === 0,
    'stdout lines are shown in the err tab',
  );
  await page.locator(testid('tab-out')).click();
  await page.locator(testid('log-line'), { hasText: 'tick' }).first().waitFor();

  // The connection drops (dashboard stopped) and comes back (started again on the same port).
  {
    const port = new URL(url).port;
    const metricsPort = process.env.DASHBOARD_METRICS_PORT;
    const beforeDrop = await maxTick(page);
    await step('stop the dashboard (bm2 dashboard stop)', async () => bm2(['dashboard', 'stop']));
    await step('wait for the indicator to show the lost connection', () =>
      page.locator(`${testid('live')}:not([data-state="connected"])`).waitFor(),
    );
    const tStart = Date.now();
    await step('start the dashboard again', async () =>
      bm2(['dashboard', '--port', port, ...(metricsPort ? ['--metrics-port', metricsPort] : [])]),
    );
    const t0 = Date.now();
    await step('wait for the page to reconnect by itself', () =>
      page.locator(`${testid('live')}[data-state="connected"]`).waitFor({ timeout: 10_000 }),
    );
    // When the page saw the connection open (same machine, same clock).
    const since = Number(await page.locator(testid('live')).getAttribute('data-since'));
    check(since >= tStart, `the indicator's data-since (${since}) is older than the new dashboard (${tStart})`);
    const took = since - t0;
    log(`reconnected ${took} ms after the dashboard was back`);
    check(took <= RECONNECT_LIMIT_MS, `reconnecting took ${took} ms (more than ${RECONNECT_LIMIT_MS} ms)`);
    await page.locator(rowSel).waitFor();
    await waitTickAbove(page, beforeDrop, 'streamed after reconnecting');
    await step('wait for the detail panel after reconnecting', () =>
      page.locator(`${testid('detail')} [data-field="out_log"]`).waitFor(),
    );
  }

  // Theme toggle: flips the theme and remembers it.
  const theme0 = await page.evaluate(() => document.documentElement.dataset.theme || 'auto');
  await page.locator(testid('theme-toggle')).click();
  const theme1 = await page.evaluate(() => [document.documentElement.dataset.theme, localStorage.getItem('bm2-dashboard-theme')]);
  check(theme1[0] && theme1[0] === theme1[1] && theme1[0] !== theme0, `theme toggle: ${theme0} -> ${theme1}`);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(outDir, `dashboard-${theme1[0]}.png`), fullPage: true, scale: 'css' });
  await page.locator(testid('theme-toggle')).click();

  // Screenshot of the whole page, with some more chart samples and no notices over it.
  const points = Number(process.env.DASHBOARD_SCREENSHOT_POINTS || 4);
  await step(`wait for ${points} chart samples`, () =>
    page.waitForFunction(
      ([sel, n]) => Number(document.querySelector(sel).dataset.points) >= n,
      [testid('chart'), points],
      { timeout: TIMEOUT + points * 2500 },
    ),
  );
  await page.waitForFunction((sel) => !document.querySelector(sel), testid('toast'));
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.mouse.move(0, 0);
  await page.screenshot({ path: path.join(outDir, 'dashboard.png'), fullPage: true, scale: 'css' });
  log('saved dashboard.png');

  // Fields the detail JSON may carry (health, next cron restart, restart reasons) and fields
  // the page does not know yet are all shown. The daemon's answer is passed through, with
  // these fields added where it has none.
  const detailRoute = /\/api\/processes\/\d+$/;
  const soon = Date.now() + 3_600_000;
  await page.route(detailRoute, async (route) => {
    const res = await route.fetch();
    const list = await res.json();
    for (const d of list) {
      d.health ??= { state: 'failing', last_error: 'connection refused', consecutive_failures: 2 };
      d.next_cron ??= soon;
      d.restart_reasons ??= { manual: 1, memory: 2 };
      d.added_later_field = { answer: 42 };
    }
    await route.fulfill({ response: res, json: list });
  });
  await step('reload the details with extra fields', () => row.locator(testid('name')).click());
  await step('wait for the health section', () => page.locator(testid('detail-health')).waitFor());
  const health = await page.locator(`${testid('detail-health')} [data-field="health.state"]`).textContent();
  check(health && health !== '–', `health state shows "${health}"`);
  const cron = await page.locator(`${testid('detail')} [data-field="next_cron"]`).textContent();
  check(cron && cron !== '–', `next cron restart shows "${cron}"`);
  check(
    (await page.locator(`${testid('restart-reasons')} .pill`).count()) >= 1 ||
      (await page.locator(testid('restart-reasons')).textContent()).includes('none yet'),
    'restart reasons are not shown',
  );
  const extra = await page.locator(`${testid('detail-extra')} [data-field="added_later_field"]`).textContent();
  check(extra.includes('answer: 42'), `an unknown field shows "${extra}"`);
  await page.locator(testid('detail')).screenshot({ path: path.join(outDir, 'detail-extra-fields.png') });
  await page.unroute(detailRoute);

  // Scale the app by its name (prompt), then delete the new instance (confirm).
  const appRows = page.locator(rowSel);
  expected = { type: 'prompt', answer: '2' };
  await step(`scale ${app} to 2 from the table`, () => row.locator(testid('action-scale')).click());
  await step(`wait for a second row of ${app}`, () =>
    page.waitForFunction((sel) => document.querySelectorAll(sel).length === 2, rowSel, { timeout: TIMEOUT }),
  );
  await page.locator(testid('toast'), { hasText: `Scaled ${app} to 2` }).first().waitFor();
  const added = page.locator(`${rowSel}:not([data-id="${id}"])`);
  await step('wait for the new instance to be online', () =>
    page.locator(`${rowSel}:not([data-id="${id}"])[data-status="online"]`).waitFor(),
  );
  expected = { type: 'confirm' };
  await step('delete the new instance', () => added.locator(testid('action-delete')).click());
  await step('wait for its row to go', () =>
    page.waitForFunction((sel) => document.querySelectorAll(sel).length === 1, rowSel, { timeout: TIMEOUT }),
  );
  check((await appRows.getAttribute('data-id')) === id, 'the wrong instance was deleted');
  await page.locator(testid('toast'), { hasText: 'Deleted' }).first().waitFor();

  // A phone: the page must not scroll sideways; the table scrolls inside its box.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForFunction(() => document.querySelector('[data-testid="chart"]').clientWidth < 390);
  const phone = await page.evaluate(() => {
    const scroller = document.querySelector('.table-scroll');
    return {
      page: document.documentElement.scrollWidth,
      view: window.innerWidth,
      table: scroller.scrollWidth,
      box: scroller.clientWidth,
    };
  });
  check(phone.page <= phone.view, `on a phone the page is ${phone.page}px wide for a ${phone.view}px screen`);
  check(phone.table > phone.box, `on a phone the table does not scroll inside its box: ${JSON.stringify(phone)}`);
  await page.screenshot({ path: path.join(outDir, 'dashboard-phone.png'), fullPage: false });

  check(problems.length === 0, `problems in the page:\n  ${problems.join('\n  ')}`);
  writeFileSync(path.join(outDir, 'result.json'), JSON.stringify({ ok: true, id, atOpen, restartsBefore: before }));
}

async function main() {
  mkdirSync(outDir, { recursive: true });
  let browser;
  try {
    browser = await chromium.launch({ executablePath, headless: true, timeout: TIMEOUT });
  } catch (e) {
    console.error(`cannot start ${executablePath}: ${e.message.split('\n')[0]}\n(install it with: apt-get install chromium)`);
    return 1;
  }
  try {
    await run(browser);
    log('all checks passed');
    return 0;
  } catch (e) {
    console.error(`FAILED: ${e instanceof Failure ? e.message : e.stack}`);
    if (currentPage) {
      const shot = path.join(outDir, 'failure.png');
      await currentPage.screenshot({ path: shot, fullPage: true }).then(
        () => console.error(`page at the failure: ${shot}`),
        () => {},
      );
    }
    return 1;
  } finally {
    await browser.close();
  }
}

process.exit(await main());

// Drives the console in headless Chromium against a running server (tests/console_browser.rs
// starts it and passes its address): sign in, ask why not for cust_42, open the experiment
// chart, break a rule file and see the diagnostic at its line. Saves a screenshot of each.
// Every request the page makes must go to the server itself.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const base = process.env.ARBITER_URL;
const key = process.env.ARBITER_KEY;
const shots = process.env.SCREENSHOTS;
const browserPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
mkdirSync(shots, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({ executablePath: browserPath, args: ['--no-sandbox'] });
if (process.env.CONSOLE_SCALE) {
  await scale(browser);
  await browser.close();
  process.exit(0);
}

/// At scale (a tenant with 1,000 offers and 10,000 logged decisions): how long each view
/// takes from the click to its content, printed as JSON for BENCHMARKS.md.
async function scale(browser) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const timed = async (what, act, selector) => {
    const started = performance.now();
    await act();
    await page.waitForSelector(selector, { timeout: 120000 });
    return [what, Math.round(performance.now() - started)];
  };
  await page.goto(`${base}/console`);
  await page.fill('#key', key);
  await page.click('#signin-form button');
  await page.waitForSelector('#who:not([hidden])');
  await page.fill('#wn-customer', 'cust_42');
  await page.selectOption('#wn-channel', 'in_app');
  const times = [];
  times.push(await timed('why not (1,000 offers, explain)', () => page.click('#whynot-form button[type=submit]'), '#wn-removed'));
  const removed = await page.locator('#wn-removed tr').count();
  await page.click('#tabs button[data-tab=flows]');
  await page.click('#flow-list li');
  await page.waitForSelector('#flow-detail button');
  times.push(await timed('simulate the draft (10,000 logged decisions)',
    () => page.click('#flow-detail button:has-text("Simulate")'), '#flow-sim table'));
  const simulated = await page.locator('#flow-sim table tr').count();
  await page.click('#tabs button[data-tab=experiments]');
  times.push(await timed('experiment report and models', () => page.click('#exp-form button[type=submit]'), '#exp-chart'));
  console.log(JSON.stringify({ ms: Object.fromEntries(times), removedRows: removed - 1, simulatedOffers: simulated - 1 }));
}
const failures = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const origin = new URL(base).origin;
  const elsewhere = [];
  page.on('request', (r) => {
    if (new URL(r.url()).origin !== origin) elsewhere.push(r.url());
  });
  page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // The browser logs every refused API call too; those the page shows as the API's answer.
    const refusedCall = m.text().startsWith('Failed to load resource') && new URL(m.location().url).pathname.startsWith('/api/');
    if (m.type() === 'error' && !refusedCall) failures.push(`console error: ${m.text()} (${m.location().url})`);
  });

  // A wrong key is refused with the API's own answer.
  await page.goto(`${base}/console`);
  await page.fill('#key', 'arb_not-a-key');
  await page.click('#signin-form button');
  await page.waitForSelector('#error:not([hidden])');
  const refused = await page.textContent('#error');
  check(refused.includes('401'), `a wrong key shows the API's 401: ${refused}`);

  // Sign in: the tenant and role are shown.
  await page.fill('#key', key);
  await page.click('#signin-form button');
  await page.waitForSelector('#who:not([hidden])');
  const who = await page.textContent('#who');
  check(who.includes('default') && who.includes('admin'), `the header names the tenant and role: ${who}`);

  // Why not? cust_42 on in_app: the card first, the wealth offer removed by its rule.
  await page.fill('#wn-customer', 'cust_42');
  await page.selectOption('#wn-channel', 'in_app');
  await page.click('#whynot-form button[type=submit]');
  await page.waitForSelector('#wn-shown .card');
  const first = await page.getAttribute('#wn-shown .card', 'data-offer');
  check(first === 'Rewards credit card', `the card is shown first, got ${first}`);
  const wealth = page.locator('#wn-removed tr[data-offer="Wealth-management account"]');
  check((await wealth.count()) > 0, 'the wealth offer is listed as removed');
  const by = await wealth.first().textContent();
  check(by.includes('rule: Wealth'), `the wealth offer is removed by its rule: ${by}`);
  const legend = await page.textContent('#wn-shown .card .legend');
  check(legend.includes('propensity') && legend.includes('τ'), `the score shows its factors and τ: ${legend}`);
  await page.screenshot({ path: join(shots, 'why-not.png'), fullPage: true });

  // Experiments: the treated vs control chart with its intervals, the models' curves.
  await page.click('#tabs button[data-tab=experiments]');
  await page.click('#exp-form button[type=submit]');
  await page.waitForSelector('#exp-chart');
  const stats = await page.textContent('#exp-result');
  check(stats.includes('Newcombe') && stats.includes('treated'), `the experiment card: ${stats}`);
  await page.waitForSelector('#exp-models .qini-chart, #exp-models .hint');
  await page.screenshot({ path: join(shots, 'experiments.png'), fullPage: true });

  // Rule files: a typo in an attribute gives a diagnostic at its line as one types.
  await page.click('#tabs button[data-tab=rules]');
  await page.click('#rule-list li[data-name="cross_sell.rules"]');
  await page.waitForFunction(() => document.getElementById('rule-source').value.length > 0);
  const source = await page.inputValue('#rule-source');
  const line = source.split('\n').findIndex((l) => l.includes('customer.hasCreditCard == false')) + 1;
  check(line > 0, 'the rule file has the card rule');
  await page.fill('#rule-source', source.replace('customer.hasCreditCard == false', 'customer.hasCreditCrad == false'));
  await page.waitForSelector('#rule-diagnostics li');
  const diag = page.locator('#rule-diagnostics li').first();
  const at = Number(await diag.getAttribute('data-line'));
  const text = await diag.textContent();
  check(at === line, `the diagnostic is at line ${line}, got ${at}: ${text}`);
  check(text.includes('hasCreditCrad'), `the diagnostic names the attribute: ${text}`);
  check((await page.locator(`#rule-gutter span.bad[data-line="${line}"]`).count()) === 1, 'the gutter marks the line');
  await page.screenshot({ path: join(shots, 'rule-file.png'), fullPage: true });

  // Flows: the versions and a diff of the draft against the live version.
  await page.click('#tabs button[data-tab=flows]');
  await page.click('#flow-list li');
  await page.waitForSelector('#flow-versions table');
  await page.click('#flow-versions button:has-text("Diff")');
  await page.waitForSelector('#flow-diff .diff');
  await page.screenshot({ path: join(shots, 'flows.png'), fullPage: true });

  // A viewer sees the same views with what it may not do disabled.
  await page.click('#signout');
  await page.waitForSelector('#signin:not([hidden])');
  await page.fill('#key', process.env.ARBITER_VIEWER_KEY);
  await page.click('#signin-form button');
  await page.waitForSelector('#who:not([hidden])');
  check((await page.textContent('#who')).includes('viewer'), 'signed in as the viewer');
  await page.click('#tabs button[data-tab=flows]');
  await page.click('#flow-list li');
  await page.waitForSelector('#flow-detail button');
  check(await page.isDisabled('#flow-detail button:has-text("Publish the draft")'), 'a viewer cannot publish');
  await page.click('#tabs button[data-tab=rules]');
  await page.click('#rule-list li[data-name="cross_sell.rules"]');
  await page.waitForFunction(() => document.getElementById('rule-source').value.length > 0);
  check(await page.isDisabled('#rule-save'), 'a viewer cannot save a rule file');
  check(await page.getAttribute('#rule-source', 'readonly') !== null, 'a viewer reads rule files only');

  check(elsewhere.length === 0, `requests left the server: ${elsewhere.join(', ')}`);
} catch (e) {
  failures.push(e.message);
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join('\n'));
  process.exit(1);
}
console.log('console: every check passed');

// Drives Parse Dashboard in headless Chromium (playwright-core with the system's chromium) through the
// scenarios of tests/e2e/test_dashboard.py. The Python test seeds the data first and checks the outcome
// through the REST API afterwards; this script only works the user interface.
//   DASHBOARD_URL   e.g. http://127.0.0.1:PORT/dashboard/  (the app is named parsectl-e2e)
//   CHROMIUM        the browser executable (default /usr/bin/chromium)
//   ARTIFACTS_DIR   where the screenshots go
//   SCENARIOS       comma-separated names to run (default: all)
// Prints one JSON line: {"scenarios": {name: {"ok", "ms", "screenshots", "result" | "error"}}, "apiErrors": [...]}.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const DASHBOARD_URL = process.env.DASHBOARD_URL;
const APP = 'parsectl-e2e';
const ARTIFACTS_DIR = process.env.ARTIFACTS_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'dashboard-shots-'));
const TIMEOUT = 10000;

const apiErrors = []; // responses of the Parse server with status >= 400 while the dashboard ran

function appUrl(page) {
  return `${DASHBOARD_URL}apps/${APP}/${page}`;
}

async function shot(page, name, taken) {
  const file = path.join(ARTIFACTS_DIR, `${name}.png`);
  await page.screenshot({ path: file });
  taken.push(file);
}

async function open(page, where, readyText) {
  await page.goto(appUrl(where));
  await page.getByText(readyText, { exact: true }).first().waitFor({ timeout: TIMEOUT });
}

// The centre of the cell in the column headed `column` on the same line as `rowLocator`.
async function cellPoint(page, rowLocator, column) {
  const header = await page.locator('div[draggable="true"]').getByText(column, { exact: true }).first().boundingBox();
  const row = await rowLocator.boundingBox();
  if (!header || !row) throw new Error(`no cell for column ${column}`);
  return { x: header.x + header.width / 2, y: row.y + row.height / 2 };
}

async function editCell(page, point, text) {
  await page.mouse.dblclick(point.x, point.y);
  const editor = page.locator('textarea:focus, input:focus');
  await editor.waitFor({ timeout: TIMEOUT });
  await editor.fill(text);
  await editor.press('Enter');
}

const scenarios = {
  // The sidebar lists the classes with their counts.
  async classList(page, taken) {
    await page.goto(appUrl('browser'));
    // the counts arrive after the class list: wait for the dashboard's requests to finish, then read each
    // count until two reads agree
    await page.waitForLoadState('networkidle', { timeout: TIMEOUT });
    const names = ['_Role', '_User', 'Game'];
    const counts = {};
    for (const name of names) {
      const link = page.locator(`a[title="${name}"]`);
      await link.waitFor({ timeout: TIMEOUT });
      const span = link.locator('xpath=following-sibling::span').first();
      let last = null;
      for (let i = 0; i < 50; i += 1) {
        const text = ((await span.textContent()) || '').trim();
        if (/^\d+$/.test(text) && text === last) break;
        last = text;
        await page.waitForTimeout(100);
      }
      counts[name] = last;
    }
    await shot(page, 'class-list', taken);
    return { counts };
  },

  // The rows of Game are shown.
  async browseRows(page, taken) {
    await open(page, 'browser/Game', 'Game');
    for (const title of ['alpha', 'beta']) {
      await page.getByText(title, { exact: true }).first().waitFor({ timeout: TIMEOUT });
    }
    await shot(page, 'browse-game', taken);
    return { seen: ['alpha', 'beta'] };
  },

  // Add Row, fill its title, Add; then change the title of an existing row by double-clicking the cell.
  async addAndEditRow(page, taken) {
    await open(page, 'browser/Game', 'Game');
    await page.getByText('alpha', { exact: true }).first().waitFor({ timeout: TIMEOUT });
    await page.getByText('Add Row', { exact: true }).first().click();
    const addButton = page.getByRole('button', { name: 'Add', exact: true });
    await addButton.waitFor({ timeout: TIMEOUT });
    const newRow = addButton.locator('xpath=preceding-sibling::div[1]');  // the row above its Add/Cancel buttons
    await editCell(page, await cellPoint(page, newRow, 'title'), 'from-dashboard');
    await shot(page, 'new-row-filled', taken);
    await addButton.click();
    await page.getByText('from-dashboard', { exact: true }).first().waitFor({ timeout: TIMEOUT });
    await page.waitForTimeout(300);
    const beta = page.getByText('beta', { exact: true }).first();
    await editCell(page, await cellPoint(page, beta, 'title'), 'beta-edited');
    await page.getByText('beta-edited', { exact: true }).first().waitFor({ timeout: TIMEOUT });
    await page.waitForTimeout(500);
    await shot(page, 'rows-edited', taken);
    return { added: 'from-dashboard', edited: 'beta-edited' };
  },

  // Add a new column: Number column "level".
  async addColumn(page, taken) {
    await open(page, 'browser/Game', 'Game');
    await page.getByRole('button', { name: 'Add a new column' }).click();
    await page.locator('div[role="combobox"]').click();
    await page.getByRole('option', { name: 'Number', exact: true }).click();
    await page.locator('input[placeholder="Give it a good name..."]').fill('level');
    await shot(page, 'add-column-dialog', taken);
    await page.getByRole('button', { name: 'Add', exact: true }).last().click();
    await page.locator('div[draggable="true"]').getByText('level', { exact: true }).waitFor({ timeout: TIMEOUT });
    await shot(page, 'column-added', taken);
    return { column: 'level', type: 'Number' };
  },

  // Security > Class Level Permissions: take "Add field" away from the public, Save CLP.
  async changeClp(page, taken) {
    await open(page, 'browser/Game', 'Game');
    await page.getByText('Security', { exact: true }).first().click();
    await page.getByText('Class Level Permissions', { exact: true }).click();
    const publicRow = page.getByText('Public', { exact: true }).locator('xpath=..');
    await publicRow.getByText('Add field', { exact: true }).click();
    await shot(page, 'clp-dialog', taken);
    await page.getByRole('button', { name: 'Save CLP' }).click();
    await page.getByText('Edit Class Level Permissions').waitFor({ state: 'detached', timeout: TIMEOUT });
    await page.waitForTimeout(300);
    await shot(page, 'clp-saved', taken);
    return { publicAddField: false };
  },

  // Config: change the value of "greeting" and make it master-key-only.
  async editConfig(page, taken) {
    await open(page, 'config', 'greeting');
    await page.getByText('greeting', { exact: true }).click();
    await page.getByText('Edit parameter').waitFor({ timeout: TIMEOUT });
    await page.locator('textarea').fill('hello from the dashboard');
    await page.getByText('Requires master key?').locator('xpath=ancestor::div[contains(@style, "--modal-label-ratio")]')
      .getByText('Yes', { exact: true }).click();
    await shot(page, 'config-dialog', taken);
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await page.getByText('hello from the dashboard', { exact: true }).waitFor({ timeout: TIMEOUT });
    await shot(page, 'config-saved', taken);
    return { greeting: 'hello from the dashboard', masterKeyOnly: true };
  },

  // Jobs: run "tally" with parameters, then find it on the Job Status page.
  async runJob(page, taken) {
    await open(page, 'jobs', 'tally');
    await page.getByRole('button', { name: 'Run...' }).click();
    await page.getByText('Run tally', { exact: true }).waitFor({ timeout: TIMEOUT });
    await page.locator('textarea').fill('{"n": 7}');
    await shot(page, 'job-run-dialog', taken);
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    await page.getByText('Run tally', { exact: true }).waitFor({ state: 'detached', timeout: TIMEOUT });
    await page.waitForTimeout(500);
    await open(page, 'jobs/status', 'tally');
    await shot(page, 'job-status', taken);
    return { job: 'tally', params: { n: 7 } };
  },

  // Jobs > Schedule a job: a schedule of "tally" (stored through /cloud_code/jobs), then listed.
  async scheduleJob(page, taken) {
    await page.goto(appUrl('jobs/new'));
    await page.getByText('Pick a Job', { exact: true }).waitFor({ timeout: TIMEOUT });
    await page.locator('input[placeholder="Pick a good name…"]').fill('nightly tally');
    await page.locator('div[role="combobox"]').first().click();
    await page.getByRole('option', { name: 'tally', exact: true }).click();
    await page.locator('textarea').fill('{"n": 1}');
    await shot(page, 'job-schedule-form', taken);
    await page.getByRole('button', { name: 'Schedule', exact: true }).click();
    await page.waitForURL(/jobs\/scheduled/, { timeout: TIMEOUT });
    await page.getByText('nightly tally', { exact: true }).waitFor({ timeout: TIMEOUT });
    await shot(page, 'job-scheduled', taken);
    return { description: 'nightly tally', job: 'tally' };
  },
};

async function main() {
  if (!DASHBOARD_URL) throw new Error('set DASHBOARD_URL');
  const wanted = (process.env.SCENARIOS || '').split(',').filter(Boolean);
  const names = wanted.length ? wanted : Object.keys(scenarios);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // Without the background-networking flags chromium reaches out to the internet, which this machine
    // refuses; the dashboard itself only talks to 127.0.0.1.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 900 },
  });
  const report = { artifactsDir: ARTIFACTS_DIR, scenarios: {}, apiErrors };
  try {
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on('response', async response => {
      if (response.status() >= 400 && !response.url().startsWith(DASHBOARD_URL)) {
        let body = '';
        try { body = (await response.text()).slice(0, 300); } catch { /* gone */ }
        apiErrors.push({ method: response.request().method(), url: response.url(), status: response.status(), body });
      }
    });
    for (const name of names) {
      const taken = [];
      const started = Date.now();
      try {
        const result = await scenarios[name](page, taken);
        report.scenarios[name] = { ok: true, ms: Date.now() - started, screenshots: taken, result };
      } catch (err) {
        try { await shot(page, `${name}-failed`, taken); } catch { /* page gone */ }
        report.scenarios[name] = { ok: false, ms: Date.now() - started, screenshots: taken,
                                   error: String(err && err.stack || err) };
      }
    }
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(JSON.stringify(report));
}

main().catch(err => {
  console.error(err && err.stack || err);
  process.exit(1);
});

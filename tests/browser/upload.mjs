// Uploads a file through the web node's index page in headless Chromium with script
// turned off, as a browser without script does: choose the file, press Upload, the form
// posts and the 303 lands back on the index. Prints one JSON line with
// what it saw; exits non-zero if the upload did not come back to a list showing the video.
//
// usage: node upload.mjs BASE_URL FILE VIDEO_ID [TIMEOUT_MS=120000]
import { chromium } from 'playwright-core';
import { LAUNCH, watch } from './strict.mjs';

const [base, file, id, timeoutArg = '120000'] = process.argv.slice(2);
if (!base || !file || !id) {
  console.error('usage: node upload.mjs BASE_URL FILE VIDEO_ID [TIMEOUT_MS]');
  process.exit(2);
}
const timeout = Number(timeoutArg);
const browser = await chromium.launch(LAUNCH);
const result = { base, id, ok: false };
try {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const problems = watch(page);
  result.problems = problems;
  await page.goto(base + '/', { waitUntil: 'load', timeout });
  await page.setInputFiles('input[type=file][name=file]', file);
  const [response] = await Promise.all([
    page.waitForNavigation({ waitUntil: 'load', timeout }),
    page.click('button[type=submit]'),
  ]);
  result.landedOn = page.url();
  result.status = response ? response.status() : null;
  const links = await page.$$eval('a[href^="/videos/"]', (as) => as.map((a) => a.textContent));
  result.listed = links;
  result.ok = result.landedOn.replace(/\/$/, '') === base.replace(/\/$/, '') && links.includes(id) && problems.length === 0;
} catch (e) {
  result.error = String(e.message || e).split('\n')[0];
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);

// Time from opening a player page to its first video frame on screen, in headless
// Chromium: once with nothing cached anywhere, then RUNS times with a fresh browser
// profile (cold browser cache), then RUNS reloads in one profile (warm browser cache:
// the versioned, immutable content URLs come from the cache). The time is the page's
// performance.now() (ms since navigation start) when the first frame is presented
// (requestVideoFrameCallback). Prints one JSON line.
//
// usage: node first-frame.mjs PLAYER_URL [RUNS=5]
import { chromium } from 'playwright-core';
import { LAUNCH, watch } from './strict.mjs';

const [url, runsArg = '5'] = process.argv.slice(2);
if (!url) {
  console.error('usage: node first-frame.mjs PLAYER_URL [RUNS]');
  process.exit(2);
}
const runs = Number(runsArg);
const browser = await chromium.launch(LAUNCH);

// What each page saw that a user would count as broken (strict.mjs).
const watched = [];

async function firstFrame(page) {
  if (!page.watched) {
    page.watched = true;
    watched.push(watch(page));
  }
  await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 60000 });
  return page.evaluate(() => new Promise((resolve, reject) => {
    const v = document.querySelector('video');
    v.muted = true;
    v.requestVideoFrameCallback(() => resolve(performance.now()));
    v.play().catch(() => {});
    setTimeout(() => reject(new Error('no frame within 60 s')), 60000);
  }));
}

// The first-frame time, and how many content requests the browser cache answered
// (resource timing: nothing transferred but a body decoded).
async function timed(page) {
  const ms = await firstFrame(page);
  const counts = await page.evaluate(() => {
    const content = performance.getEntriesByType('resource').filter((e) => e.name.includes('/content/'));
    const cached = content.filter((e) => e.transferSize === 0 && e.decodedBodySize > 0).length;
    return { cached, network: content.length - cached };
  });
  return { ms: Math.round(ms), ...counts };
}

const result = { url, runs, cold: [], warm: [] };
try {
  // Fresh profile each time: nothing in the browser cache.
  for (let i = 0; i <= runs; i += 1) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const sample = await timed(page);
    if (i === 0) result.first = sample;
    else result.cold.push(sample);
    await context.close();
  }
  // One profile, loaded once, then reloaded: the browser cache is warm.
  const context = await browser.newContext();
  const page = await context.newPage();
  await firstFrame(page);
  for (let i = 0; i < runs; i += 1) {
    const fresh = await context.newPage();
    result.warm.push(await timed(fresh));
    await fresh.close();
  }
  const median = (xs) => {
    const s = xs.map((x) => x.ms).sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  result.coldMedian = median(result.cold);
  result.warmMedian = median(result.warm);
  result.problems = watched.flat();
  if (result.problems.length) throw new Error('the page had problems: ' + result.problems.join('; '));
  result.ok = true;
} catch (e) {
  result.error = String(e.message || e).split('\n')[0];
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);

// A viewer's whole journey with the pages' script, in headless Chromium: upload a file
// from the index (on a throttled link, so the progress bar has time to move), watch the
// processing state until ready, see the poster on the index, play the video with dash.js
// and read how many video qualities it offers, then delete it from the player page.
// Prints one JSON line with what it saw; exits non-zero if any step failed.
//
// usage: node viewer.mjs BASE_URL FILE VIDEO_ID [ADMIN_TOKEN] [TIMEOUT_MS=180000]
import { chromium } from 'playwright-core';
import { LAUNCH, watch } from './strict.mjs';

const [base, file, id, token = '', timeoutArg = '180000'] = process.argv.slice(2);
if (!base || !file || !id) {
  console.error('usage: node viewer.mjs BASE_URL FILE VIDEO_ID [ADMIN_TOKEN] [TIMEOUT_MS]');
  process.exit(2);
}
const timeout = Number(timeoutArg);
const browser = await chromium.launch(LAUNCH);
const result = { base, id, ok: false, step: 'start' };
try {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  // The one error answer on purpose: the deleted video's API entry, looked up at the end.
  const problems = watch(page, { allowed: ['/api/videos/' + encodeURIComponent(id)] });
  result.problems = problems;
  // Confirmations are accepted; the token prompt gets the token.
  const dialogs = [];
  page.on('dialog', (d) => {
    dialogs.push(d.type());
    d.accept(d.type() === 'prompt' ? token : undefined);
  });
  result.dialogs = dialogs;

  result.step = 'upload';
  await page.goto(base + '/', { waitUntil: 'load', timeout });
  // 2 MiB/s up: a few seconds of sending for a clip of a few MB.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 5, downloadThroughput: -1, uploadThroughput: 2 * 1024 * 1024,
  });
  await page.setInputFiles('#file', file);
  await page.click('#upload-form button[type=submit]');
  // Sample the bar and the phase until the video is ready (or the upload failed).
  const sent = new Set();
  const phases = [];
  const percents = [];
  const deadline = Date.now() + timeout;
  let last = {};
  while (Date.now() < deadline) {
    last = await page.evaluate(() => ({
      phase: document.getElementById('upload-status').dataset.phase || '',
      value: document.getElementById('upload-progress').value,
      text: document.getElementById('upload-text').textContent,
    }));
    if (phases[phases.length - 1] !== last.phase) phases.push(last.phase);
    if (last.phase === 'sending') sent.add(Math.round(last.value));
    if (last.phase === 'transcoding') percents.push(Math.round(last.value));
    if (last.phase === 'ready' || last.phase === 'failed') break;
    await page.waitForTimeout(40);
  }
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });
  result.phases = phases;
  result.sendingValues = [...sent].sort((a, b) => a - b);
  result.transcodePercents = [...new Set(percents)];
  result.finalText = last.text;
  if (last.phase !== 'ready') throw new Error('the upload did not get to ready: ' + last.text);

  result.step = 'index';
  // The list is refreshed by script; the card shows the poster.
  const poster = `.card[data-id="${id}"] img.poster`;
  await page.waitForSelector(poster, { timeout: 20000 });
  await page.waitForFunction((sel) => {
    const img = document.querySelector(sel);
    return img && img.complete && img.naturalWidth > 0;
  }, poster, { timeout: 20000 });
  result.poster = await page.$eval(poster, (img) => ({ alt: img.alt, width: img.naturalWidth, src: img.getAttribute('src') }));
  result.cardText = await page.$eval(`.card[data-id="${id}"]`, (c) => c.textContent);

  result.step = 'play';
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(base + '/videos/' + encodeURIComponent(id), { waitUntil: 'load', timeout });
  await page.evaluate(() => {
    const v = document.querySelector('video');
    v.muted = true;
    return v.play().catch(() => {});
  });
  // A play() refused before the stream was attached is tried again.
  const playing = page.waitForFunction(() => {
    const v = document.querySelector('video');
    if (v.paused) v.play().catch(() => {});
    const q = v.getVideoPlaybackQuality();
    return v.currentTime > 2 && q.totalVideoFrames > 0;
  }, null, { timeout: 90000, polling: 200 });
  try {
    await playing;
  } catch (e) {
    result.playback = await page.evaluate(() => {
      const v = document.querySelector('video');
      const ranges = [];
      for (let i = 0; i < v.buffered.length; i += 1) ranges.push([v.buffered.start(i), v.buffered.end(i)]);
      return {
        currentTime: v.currentTime, paused: v.paused, readyState: v.readyState,
        networkState: v.networkState, error: v.error && v.error.message, buffered: ranges,
      };
    });
    throw e;
  }
  Object.assign(result, await page.evaluate(() => {
    const v = document.querySelector('video');
    const list = window.player.getBitrateInfoListFor('video') || [];
    return {
      currentTime: v.currentTime,
      videoPoster: v.getAttribute('poster'),
      qualities: list.map((q) => ({ height: q.height, bitrate: q.bitrate })),
      qualityText: document.getElementById('quality').textContent,
    };
  }));

  result.step = 'delete';
  await Promise.all([
    page.waitForURL(base.replace(/\/$/, '') + '/', { timeout: 60000 }),
    page.click('#delete'),
  ]);
  result.listedAfterDelete = await page.$$eval('.card', (cs) => cs.map((c) => c.dataset.id));
  result.apiAfterDelete = await page.evaluate(async (vid) => (await fetch('/api/videos/' + encodeURIComponent(vid))).status, id);
  result.step = 'done';
  if (problems.length) throw new Error('the page had problems: ' + problems.join('; '));
  result.ok = true;
} catch (e) {
  result.error = String(e.message || e).split('\n')[0];
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);

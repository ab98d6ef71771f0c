// The upload page's caption chooser: a video and a WebVTT file with a language are
// chosen on the index page; the page uploads the video and, once it plays, PUTs the track
// (answering the admin-token prompt). Then the API lists the track and the player page
// offers it as a text track whose cue is loaded. Prints one JSON line; exits non-zero if
// any step failed.
//
// usage: node upload-captions.mjs BASE_URL VIDEO VTT VIDEO_ID LANG TOKEN [TIMEOUT_MS=180000]
import { chromium } from 'playwright-core';
import { LAUNCH, watch } from './strict.mjs';

const [base, video, vtt, id, lang, token, timeoutArg = '180000'] = process.argv.slice(2);
if (!base || !video || !vtt || !id || !lang || !token) {
  console.error('usage: node upload-captions.mjs BASE_URL VIDEO VTT VIDEO_ID LANG TOKEN [TIMEOUT_MS]');
  process.exit(2);
}
const timeout = Number(timeoutArg);
const result = { base, id, lang, ok: false, step: 'start' };

const browser = await chromium.launch(LAUNCH);
try {
  const page = await browser.newPage({ viewport: { width: 1024, height: 800 } });
  const problems = watch(page);
  result.problems = problems;
  const prompts = [];
  page.on('dialog', (dialog) => {
    prompts.push(dialog.type() + ': ' + dialog.message());
    dialog.accept(token);
  });
  result.prompts = prompts;
  const captionPuts = [];
  page.on('response', (response) => {
    if (response.request().method() === 'PUT' && response.url().includes('/captions/')) {
      captionPuts.push({ url: new URL(response.url()).pathname, status: response.status() });
    }
  });
  result.captionPuts = captionPuts;

  result.step = 'upload';
  await page.goto(base + '/', { waitUntil: 'load', timeout });
  await page.setInputFiles('#file', video);
  await page.setInputFiles('#captions', vtt);
  await page.fill('#captions-lang', lang);
  await page.click('#upload-form button[type=submit]');
  await page.waitForFunction(
    () => ['ready', 'failed'].includes(document.getElementById('upload-status').dataset.phase),
    null, { timeout, polling: 100 },
  );
  result.phase = await page.evaluate(() => document.getElementById('upload-status').dataset.phase);
  if (result.phase !== 'ready') throw new Error('the upload did not get to ready');
  // The track is sent when the video first plays; wait for the page to say how it went.
  await page.waitForFunction(() => document.getElementById('captions-status').textContent !== '',
    null, { timeout: 30000, polling: 100 });
  result.captionsStatus = await page.evaluate(() => document.getElementById('captions-status').textContent);

  result.step = 'api';
  result.api = await page.evaluate(async (id) => {
    const response = await fetch('/api/videos/' + encodeURIComponent(id), { cache: 'no-store' });
    return response.json();
  }, id);

  result.step = 'player';
  await page.goto(base + '/videos/' + encodeURIComponent(id), { waitUntil: 'load', timeout });
  result.tracks = await page.evaluate(() => [...document.querySelectorAll('video track')].map((t) => ({
    kind: t.kind, srclang: t.srclang, src: new URL(t.src).pathname,
  })));
  // The player's CC button shows the track, which makes Chromium load it; its cues
  // prove the file served is ours.
  await page.click('#cc');
  result.ccPressed = await page.getAttribute('#cc', 'aria-pressed');
  await page.waitForFunction((lang) => [...document.querySelector('video').textTracks]
    .some((t) => t.language === lang && t.cues && t.cues.length > 0), lang, { timeout: 30000, polling: 100 });
  result.textTracks = await page.evaluate(() => [...document.querySelector('video').textTracks].map((t) => ({
    kind: t.kind, language: t.language, cues: t.cues ? [...t.cues].map((c) => c.text) : [],
  })));
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

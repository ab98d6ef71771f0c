// A resumable upload from the index page (tus-js-client) whose connection is cut once
// half of the file has gone through: the browser talks to the web node through a TCP
// proxy that forwards exactly half of the first PATCH's body, then ends the request
// towards the server, resets the browser's connection and refuses connections for a
// second (a network blip). The page must resume by itself: HEAD for the server's
// offset, PATCH from there. Then the video must get to ready and play. The proxy counts
// the PATCH body bytes the browser sent, so the bytes sent twice are measured on the
// wire. Prints one JSON line; exits non-zero if any step failed.
//
// MODE `reload`: after the cut the proxy keeps refusing every tus request (the page
// cannot go on by itself), the page is loaded again, must name the unfinished upload,
// and the same file is chosen again: the page must ask the server's offset (HEAD) and
// send only the rest, without creating a new upload.
//
// usage: node tus.mjs BASE_URL FILE VIDEO_ID [TIMEOUT_MS=180000] [MODE=blip|reload]
import fs from 'node:fs';
import net from 'node:net';
import { chromium } from 'playwright-core';
import { LAUNCH, watch } from './strict.mjs';

const [base, file, id, timeoutArg = '180000', mode = 'blip'] = process.argv.slice(2);
if (!base || !file || !id) {
  console.error('usage: node tus.mjs BASE_URL FILE VIDEO_ID [TIMEOUT_MS]');
  process.exit(2);
}
const timeout = Number(timeoutArg);
const size = fs.statSync(file).size;
const cutAt = Math.floor(size / 2);
const target = new URL(base);
const result = { base, id, size, cutAt, mode, ok: false, step: 'start' };
const reloading = mode === 'reload';

// --- the proxy that cuts the first PATCH at half ---------------------------------------
let cut = false;
let cutUrl = '';
let blackoutUntil = 0;
// Reload mode: tus requests are refused from the cut until the file is chosen again.
let refuseTus = false;
let patchBytesFromBrowser = 0;
const BLACKOUT_MS = 1000;
// Every open connection, so the blip breaks them all (not only the PATCH's).
const open = new Set();
const proxy = net.createServer((client) => {
  if (Date.now() < blackoutUntil) {
    client.destroy();
    return;
  }
  const server = net.connect(Number(target.port), target.hostname);
  const pair = { client, server };
  open.add(pair);
  client.on('close', () => open.delete(pair));
  // Per connection: within a PATCH body, how many body bytes are still to come.
  let head = '';
  let bodyLeft = 0;
  let bodySeen = 0;
  let patch = false;
  client.on('data', (chunk) => {
    let data = chunk;
    while (data.length) {
      if (bodyLeft === 0) {
        // Reading a request's head (kept until its blank line).
        head += data.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) {
          server.write(data);
          return;
        }
        const headBytes = Buffer.byteLength(head.slice(0, end + 4), 'latin1');
        const already = Buffer.byteLength(head, 'latin1') - data.length;
        const inThisChunk = headBytes - already;
        server.write(data.subarray(0, inThisChunk));
        const lines = head.slice(0, end);
        if (refuseTus && lines.split(' ')[1].startsWith('/api/tus/')) {
          client.destroy();
          server.destroy();
          return;
        }
        patch = lines.startsWith('PATCH ');
        if (patch) cutUrl = lines.split(' ')[1];
        const length = /\r\ncontent-length:\s*(\d+)/i.exec(lines);
        bodyLeft = length ? Number(length[1]) : 0;
        bodySeen = 0;
        head = '';
        data = data.subarray(inThisChunk);
        continue;
      }
      const take = Math.min(bodyLeft, data.length);
      let part = data.subarray(0, take);
      if (patch) patchBytesFromBrowser += part.length;
      if (patch && !cut && bodySeen + part.length >= cutAt) {
        part = part.subarray(0, cutAt - bodySeen);
        cut = true;
        if (reloading) refuseTus = true;
        else blackoutUntil = Date.now() + BLACKOUT_MS;
        result.cutDone = new Date().toISOString();
        server.end(part);
        client.destroy();
        for (const other of open) {
          if (other !== pair) {
            other.client.destroy();
            other.server.destroy();
          }
        }
        return;
      }
      server.write(part);
      bodySeen += part.length;
      bodyLeft -= take;
      data = data.subarray(take);
    }
  });
  server.on('data', (chunk) => client.write(chunk));
  server.on('end', () => client.end());
  client.on('end', () => server.end());
  client.on('error', () => server.destroy());
  server.on('error', () => client.destroy());
  client.on('close', () => server.destroy());
});
await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
const front = `http://127.0.0.1:${proxy.address().port}`;

const browser = await chromium.launch(LAUNCH);
try {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  // The failures on purpose: the PATCH the proxy cut and the tries during the blip, as
  // Chromium reports them (a failed request and its console line). Should Chromium send
  // the cut PATCH again by itself after the blip, the server answers 409 (its offset
  // moved on) and the page asks for the offset and resumes from there.
  const tolerated = [];
  const problems = watch(page, {
    tolerate: (url, what) => {
      const ours = cut && url.includes('/api/tus/') && ['failed', 'console', 409].includes(what)
        && (reloading ? refuseTus : Date.now() < blackoutUntil + 5000);
      if (ours && tolerated.length < 8) {
        tolerated.push(what);
        return true;
      }
      return false;
    },
  });
  result.tolerated = tolerated;
  result.problems = problems;
  const patchOffsets = [];
  let headOffset = null;
  let creations = 0;
  page.on('request', (request) => {
    if (request.method() === 'PATCH' && request.url().includes('/api/tus/')) {
      patchOffsets.push(Number(request.headers()['upload-offset']));
    }
    if (request.method() === 'POST' && request.url().includes('/api/tus/')) creations += 1;
  });
  page.on('response', (response) => {
    if (response.request().method() === 'HEAD' && response.url().includes('/api/tus/')) {
      headOffset = Number(response.headers()['upload-offset']);
    }
  });

  result.step = 'upload';
  await page.goto(front + '/', { waitUntil: 'load', timeout });
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 5, downloadThroughput: -1, uploadThroughput: 1024 * 1024,
  });
  // Every value the page shows as sent, in order.
  await page.evaluate(() => {
    window.sentLog = [];
    const bar = document.getElementById('upload-progress');
    new MutationObserver(() => window.sentLog.push(Number(bar.dataset.sent)))
      .observe(bar, { attributes: true, attributeFilter: ['data-sent'] });
  });
  await page.setInputFiles('#file', file);
  await page.click('#upload-form button[type=submit]');
  if (reloading) {
    // Cut, and the page's own retry refused: the upload cannot go on in this page.
    await page.waitForFunction(() => document.getElementById('upload-text').textContent.includes('resuming'),
      null, { timeout, polling: 50 });
    if (!cut) throw new Error('the page retried before the proxy cut the upload');
    result.patchOffsetsBeforeReload = [...patchOffsets];
    patchOffsets.length = 0;
    headOffset = null;
    result.step = 'reload';
    await page.reload({ waitUntil: 'load', timeout });
    const note = page.locator('#resume-note');
    await note.waitFor({ state: 'visible', timeout: 10000 });
    result.resumeNote = await note.textContent();
    refuseTus = false;
    await page.setInputFiles('#file', file);
    await page.click('#upload-form button[type=submit]');
  }
  const phases = [];
  const deadline = Date.now() + timeout;
  let last = {};
  while (Date.now() < deadline) {
    last = await page.evaluate(() => ({
      phase: document.getElementById('upload-status').dataset.phase || '',
      text: document.getElementById('upload-text').textContent,
    }));
    if (phases[phases.length - 1] !== last.phase) phases.push(last.phase);
    if (last.phase === 'ready' || last.phase === 'failed') break;
    await page.waitForTimeout(50);
  }
  result.phases = phases;
  result.finalText = last.text;
  result.cut = cut;
  result.patchOffsets = patchOffsets;
  result.headOffset = headOffset;
  result.creations = creations;
  // A finished upload leaves nothing to resume behind.
  result.storedForResuming = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('tus::')).length);
  const sentLog = reloading ? [] : await page.evaluate(() => window.sentLog);
  // Before the cut the count rises; the resumed PATCH starts again at the server's offset.
  const drop = sentLog.findIndex((v, i) => i > 0 && v < sentLog[i - 1]);
  const before = drop < 0 ? sentLog.filter((v) => v <= cutAt) : sentLog.slice(0, drop);
  const sentBeforeCut = Math.max(0, ...before);
  result.sentBeforeCut = sentBeforeCut;
  result.resentByProgress = Math.max(0, sentBeforeCut - (headOffset ?? 0));
  result.patchBytesFromBrowser = patchBytesFromBrowser;
  result.resentBytes = patchBytesFromBrowser - size;
  result.bytesAfterResume = size - (patchOffsets[patchOffsets.length - 1] ?? 0);
  if (!cut) throw new Error('the proxy never cut the upload');
  if (last.phase !== 'ready') throw new Error('the upload did not get to ready: ' + last.text);
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });

  result.step = 'play';
  await page.goto(front + '/videos/' + encodeURIComponent(id), { waitUntil: 'load', timeout });
  await page.waitForFunction(() => {
    const v = document.querySelector('video');
    v.muted = true;
    if (v.paused) v.play().catch(() => {});
    return v.currentTime > 1.5 && v.getVideoPlaybackQuality().totalVideoFrames > 0;
  }, null, { timeout: 90000, polling: 200 });
  result.currentTime = await page.evaluate(() => document.querySelector('video').currentTime);
  result.step = 'done';
  if (problems.length) throw new Error('the page had problems: ' + problems.join('; '));
  result.ok = true;
} catch (e) {
  result.error = String(e.message || e).split('\n')[0];
} finally {
  await browser.close();
  proxy.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);

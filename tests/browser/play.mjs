// Opens a Tritontube player page in headless Chromium, plays the video muted and waits
// until playback passes a given time with decoded frames. Prints one JSON line with what
// it saw; exits non-zero if playback did not get there.
//
// usage: node play.mjs URL [SECONDS=3] [SCREENSHOT.png] [TIMEOUT_MS=60000]
import { chromium } from 'playwright-core';
import { LAUNCH, watch } from './strict.mjs';

const [url, secondsArg = '3', screenshot, timeoutArg = '60000'] = process.argv.slice(2);
if (!url) {
  console.error('usage: node play.mjs URL [SECONDS] [SCREENSHOT.png] [TIMEOUT_MS]');
  process.exit(2);
}
const target = Number(secondsArg);
const timeout = Number(timeoutArg);

const browser = await chromium.launch(LAUNCH);
let result = { url, ok: false };
try {
  const page = await browser.newPage({ viewport: { width: 1024, height: 720 } });
  const problems = watch(page);
  const response = await page.goto(url, { waitUntil: 'load', timeout });
  result.status = response ? response.status() : null;
  await page.evaluate(() => {
    const v = document.querySelector('video');
    v.muted = true;
    return v.play().catch(() => {});
  });
  try {
    await page.waitForFunction(
      (t) => {
        const v = document.querySelector('video');
        const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
        return v.currentTime > t && q && q.totalVideoFrames > 0;
      },
      target,
      { timeout, polling: 200 },
    );
    result.ok = true;
  } catch (e) {
    result.error = String(e.message || e).split('\n')[0];
  }
  Object.assign(result, await page.evaluate(() => {
    const v = document.querySelector('video');
    const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {};
    return {
      currentTime: v.currentTime,
      duration: v.duration,
      videoWidth: v.videoWidth,
      videoHeight: v.videoHeight,
      totalVideoFrames: q.totalVideoFrames ?? 0,
      droppedVideoFrames: q.droppedVideoFrames ?? 0,
      mediaError: v.error ? v.error.message || String(v.error.code) : null,
    };
  }));
  result.problems = problems;
  if (problems.length) {
    result.ok = false;
    result.error = 'the page had problems: ' + problems.join('; ');
  }
  if (screenshot) {
    await page.screenshot({ path: screenshot });
    result.screenshot = screenshot;
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);

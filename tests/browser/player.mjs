// The player as people use it, in headless Chromium at a phone's width (390 px) and with
// the keyboard alone: k plays, → seeks 5 s, m mutes, c shows the captions, the quality
// menu opens from the keyboard and pins a rendition; the seek bar shows the storyboard
// tile under the pointer; volume and position are remembered and the page offers to
// resume. Screenshots (PNG) of the open quality menu, the seek preview and the captions
// go to SHOT_DIR. Prints one JSON line; exits non-zero if any step failed.
//
// usage: node player.mjs PLAYER_URL SHOT_DIR [TIMEOUT_MS=120000]
import { chromium } from 'playwright-core';
import { LAUNCH, watch } from './strict.mjs';

const [url, shots, timeoutArg = '120000'] = process.argv.slice(2);
if (!url || !shots) {
  console.error('usage: node player.mjs PLAYER_URL SHOT_DIR [TIMEOUT_MS]');
  process.exit(2);
}
const timeout = Number(timeoutArg);
const browser = await chromium.launch(LAUNCH);
const result = { url, ok: false, step: 'start' };
const state = (page) => page.evaluate(() => {
  const v = document.querySelector('video');
  const track = v.textTracks[0];
  return {
    paused: v.paused, currentTime: v.currentTime, muted: v.muted, volume: v.volume,
    captions: track ? track.mode : null,
    activeCue: track && track.activeCues && track.activeCues.length ? track.activeCues[0].text : null,
    focused: document.activeElement && (document.activeElement.id || document.activeElement.tagName),
  };
});
try {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  const problems = watch(page);
  result.problems = problems;
  const sheets = [];
  page.on('response', (r) => { if (r.url().includes('storyboard-')) sheets.push(r.status()); });

  result.step = 'load';
  await page.goto(url, { waitUntil: 'load', timeout });
  await page.waitForFunction(() => document.querySelectorAll('#quality-menu [role=menuitemradio]').length > 1, null, { timeout });
  result.nativeControls = await page.evaluate(() => document.querySelector('video').controls);
  result.pageWidth = await page.evaluate(() => document.documentElement.scrollWidth);

  result.step = 'keyboard';
  // Keyboard only: Tab to the play button, then the shortcuts.
  for (let i = 0; i < 30; i += 1) {
    await page.keyboard.press('Tab');
    if ((await state(page)).focused === 'play') break;
  }
  result.reachedPlayByTab = (await state(page)).focused === 'play';
  await page.evaluate(() => { document.querySelector('video').muted = false; });
  await page.keyboard.press('k');
  await page.waitForFunction(() => document.querySelector('video').currentTime > 0.5, null, { timeout: 60000 });
  result.afterK = await state(page);
  const before = (await state(page)).currentTime;
  await page.keyboard.press('ArrowRight');
  result.afterArrow = await state(page);
  result.seekedBy = result.afterArrow.currentTime - before;
  await page.keyboard.press('m');
  result.afterM = await state(page);
  await page.keyboard.press('m');
  await page.keyboard.press('c');
  result.afterC = await state(page);
  await page.keyboard.press('k');
  result.pausedByK = (await state(page)).paused;

  result.step = 'quality menu';
  for (let i = 0; i < 15; i += 1) {
    await page.keyboard.press('Tab');
    if ((await state(page)).focused === 'quality-button') break;
  }
  await page.keyboard.press('Enter');
  result.menuOpen = await page.evaluate(() => !document.getElementById('quality-menu').hidden);
  result.menuItems = await page.$$eval('#quality-menu [role=menuitemradio]', (items) => items.map((i) => i.textContent));
  await page.screenshot({ path: shots + '/quality-menu.png' });
  // The lowest rendition, from the keyboard: last in the menu.
  await page.keyboard.press('ArrowUp');
  await page.keyboard.press('Enter');
  result.qualityButton = await page.$eval('#quality-button', (b) => b.textContent);
  result.menuClosed = await page.evaluate(() => document.getElementById('quality-menu').hidden);

  result.step = 'seek preview';
  const box = await page.$eval('#seek', (s) => { const r = s.getBoundingClientRect(); return { x: r.x, y: r.y, w: r.width, h: r.height }; });
  await page.mouse.move(box.x + box.w * 0.6, box.y + box.h / 2);
  await page.waitForFunction(() => !document.getElementById('seek-preview').hidden, null, { timeout: 10000 });
  result.preview = await page.evaluate(() => {
    const tile = document.querySelector('.preview-tile');
    return {
      time: Number(document.getElementById('seek-preview').dataset.time),
      image: tile.style.backgroundImage, position: tile.style.backgroundPosition,
      width: tile.style.width, height: tile.style.height,
    };
  });
  await page.waitForFunction(() => performance.getEntriesByType('resource').some((e) => e.name.includes('storyboard-001.jpg')), null, { timeout: 10000 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: shots + '/seek-preview.png' });
  result.sheetAnswers = sheets;
  await page.mouse.move(0, 0);

  result.step = 'captions';
  await page.setViewportSize({ width: 1024, height: 768 });
  await page.evaluate(() => { const v = document.querySelector('video'); v.currentTime = 1.2; });
  await page.waitForFunction(() => {
    const t = document.querySelector('video').textTracks[0];
    return t.activeCues && t.activeCues.length > 0;
  }, null, { timeout: 20000 });
  result.cueShown = (await state(page)).activeCue;
  await page.waitForTimeout(300);
  await page.screenshot({ path: shots + '/captions.png' });

  result.step = 'remember';
  await page.evaluate(() => { const v = document.querySelector('video'); v.volume = 0.3; v.currentTime = 6.2; });
  await page.waitForTimeout(300);
  await page.evaluate(() => document.querySelector('video').dispatchEvent(new Event('timeupdate')));
  await page.reload({ waitUntil: 'load', timeout });
  await page.waitForFunction(() => !document.getElementById('resume').hidden, null, { timeout: 30000 });
  result.resumeText = await page.$eval('#resume', (r) => r.textContent);
  result.volumeAfterReload = await page.evaluate(() => document.querySelector('video').volume);
  await page.focus('#resume-yes');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('video').currentTime >= 6, null, { timeout: 30000 });
  result.resumedAt = (await state(page)).currentTime;

  result.step = 'fullscreen';
  await page.focus('#play');
  await page.keyboard.press('f');
  await page.waitForFunction(() => Boolean(document.fullscreenElement), null, { timeout: 5000 });
  result.fullscreen = await page.evaluate(() => document.fullscreenElement.id);
  await page.keyboard.press('f');
  await page.waitForFunction(() => !document.fullscreenElement, null, { timeout: 5000 });

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

// Every browser test fails on what a user would count as a broken page: an uncaught
// script error, a console error, a request that failed, or a 4xx/5xx answer. A test
// that provokes an error answer on purpose names it in `allowed` (URL substrings), so
// nothing else can slip through.
//
// A test that breaks a connection on purpose passes `tolerate(url, what)`, asked when a
// request fails (`what` = 'failed'), Chromium logs it ('console') or it is answered with
// an error status (the status), so only the failures it caused are let through.
//
// usage: const problems = watch(page, { allowed: ['/api/videos/gone'] });
//        ... result.problems = problems; ok = ok && problems.length === 0

export function watch(page, { allowed = [], tolerate = () => false } = {}) {
  const problems = [];
  const isAllowed = (url) => allowed.some((part) => url.includes(part));
  const tolerated = (url, what) => isAllowed(url) || tolerate(url, what);
  page.on('pageerror', (e) => problems.push('page error: ' + String(e.message || e)));
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const where = message.location() ? message.location().url || '' : '';
    // Chromium repeats every error answer as a console error; those are judged below.
    if (message.text().startsWith('Failed to load resource') && tolerated(where, 'console')) return;
    problems.push('console error: ' + message.text() + (where ? ' at ' + where : ''));
  });
  page.on('requestfailed', (request) => {
    const failure = request.failure() ? request.failure().errorText : 'failed';
    if (tolerated(request.url(), 'failed')) return;
    problems.push('request failed: ' + request.method() + ' ' + request.url() + ' ' + failure);
  });
  page.on('response', (response) => {
    if (response.status() < 400 || tolerated(response.url(), response.status())) return;
    problems.push('error answer: ' + response.status() + ' ' + response.request().method() + ' ' + response.url());
  });
  return problems;
}

// The launch options every test uses.
export const LAUNCH = {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
  ],
};

// Every browser test fails on what a user would count as a broken page: an uncaught
// script error, a console error, a request that failed, or a 4xx/5xx answer. A test
// that provokes an error answer on purpose names it in `allowed` (URL substrings), so
// nothing else can slip through.
//
// usage: const problems = watch(page, { allowed: ['/api/videos/gone'] });
//        ... result.problems = problems; ok = ok && problems.length === 0

export function watch(page, { allowed = [] } = {}) {
  const problems = [];
  const isAllowed = (url) => allowed.some((part) => url.includes(part));
  page.on('pageerror', (e) => problems.push('page error: ' + String(e.message || e)));
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const where = message.location() ? message.location().url || '' : '';
    // Chromium repeats every error answer as a console error; those are judged below.
    if (message.text().startsWith('Failed to load resource') && isAllowed(where)) return;
    problems.push('console error: ' + message.text() + (where ? ' at ' + where : ''));
  });
  page.on('requestfailed', (request) => {
    const failure = request.failure() ? request.failure().errorText : 'failed';
    if (isAllowed(request.url())) return;
    problems.push('request failed: ' + request.method() + ' ' + request.url() + ' ' + failure);
  });
  page.on('response', (response) => {
    if (response.status() < 400 || isAllowed(response.url())) return;
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

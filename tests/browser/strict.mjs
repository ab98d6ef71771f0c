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
  // Loads the browser itself cancels because the page they belong to was left (a
  // navigation or a reload) are not failures of the page. Chromium may report them just
  // before or just after the new page commits, so an aborted load of the current page is
  // recorded, and taken back if the page it belonged to is left within 2 s.
  let navigations = 0;
  const startedAt = new WeakMap();
  let aborted = [];
  page.on('request', (request) => startedAt.set(request, navigations));
  page.on('framenavigated', (frame) => {
    if (frame !== page.mainFrame()) return;
    navigations += 1;
    const now = Date.now();
    for (const { problem, when } of aborted) {
      const at = problems.indexOf(problem);
      if (now - when < 2000 && at >= 0) problems.splice(at, 1);
    }
    aborted = [];
  });
  page.on('requestfailed', (request) => {
    const failure = request.failure() ? request.failure().errorText : 'failed';
    if (tolerated(request.url(), 'failed')) return;
    const problem = 'request failed: ' + request.method() + ' ' + request.url() + ' ' + failure;
    if (failure === 'net::ERR_ABORTED' && !request.isNavigationRequest()) {
      if (startedAt.get(request) < navigations) return;
      aborted.push({ problem, when: Date.now() });
    }
    problems.push(problem);
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

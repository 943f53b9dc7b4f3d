// Drives Debian's chromium through the gateway's GraphiQL page (run by
// tests/tests/e2e/browser.rs; see api/src/graphiql.rs for the page).
//
// Usage: node graphiql.mjs   with the environment
//   BASE_URL      the gateway, e.g. http://127.0.0.1:40123
//   USER_TOKEN    a user's token, typed into the Headers tab
//   USER_EMAIL    that user's email (what `me` must answer)
//   USER_ID       that user's id (the notification's recipient)
//   ADMIN_TOKEN   an admin's token, for the change made by "another client"
//   CHROMIUM      the browser (default /usr/bin/chromium)
//
// Every request to a host other than the gateway's is blocked and counted; any such
// attempt fails the run. Prints one "ok: ..." line per step; exits 0 on success.
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = new URL(env('BASE_URL'));
const userToken = env('USER_TOKEN');
const userEmail = env('USER_EMAIL');
const userId = env('USER_ID');
const adminToken = env('ADMIN_TOKEN');
const STEP_TIMEOUT = 15_000;

// The whole run is bounded, whatever hangs.
const deadline = setTimeout(() => {
  console.error('FAIL: the browser run timed out');
  process.exit(2);
}, 120_000);

const isLocal = (url) => new URL(url).host === base.host;
const blocked = [];
const pageErrors = [];

/** The text of the CodeMirror editor inside `selector` (GraphiQL 3 uses CodeMirror 5). */
const editorValue = (page, selector) =>
  page.evaluate((s) => document.querySelector(`${s} .CodeMirror`)?.CodeMirror.getValue() ?? '', selector);
const setEditor = (page, selector, text) =>
  page.evaluate(([s, t]) => document.querySelector(`${s} .CodeMirror`).CodeMirror.setValue(t), [selector, text]);
const QUERY = '.graphiql-query-editor';
const RESPONSE = '.graphiql-response';
const HEADERS = '.graphiql-editor-tool .graphiql-editor:not(.hidden)';

/** Waits until the response pane holds text that `predicate` accepts; returns it. */
async function waitForResponse(page, predicate, what, timeout = STEP_TIMEOUT) {
  const started = Date.now();
  for (;;) {
    const text = await editorValue(page, RESPONSE);
    if (predicate(text)) return text;
    const left = timeout - (Date.now() - started);
    if (left <= 0) throw new Error(`no ${what} in the response pane; it shows: ${text}`);
    await page.waitForFunction(
      ([s, before]) => document.querySelector(`${s} .CodeMirror`)?.CodeMirror.getValue() !== before,
      [RESPONSE, text],
      { timeout: left, polling: 'mutation' },
    ).catch(() => {});
  }
}

/**
 * Replaces the query and runs it. GraphiQL parses the editor's text after a debounce and
 * keeps the result (`documentAST`, `operationName`) on the editor; running before that
 * would send the previous operation's name, so wait until it reflects the new text.
 */
async function run(page, text) {
  await setEditor(page, QUERY, text);
  await page.waitForFunction((s) => {
    const editor = document.querySelector(`${s} .CodeMirror`).CodeMirror;
    return editor.documentAST?.loc?.source?.body === editor.getValue();
  }, QUERY);
  await page.click('.graphiql-execute-button');
}

async function adminMutation(query, variables) {
  const response = await fetch(new URL('/graphql', base), {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(STEP_TIMEOUT),
  });
  const body = await response.json();
  if (body.errors) throw new Error(`admin mutation failed: ${JSON.stringify(body.errors)}`);
  return body.data;
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // The tests run as root in CI containers, where chromium's sandbox cannot start.
    args: ['--no-sandbox'],
    // Chromium's first start on a busy 2-core machine can take a while.
    timeout: 60_000,
  });
  try {
    const context = await browser.newContext();
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (isLocal(url)) return route.continue();
      blocked.push(url);
      return route.abort('blockedbyclient');
    });
    await context.routeWebSocket((url) => !isLocal(url.href), (ws) => {
      blocked.push(ws.url());
      ws.close();
    });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT);
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    // Something the page needs but its Content-Security-Policy refuses shows up here.
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) pageErrors.push(message.text());
    });
    const initPayloads = [];
    page.on('websocket', (ws) => {
      ws.on('framesent', ({ payload }) => {
        try {
          const message = JSON.parse(payload);
          if (message.type === 'connection_init') initPayloads.push(message.payload);
        } catch {}
      });
    });

    await page.goto(new URL('/', base).href);
    await page.waitForSelector(`${QUERY} .CodeMirror`);
    console.log('ok: GraphiQL rendered');

    // The blocker itself works: a request to another host is stopped and counted (then
    // forgotten, since it was made on purpose). It is made from a blank page of the same
    // context: GraphiQL's page would refuse it by its Content-Security-Policy before the
    // blocker saw it. 192.0.2.0/24 is TEST-NET-1.
    const canary = 'http://192.0.2.1/canary';
    const probe = await context.newPage();
    const canaryFailed = await probe.evaluate((url) => fetch(url).then(() => false, () => true), canary);
    await probe.close();
    if (!canaryFailed || blocked.length !== 1 || blocked[0] !== canary) {
      throw new Error(`the request blocker did not stop ${canary}: ${blocked.join(', ')}`);
    }
    blocked.length = 0;
    console.log('ok: the request blocker stopped a request to another host');

    // The example query the page opens with runs without a token.
    const example = await editorValue(page, QUERY);
    if (!example.includes('agents')) throw new Error(`unexpected example query: ${example}`);
    await page.click('.graphiql-execute-button');
    const agents = JSON.parse(await waitForResponse(page, (t) => t.includes('"agents"'), 'agents'));
    if (!(agents.data?.agents?.length > 0)) throw new Error(`no agents: ${JSON.stringify(agents)}`);
    console.log(`ok: the example query listed ${agents.data.agents.length} agents`);

    // The token typed in the Headers tab reaches HTTP requests...
    await page.getByRole('button', { name: 'Headers' }).click();
    await setEditor(page, HEADERS, JSON.stringify({ Authorization: `Bearer ${userToken}` }));
    await run(page, '{ me { email } }');
    await waitForResponse(page, (t) => t.includes(userEmail), "the user's email from `me`");
    console.log('ok: the Headers tab authenticated an HTTP query');

    // ...and the WebSocket's connection_init, over which the subscription runs.
    await run(page, 'subscription { notificationAdded { cursor notification { title } } }');
    const socketDeadline = Date.now() + STEP_TIMEOUT;
    while (!initPayloads.length && Date.now() < socketDeadline) {
      await page.waitForEvent('websocket', { timeout: 1_000 }).catch(() => {});
    }
    const init = initPayloads[0];
    if (init?.Authorization !== `Bearer ${userToken}`) {
      throw new Error(`connection_init payload without the token: ${JSON.stringify(initPayloads)}`);
    }
    console.log('ok: the subscription opened a WebSocket with the token in connection_init');

    // Another client makes the change. Nothing tells the page when the server has
    // registered the subscription, so send a notification, wait a bounded time for it,
    // and send another until one appears.
    let seen = null;
    for (let attempt = 1; !seen && attempt <= 5; attempt++) {
      const title = `browser event ${attempt}`;
      await adminMutation(
        'mutation($input: CreateNotificationInput!) { createNotification(input: $input) { notificationId } }',
        { input: { userId, kind: 'browser-test', title } },
      );
      const text = await waitForResponse(page, (t) => t.includes('browser event'), 'event', 4_000).catch(() => null);
      if (text) seen = text;
    }
    if (!seen) throw new Error('no subscription event reached the result pane');
    const event = JSON.parse(seen).data?.notificationAdded;
    if (!event?.cursor || !event.notification?.title?.startsWith('browser event')) {
      throw new Error(`not a notificationAdded event: ${seen}`);
    }
    console.log(`ok: the subscription event appeared: ${seen.replace(/\s+/g, ' ')}`);
  } finally {
    await browser.close();
  }
  if (blocked.length) throw new Error(`the page tried to reach other hosts: ${blocked.join(', ')}`);
  if (pageErrors.length) throw new Error(`errors on the page: ${pageErrors.join('; ')}`);
  console.log('ok: no request left the gateway, no page errors');
}

main().then(
  () => {
    clearTimeout(deadline);
    console.log('PASS');
  },
  (error) => {
    console.error(`FAIL: ${error.stack || error}`);
    process.exit(1);
  },
);

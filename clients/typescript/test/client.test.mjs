// The client against a real `actiondo serve` (started here, stopped at the end): the
// seeds' snippet, replays, payload mismatches, errors as values, 32 concurrent calls of
// one key, retries through a proxy that answers 503 or drops connections, audit paging.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { ActionDoError, Do } from '../dist/index.js';
import { closedPort, startProxy, startServer, startWebhook } from './helpers.mjs';

const here = dirname(fileURLToPath(import.meta.url));
let server;
let client;
let webhook;

before(async () => {
  // send-notification posts to this receiver, which holds its answer until the test lets
  // it go: an execution stays in flight as long as a test needs.
  webhook = await startWebhook();
  server = await startServer({ NOTIFY_WEBHOOK_URL: webhook.url });
  client = new Do({ apiKey: server.key, baseUrl: server.baseUrl });
});

after(async () => {
  await server?.stop();
  await webhook?.stop();
});

/** Every audit record of a filter, over every page. */
async function allRecords(filter) {
  const records = [];
  for await (const page of client.audit.list(filter)) records.push(...page.records);
  return records;
}

/** A user made with create-user; its id. */
async function createUser(email) {
  const { result, error } = await client.action.execute({ name: 'create-user', params: { email, name: 'Test User' } });
  assert.equal(error, null);
  return result.userId;
}

describe('the seeds', () => {
  test("the seeds' snippet runs with only its import line changed", async () => {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [join(here, '..', 'examples', 'seed.mjs')], {
      env: { ...process.env, DO_API_KEY: server.key, DO_BASE_URL: server.baseUrl },
    });
    assert.equal(stdout, '');
    assert.equal(stderr, '');
    // It reached the API: usr_12345 is no user of this store, so the action refused it,
    // and the snippet got that refusal as a value (it did not throw).
    const records = await allRecords({ type: 'send-welcome-email' });
    assert.equal(records.length, 1, JSON.stringify(records));
    assert.equal(records[0].status, 'failed');
    assert.equal(records[0].caller?.startsWith('apikey:'), true);
    const again = await client.action.execute({
      name: 'send-welcome-email',
      params: { userId: 'usr_12345', template: 'new-user-welcome-v2' },
    });
    assert.equal(again.result, null);
    assert.equal(again.error.type, 'ActionDo.Rejected');
    assert.equal(again.error.details.reason, 'unknown_user');
  });

  test('the snippet with a real user sends the welcome email', async () => {
    const userId = await createUser('seed@example.com');
    const a = new Do(server.key);
    assert.equal(a.baseUrl, 'http://127.0.0.1:8080', 'the default base URL without DO_BASE_URL');
    const { result, error } = await client.action.execute({
      name: 'send-welcome-email',
      params: { userId, template: 'new-user-welcome-v2' },
    });
    assert.equal(error, null);
    assert.equal(result.userId, userId);
    assert.equal(result.to, 'seed@example.com');
    assert.equal(result.transport, 'outbox');
  });
});

describe('execute', () => {
  test('a replay answers the stored result; the action ran once', async () => {
    const call = { name: 'create-user', params: { email: 'ada@example.com', name: 'Ada Lovelace', plan: 'pro' }, idempotencyKey: 'signup-ada' };
    const first = await client.action.execute(call);
    assert.equal(first.error, null);
    assert.match(first.result.userId, /^u_[0-9a-f]{32}$/);
    const second = await client.action.execute(call);
    assert.deepEqual(second, first);
    const view = await client.executions.get('create-user', 'signup-ada');
    assert.equal(view.execution.status, 'COMPLETED');
    assert.equal(view.execution.attempt, 1);
    assert.deepEqual(view.audit.map((r) => r.status), ['replayed', 'completed']);
  });

  test('another payload under a used key is a PayloadMismatch value', async () => {
    const call = { name: 'create-user', params: { email: 'bob@example.com', name: 'Bob' }, idempotencyKey: 'signup-bob' };
    assert.equal((await client.action.execute(call)).error, null);
    const other = await client.action.execute({ ...call, params: { email: 'eve@example.com', name: 'Eve' } });
    assert.equal(other.result, null);
    assert.equal(other.error.type, 'ActionDo.PayloadMismatch');
    assert.equal(other.error.retryable, false);
    assert.equal(other.error.details.key, 'signup-bob');
  });

  test('a validation error is a value', async () => {
    const bad = await client.action.execute({ name: 'create-user', params: { email: 'not an email', name: '' } });
    assert.equal(bad.result, null);
    assert.equal(bad.error.type, 'ActionDo.Validation');
    assert.equal(bad.error.retryable, false);
  });

  test('an action whose key policy is required answers a missing key with its validation error', async () => {
    const info = await client.actions.get('process-payment');
    assert.equal(info.keyPolicy, 'required');
    const call = { name: 'process-payment', params: { userId: 'u_1', amount: 1200, currency: 'EUR', paymentMethod: 'pm_card_visa' } };
    const missing = await client.action.execute(call);
    assert.equal(missing.result, null);
    assert.equal(missing.error.type, 'ActionDo.Validation');
    assert.match(missing.error.message, /key/i);
  });

  test('32 concurrent calls of one key: one execution, 32 identical results', async () => {
    const params = { message: 'thirty-two at once', channel: '#test' };
    const correlationId = 'thirty-two';
    const before = webhook.requests.length;
    const first = client.action.execute({ name: 'send-notification', params, correlationId });
    // The first one is in flight (the receiver holds its answer) ...
    await webhook.received(before + 1);
    // ... so a duplicate that neither waits nor retries is told so:
    const impatient = new Do({ apiKey: server.key, baseUrl: server.baseUrl, waitSeconds: 0, maxRetries: 0 });
    const busy = await impatient.action.execute({ name: 'send-notification', params, correlationId });
    assert.equal(busy.result, null);
    assert.equal(busy.error.type, 'ActionDo.InProgress');
    // ... while these 31 wait for its outcome on the server (Prefer: wait), or retry.
    const others = Array.from({ length: 31 }, () => client.action.execute({ name: 'send-notification', params, correlationId }));
    await new Promise((resolve) => setTimeout(resolve, 200));
    webhook.release();
    const answers = [await first, ...(await Promise.all(others))];
    webhook.hold();
    assert.equal(answers.length, 32);
    for (const answer of answers) {
      assert.equal(answer.error, null, JSON.stringify(answer.error));
      assert.deepEqual(answer, answers[0]);
    }
    assert.deepEqual(answers[0].result, { delivered: true, status: 200 });
    assert.equal(webhook.requests.length, before + 1, 'the webhook was called once');
    const records = await allRecords({ correlationId });
    const statuses = records.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 'completed').length, 1, statuses.join());
    assert.equal(statuses.filter((s) => s === 'replayed').length, 31, statuses.join());
    assert.equal(new Set(records.map((r) => r.execution)).size, 1, 'one key, derived by the server');
    const key = records[0].execution.slice('send-notification#'.length);
    assert.equal(webhook.requests.at(-1).headers['idempotency-key'], key);
    const view = await client.executions.get('send-notification', key);
    assert.equal(view.execution.attempt, 1);
  });

  test('an unknown action is a NotFound value; a bad API key is an Unauthorized value', async () => {
    const unknown = await client.action.execute({ name: 'create-usr', params: {} });
    assert.equal(unknown.error.type, 'ActionDo.NotFound');
    const stranger = new Do({ apiKey: 'ado_0000000000000000_nope', baseUrl: server.baseUrl });
    const refused = await stranger.action.execute({ name: 'create-user', params: { email: 'x@example.com', name: 'X' } });
    assert.equal(refused.result, null);
    assert.equal(refused.error.type, 'ActionDo.Unauthorized');
  });
});

describe('retries', () => {
  test('a server that answers 503 twice, then succeeds: the same call three times, one execution', async () => {
    const busy = { status: 503, headers: { 'retry-after': '0' }, body: JSON.stringify({ result: null, error: { type: 'ActionDo.Transient', message: 'busy', retryable: true } }) };
    const proxy = await startProxy(server.baseUrl, (req, n) => (n <= 2 ? busy : undefined));
    try {
      const a = new Do({ apiKey: server.key, baseUrl: proxy.baseUrl, maxRetries: 3 });
      const { result, error } = await a.action.execute({ name: 'create-user', params: { email: 'retry@example.com', name: 'Retry' } });
      assert.equal(error, null);
      assert.equal(result.email, 'retry@example.com');
      assert.equal(proxy.seen.length, 3);
      for (const req of proxy.seen) {
        assert.equal(req.body, proxy.seen[0].body, 'every retry sends the same call');
        assert.equal(JSON.parse(req.body).idempotencyKey, undefined, 'no key invented: the server derives it');
        assert.equal(req.headers['idempotency-key'], undefined);
        assert.equal(req.headers.prefer, 'wait=10');
      }
    } finally {
      await proxy.stop();
    }
  });

  test('a given key is sent on every retry; dropped connections are retried', async () => {
    const proxy = await startProxy(server.baseUrl, (req, n) => (n <= 2 ? 'drop' : undefined));
    try {
      const a = new Do({ apiKey: server.key, baseUrl: proxy.baseUrl, maxRetries: 2 });
      const call = { name: 'create-user', params: { email: 'drop@example.com', name: 'Drop' }, idempotencyKey: 'signup-drop' };
      const { result, error } = await a.action.execute(call);
      assert.equal(error, null);
      assert.equal(proxy.seen.length, 3);
      for (const req of proxy.seen) assert.equal(JSON.parse(req.body).idempotencyKey, 'signup-drop');
      assert.deepEqual((await client.action.execute(call)).result, result, 'the same execution');
    } finally {
      await proxy.stop();
    }
  });

  test('503 after every retry answers the last error as a value', async () => {
    const proxy = await startProxy(server.baseUrl, () => ({
      status: 503,
      headers: { 'retry-after': '0' },
      body: JSON.stringify({ result: null, error: { type: 'ActionDo.Transient', message: 'still busy', retryable: true } }),
    }));
    try {
      const a = new Do({ apiKey: server.key, baseUrl: proxy.baseUrl, maxRetries: 2 });
      const { result, error } = await a.action.execute({ name: 'create-user', params: { email: 'never@example.com', name: 'Never' } });
      assert.equal(result, null);
      assert.equal(error.type, 'ActionDo.Transient');
      assert.equal(error.message, 'still busy');
      assert.equal(proxy.seen.length, 3, 'the first attempt and 2 retries');
    } finally {
      await proxy.stop();
    }
  });

  test('no server at all: ActionDo.Transient as a value after the retries', async () => {
    const a = new Do({ apiKey: server.key, baseUrl: `http://127.0.0.1:${await closedPort()}`, maxRetries: 1 });
    const { result, error } = await a.action.execute({ name: 'create-user', params: { email: 'x@example.com', name: 'X' } });
    assert.equal(result, null);
    assert.equal(error.type, 'ActionDo.Transient');
    assert.equal(error.retryable, true);
    assert.equal(error.details.attempts, 2);
  });
});

describe('the rest of the API', () => {
  test('the catalog', async () => {
    const actions = await client.actions.list();
    const names = actions.map((a) => a.name);
    assert.ok(names.includes('create-user') && names.includes('send-welcome-email'), names.join());
    assert.ok(!names.includes('create-api-key'), 'internal actions are never listed');
    const one = await client.actions.get('create-user');
    assert.equal(one.inputSchema.title, 'CreateUserInput');
    await assert.rejects(client.actions.get('nope'), (e) => e instanceof ActionDoError && e.type === 'ActionDo.NotFound' && e.status === 404);
  });

  test('audit pages follow the cursor over more than one page', async () => {
    for (let i = 0; i < 5; i++) await createUser(`page${i}@example.com`);
    const pages = [];
    for await (const page of client.audit.list({ type: 'create-user', limit: 2 })) pages.push(page);
    assert.ok(pages.length >= 3, `${pages.length} pages`);
    assert.ok(pages.slice(0, -1).every((p) => p.records.length === 2 && p.nextCursor));
    assert.equal(pages.at(-1).nextCursor, null);
    const paged = pages.flatMap((p) => p.records);
    const whole = [];
    for await (const page of client.audit.list({ type: 'create-user', limit: 100 })) whole.push(page);
    assert.equal(whole.length, 1);
    assert.deepEqual(paged, whole[0].records, 'the same records, in the same order, newest first');
    assert.ok(paged.length >= 5);
  });

  test('executions.get of an unknown key throws NotFound', async () => {
    await assert.rejects(client.executions.get('create-user', 'no-such-key'), (e) => e.type === 'ActionDo.NotFound');
  });

  test('workflows: the routes are reached (this server has no state machines: NotFound)', async () => {
    const notFound = (e) => e instanceof ActionDoError && e.type === 'ActionDo.NotFound' && e.status === 404;
    await assert.rejects(client.workflows.start('user-onboarding', { email: 'w@example.com' }, { idempotencyKey: 'w1' }), notFound);
    await assert.rejects(client.workflows.get('user-onboarding', 'w1'), notFound);
    await assert.rejects(client.workflows.redrive('user-onboarding', 'w1'), notFound);
    await assert.rejects(client.workflows.list('user-onboarding').next(), notFound);
    // The query is checked before the workflow: a bad limit is a validation error.
    await assert.rejects(
      client.workflows.list('user-onboarding', { limit: 0 }).next(),
      (e) => e instanceof ActionDoError && e.type === 'ActionDo.Validation' && e.status === 400,
    );
  });
});

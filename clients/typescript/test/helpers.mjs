// What the client's tests share: a real `actiondo serve` on 127.0.0.1 (a free port picked
// by the server, --addr 127.0.0.1:0) over a store file in a fresh temporary folder, with
// an API key made by `actiondo keys create`; and a small HTTP proxy in front of it that
// the tests script (503s, dropped connections).

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** The actiondo binary: $ACTIONDO_BIN, else the workspace's target/debug/actiondo. */
export function actiondoBin() {
  const bin = process.env.ACTIONDO_BIN ?? join(here, '..', '..', '..', 'target', 'debug', 'actiondo');
  if (!existsSync(bin)) throw new Error(`no actiondo binary at ${bin}: cargo build -p actiondo-cli, or set ACTIONDO_BIN`);
  return bin;
}

/** Start `actiondo serve` on a store of its own, with `extraEnv` (e.g.
 * NOTIFY_WEBHOOK_URL); resolves once it listens. Its key has the scope `*` and
 * `workflow:*`. */
export async function startServer(extraEnv = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'actiondo-ts-'));
  const bin = actiondoBin();
  const env = {
    ...process.env,
    ACTIONDO_STORE: `sqlite:${join(dir, 'actiondo.db')}`,
    EMAIL_TRANSPORT: 'outbox',
    EMAIL_OUTBOX_DIR: join(dir, 'outbox'),
    RUST_LOG: 'warn',
    ...extraEnv,
  };
  const key = execFileSync(bin, ['keys', 'create', '--scope', '*', '--scope', 'workflow:*', '--description', 'ts client tests'], {
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
  const child = spawn(bin, ['serve', '--addr', '127.0.0.1:0'], { env, cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const baseUrl = await new Promise((resolve, reject) => {
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`actiondo serve exited (${code}) before listening: ${stderr}`)));
    child.on('error', reject);
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  return {
    baseUrl,
    key,
    dir,
    outbox: join(dir, 'outbox'),
    /** Stop the server (SIGTERM, then SIGKILL after 10 s) and remove its folder. */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An HTTP server on 127.0.0.1 in front of `target`: `script(request, n)` answers the
 * n-th request (from 1) itself, by returning `{ status, headers, body }` or `'drop'` (the
 * connection is destroyed), or lets it through by returning undefined. Every request is
 * recorded: `{ method, url, headers, body }`. */
export async function startProxy(target, script) {
  const seen = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks).toString('utf8');
    seen.push({ method: req.method, url: req.url, headers: req.headers, body });
    const answer = script({ method: req.method, url: req.url, body }, seen.length);
    if (answer === 'drop') {
      req.socket.destroy();
      return;
    }
    if (answer) {
      res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
      res.end(answer.body ?? '');
      return;
    }
    const headers = { ...req.headers };
    delete headers.host;
    delete headers.connection;
    delete headers['content-length'];
    try {
      const upstream = await fetch(`${target}${req.url}`, {
        method: req.method,
        headers,
        body: req.method === 'GET' || req.method === 'HEAD' ? undefined : body,
      });
      const text = await upstream.text();
      const out = {};
      upstream.headers.forEach((v, k) => {
        if (k !== 'content-length' && k !== 'transfer-encoding' && k !== 'connection') out[k] = v;
      });
      res.writeHead(upstream.status, out);
      res.end(text);
    } catch (e) {
      res.writeHead(599);
      res.end(String(e));
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    seen,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/** A webhook receiver on 127.0.0.1 for send-notification (NOTIFY_WEBHOOK_URL): records
 * every request and holds its answer (200) until `release()`. `received(n)` resolves
 * once n requests came. */
export async function startWebhook() {
  const requests = [];
  const held = [];
  const waiters = [];
  let released = false;
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    requests.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
    for (const w of waiters.filter((w) => requests.length >= w.n)) w.resolve();
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok": true}');
    };
    if (released) answer();
    else held.push(answer);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/hook`,
    requests,
    received: (n) => (requests.length >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }))),
    /** Answer the held requests, and the next ones at once. */
    release() {
      released = true;
      held.splice(0).forEach((answer) => answer());
    },
    /** Hold the next requests again. */
    hold() {
      released = false;
    },
    stop: () =>
      new Promise((resolve) => {
        held.splice(0).forEach((answer) => answer());
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on (bound, then released). */
export async function closedPort() {
  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

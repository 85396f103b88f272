// The action.do client: the HTTP API of docs/architecture.md §8 (the router in AWS,
// `actiondo serve` locally), with the seed SDK's call:
//
//   const a = new Do(process.env.DO_API_KEY);
//   const { result, error } = await a.action.execute({ name: 'send-welcome-email', params: { ... } });
//
// One small transport with retries (`Transport`), typed resources on top. Action errors
// are values (`{ result: null, error }`), as `POST /execute` answers them; the other
// routes throw `ActionDoError`. Design: docs/architecture.md §12.

import type { Actions } from './actions.generated.js';

export type * from './actions.generated.js';
export type { Actions } from './actions.generated.js';

/** The version of this package, sent nowhere; for logs. */
export const VERSION = '0.1.0';

/** The default API: `actiondo serve` on its default address. */
export const DEFAULT_BASE_URL = 'http://127.0.0.1:8080';

/** The `Prefer: wait=N` sent by default, seconds (the server caps N at 20). */
export const DEFAULT_WAIT_SECONDS = 10;

/** An action's error, as the API answers it (docs/architecture.md §6). */
export interface ActionError {
  /** `ActionDo.Validation`, `ActionDo.Rejected`, `ActionDo.PayloadMismatch`,
   * `ActionDo.InProgress`, `ActionDo.Conflict`, `ActionDo.Transient`, `ActionDo.NotFound`,
   * `ActionDo.Unauthorized`, `ActionDo.Forbidden`, `ActionDo.Internal`. */
  type: string;
  /** What went wrong, for people. */
  message: string;
  /** Whether the same call may succeed when retried (with the same key). */
  retryable: boolean;
  /** Structured details (`fields` of a validation error, `reason` of a rejection, …). */
  details?: unknown;
}

/** What `execute` resolves to: the result, or the error, never both. */
export type ExecuteResponse<R> =
  | { result: R; error: null }
  | { result: null; error: ActionError };

/** What a catalog says of one action: its params and its result. */
export interface ActionTypes {
  params: unknown;
  result: unknown;
}

/** A catalog: action name → params and result (`Actions`, generated, is one). */
export type Catalog<A> = { [K in keyof A]: ActionTypes };

/** The key an action's call must carry: an `idempotencyKey` when its key policy is
 * `required`, else an optional one. */
export type KeyFor<T> = T extends { keyPolicy: 'required' }
  ? { idempotencyKey: string }
  : { idempotencyKey?: string };

/** Any catalog, untyped: `new Do<ActionMap>(…)` runs any name with any params. */
export type ActionMap = Record<string, ActionTypes>;

/** One call of `do.action.execute`. */
export interface ExecuteCall<N extends string = string, P = unknown> {
  /** The action's name. */
  name: N;
  /** Its params (the action's input). */
  params: P;
  /** The idempotency key: sent on every retry. Without one, the server derives it from
   * the params (the default key policy), so a retry is the same execution. Actions whose
   * key policy is `required` refuse a call without one (`ActionDo.Validation`). */
  idempotencyKey?: string;
  /** Carried to the audit records of the execution. */
  correlationId?: string;
}

/** How the client reaches the API. */
export interface DoOptions {
  /** The API key (`Authorization: Bearer`); default `DO_API_KEY`. */
  apiKey?: string;
  /** Where the API is; default `DO_BASE_URL`, else http://127.0.0.1:8080. */
  baseUrl?: string;
  /** How long one attempt may take, milliseconds (default 30 000). */
  timeoutMs?: number;
  /** Retries after the first attempt (default 3): network errors, 409, 429, 502, 503, 504. */
  maxRetries?: number;
  /** `Prefer: wait=N` sent with executions (default 10; 0 sends none): a call that meets
   * an execution of its key in flight waits up to N seconds for its outcome on the
   * server, instead of a 409 and a retry. */
  waitSeconds?: number;
  /** The fetch to use (default the platform's). */
  fetch?: typeof fetch;
}

/** An error of a route that answers errors as exceptions (every route but
 * `POST /execute`), or a transport failure after the retries. */
export class ActionDoError extends Error implements ActionError {
  /** The error's type (`ActionDo.NotFound`, …). */
  readonly type: string;
  /** Whether a retry may succeed. */
  readonly retryable: boolean;
  /** Structured details. */
  readonly details?: unknown;
  /** The HTTP status (0 when no response came). */
  readonly status: number;

  constructor(error: ActionError, status: number) {
    super(error.message);
    this.name = 'ActionDoError';
    this.type = error.type;
    this.retryable = error.retryable;
    this.details = error.details;
    this.status = status;
  }
}

/** One HTTP answer, its body parsed. */
interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

const RETRIED_STATUSES = new Set([409, 429, 502, 503, 504]);

const env = (name: string): string | undefined =>
  (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The wait a `Retry-After` asks for (seconds or an HTTP date), milliseconds. */
function retryAfterMs(headers: Headers): number | undefined {
  const value = headers.get('retry-after');
  if (value === null) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** Exponential backoff with full jitter: 0 to min(5 s, 200 ms × 2^retry). */
function backoffMs(retry: number): number {
  return Math.random() * Math.min(5_000, 200 * 2 ** retry);
}

function isActionError(value: unknown): value is ActionError {
  const e = value as ActionError | null;
  return typeof e === 'object' && e !== null && typeof e.type === 'string' && typeof e.message === 'string';
}

/** The error of an answer: its body's, or one made from the status. */
function errorOf(answer: Answer): ActionError {
  const body = answer.body as { error?: unknown } | null;
  if (body && isActionError(body.error)) return body.error;
  const transient = answer.status === 429 || answer.status >= 500;
  return {
    type: transient ? 'ActionDo.Transient' : 'ActionDo.Internal',
    message: `HTTP ${answer.status} without an action.do error body`,
    retryable: transient,
    details: { status: answer.status },
  };
}

/** The transport: one request with its retries. Every request it retries is safe to
 * repeat: reads, and writes that carry their idempotency key (or none, so that the server
 * derives the same one from the same body). */
class Transport {
  readonly baseUrl: string;
  private readonly apiKey: string | undefined;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly fetch: typeof fetch;

  constructor(options: DoOptions) {
    this.apiKey = options.apiKey ?? env('DO_API_KEY');
    this.baseUrl = (options.baseUrl ?? env('DO_BASE_URL') ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.maxRetries = Math.max(0, options.maxRetries ?? 3);
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') throw new TypeError('no fetch: use Node 18 or later, or pass options.fetch');
    this.fetch = f.bind(globalThis);
  }

  /** Send `method path` with `body` (JSON) and `headers`; retried on network errors
   * (backoff with jitter) and on 409, 429, 502, 503 and 504 (after `Retry-After` when
   * given). Answers the last answer, or throws a transient `ActionDoError` when no answer
   * came at all. */
  async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
    const init: RequestInit = {
      method,
      headers: {
        accept: 'application/json',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    };
    let lastFailure: unknown;
    for (let retry = 0; ; retry++) {
      let answer: Answer | undefined;
      try {
        answer = await this.once(path, init);
      } catch (e) {
        lastFailure = e;
      }
      if (answer && !RETRIED_STATUSES.has(answer.status)) return answer;
      if (retry >= this.maxRetries) {
        if (answer) return answer;
        const cause = lastFailure instanceof Error ? lastFailure.message : String(lastFailure);
        throw new ActionDoError(
          {
            type: 'ActionDo.Transient',
            message: `no answer from ${this.baseUrl} after ${retry + 1} attempts: ${cause}`,
            retryable: true,
            details: { attempts: retry + 1 },
          },
          0,
        );
      }
      const asked = answer ? retryAfterMs(answer.headers) : undefined;
      await sleep(asked ?? backoffMs(retry));
    }
  }

  private async once(path: string, init: RequestInit): Promise<Answer> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error(`timed out after ${this.timeoutMs} ms`)), this.timeoutMs);
    try {
      const response = await this.fetch(`${this.baseUrl}${path}`, { ...init, signal: controller.signal });
      const text = await response.text();
      let body: unknown = null;
      if (text) {
        try {
          body = JSON.parse(text);
        } catch {
          body = null;
        }
      }
      return { status: response.status, headers: response.headers, body };
    } finally {
      clearTimeout(timer);
    }
  }

  /** `request`, then the body of a 2xx answer, or an `ActionDoError`. */
  async json<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
    const answer = await this.request(method, path, body, headers);
    if (answer.status >= 200 && answer.status < 300) return answer.body as T;
    throw new ActionDoError(errorOf(answer), answer.status);
  }
}

const seg = encodeURIComponent;

/** `do.action`: run actions. */
export class ActionResource<A extends Catalog<A>> {
  constructor(
    private readonly transport: Transport,
    private readonly waitSeconds: number,
  ) {}

  /** Run one action (`POST /execute`) and resolve to `{ result, error }`: an action's
   * error, and a transport failure after the retries (`ActionDo.Transient`), are values,
   * never exceptions. Retries resend the same call: the given idempotency key, or none,
   * so that the server derives the same key from the same params; a call that meets its
   * own execution in flight waits for it on the server (`Prefer: wait`). */
  async execute<N extends keyof A & string>(
    call: ExecuteCall<N, A[N]['params']> & KeyFor<A[N]>,
  ): Promise<ExecuteResponse<A[N]['result']>> {
    const body: Record<string, unknown> = { name: call.name, params: call.params ?? {} };
    if (call.idempotencyKey !== undefined) body.idempotencyKey = call.idempotencyKey;
    if (call.correlationId !== undefined) body.correlationId = call.correlationId;
    const headers: Record<string, string> = this.waitSeconds > 0 ? { prefer: `wait=${this.waitSeconds}` } : {};
    let answer: Answer;
    try {
      answer = await this.transport.request('POST', '/execute', body, headers);
    } catch (e) {
      const error: ActionError =
        e instanceof ActionDoError
          ? { type: e.type, message: e.message, retryable: e.retryable, details: e.details }
          : { type: 'ActionDo.Transient', message: String(e), retryable: true };
      return { result: null, error };
    }
    const response = answer.body as { result?: unknown; error?: unknown } | null;
    if (response && typeof response === 'object' && 'result' in response && 'error' in response) {
      if (response.error === null) return { result: response.result as A[N]['result'], error: null };
      if (isActionError(response.error)) return { result: null, error: response.error };
    }
    return { result: null, error: errorOf(answer) };
  }
}

/** One entry of the catalog (`GET /actions`). */
export interface ActionInfo {
  name: string;
  description: string;
  keyPolicy: 'derived' | 'required';
  inputSchema: unknown;
  outputSchema: unknown;
}

/** `do.actions`: the catalog in the key's scope. */
export class ActionsResource {
  constructor(private readonly transport: Transport) {}

  /** `GET /actions`. */
  async list(): Promise<ActionInfo[]> {
    const body = await this.transport.json<{ actions: ActionInfo[] }>('GET', '/actions');
    return body.actions;
  }

  /** `GET /actions/{name}`. */
  get(name: string): Promise<ActionInfo> {
    return this.transport.json('GET', `/actions/${seg(name)}`);
  }
}

/** One audit record (docs/architecture.md §5.2). */
export interface AuditRecord {
  /** `{action}#{key}`. */
  execution: string;
  /** Orders the records of an execution. */
  seq: string;
  /** The action's name. */
  type: string;
  /** `completed`, `failed`, `retrying`, `replayed`, `rejected`, `taken_over`. */
  status: string;
  /** The input (redacted), the result or the error, … */
  details: unknown;
  /** RFC 3339. */
  timestamp: string;
  durationMs: number;
  attempt: number;
  requestId: string;
  source: string;
  caller?: string;
  correlationId?: string;
  traceId?: string;
}

/** An execution's record and its audit trail (`GET /executions/{name}/{key}`). */
export interface ExecutionView {
  execution: { status: string; attempt: number; [field: string]: unknown };
  audit: AuditRecord[];
  nextCursor: string | null;
}

/** `do.executions`. */
export class ExecutionsResource {
  constructor(private readonly transport: Transport) {}

  /** `GET /executions/{name}/{key}`: the record and its audit trail, newest first. */
  get(name: string, key: string): Promise<ExecutionView> {
    return this.transport.json('GET', `/executions/${seg(name)}/${seg(key)}`);
  }
}

/** The filter of `GET /audit` (`key` needs `type`; `type` and `correlationId` exclude
 * each other; `limit` 1–100, 20 by default). */
export interface AuditFilter {
  type?: string;
  key?: string;
  correlationId?: string;
  /** An RFC 3339 time: records at or after it. */
  since?: string;
  /** Records per page. */
  limit?: number;
  /** Start from this page (a `nextCursor`). */
  cursor?: string;
}

/** One page of `GET /audit`, newest first. */
export interface AuditPage {
  records: AuditRecord[];
  nextCursor: string | null;
}

/** `do.audit`. */
export class AuditResource {
  constructor(private readonly transport: Transport) {}

  /** The pages of `GET /audit`, newest first, following `nextCursor` until the last:
   * `for await (const page of do.audit.list({ type: 'create-user' }))`. */
  async *list(filter: AuditFilter = {}): AsyncGenerator<AuditPage, void, undefined> {
    let cursor = filter.cursor;
    do {
      const query = new URLSearchParams();
      for (const [k, v] of Object.entries({ ...filter, cursor })) {
        if (v !== undefined && v !== null) query.set(k, String(v));
      }
      const q = query.toString();
      const page = await this.transport.json<AuditPage>('GET', `/audit${q ? `?${q}` : ''}`);
      yield page;
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
  }
}

/** The filters of `GET /workflows/{name}/executions`. */
export interface WorkflowExecutionsFilter {
  /** `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT` or `ABORTED`. */
  status?: string;
  /** Executions per page (1 to 100; 20 by default). */
  limit?: number;
  /** Start from this page (a `cursor`). */
  cursor?: string;
}

/** One execution of a workflow's list. */
export interface WorkflowExecutionSummary {
  executionName: string;
  status: string;
  startDate: string;
  stopDate?: string;
  redriveCount?: number;
}

/** One page of `GET /workflows/{name}/executions`, newest first. */
export interface WorkflowExecutionsPage {
  workflow: string;
  executions: WorkflowExecutionSummary[];
  /** The next page's cursor; absent on the last page. */
  cursor?: string;
}

/** `do.workflows`: workflow.do executions (routes of docs/architecture.md §8). */
export class WorkflowsResource {
  constructor(private readonly transport: Transport) {}

  /** `POST /workflows/{name}`: start an execution named by `idempotencyKey`, else by the
   * hash of `input` (a retry finds the same execution). */
  start(name: string, input: unknown, options: { idempotencyKey?: string } = {}): Promise<Record<string, unknown>> {
    const headers: Record<string, string> = options.idempotencyKey ? { 'idempotency-key': options.idempotencyKey } : {};
    return this.transport.json('POST', `/workflows/${seg(name)}`, input ?? {}, headers);
  }

  /** The pages of `GET /workflows/{name}/executions`, newest first, following `cursor`
   * until the last: `for await (const page of do.workflows.list('user-onboarding', {
   * status: 'FAILED' }))`. */
  async *list(name: string, filter: WorkflowExecutionsFilter = {}): AsyncGenerator<WorkflowExecutionsPage, void, undefined> {
    let cursor = filter.cursor;
    do {
      const query = new URLSearchParams();
      for (const [k, v] of Object.entries({ ...filter, cursor })) {
        if (v !== undefined && v !== null) query.set(k, String(v));
      }
      const q = query.toString();
      const page = await this.transport.json<WorkflowExecutionsPage>('GET', `/workflows/${seg(name)}/executions${q ? `?${q}` : ''}`);
      yield page;
      cursor = page.cursor ?? undefined;
    } while (cursor);
  }

  /** `GET /workflows/{name}/executions/{id}`: status, input, output, error. */
  get(name: string, id: string): Promise<Record<string, unknown>> {
    return this.transport.json('GET', `/workflows/${seg(name)}/executions/${seg(id)}`);
  }

  /** `POST /workflows/{name}/executions/{id}/redrive`: resume a failed execution from
   * its failed step. */
  redrive(name: string, id: string): Promise<Record<string, unknown>> {
    return this.transport.json('POST', `/workflows/${seg(name)}/executions/${seg(id)}/redrive`, {});
  }
}

/** The client. `new Do(apiKey)` or `new Do({ apiKey, baseUrl, timeoutMs, maxRetries })`;
 * typed by the generated catalog `A` (every action of this repository by default; pass
 * `ActionMap` for an untyped one). */
export class Do<A extends Catalog<A> = Actions> {
  /** Run actions: `execute({ name, params })`. */
  readonly action: ActionResource<A>;
  /** The catalog. */
  readonly actions: ActionsResource;
  /** Executions and their audit trails. */
  readonly executions: ExecutionsResource;
  /** Audit records, page by page. */
  readonly audit: AuditResource;
  /** Workflows. */
  readonly workflows: WorkflowsResource;
  /** Where the API is. */
  readonly baseUrl: string;

  constructor(options?: string | DoOptions) {
    const o: DoOptions = typeof options === 'string' || options === undefined ? { apiKey: options } : options;
    const transport = new Transport(o);
    this.baseUrl = transport.baseUrl;
    // The server must answer before the attempt times out: at most half the timeout.
    const timeoutMs = o.timeoutMs ?? 30_000;
    const wait = Math.max(0, Math.min(Math.floor(o.waitSeconds ?? DEFAULT_WAIT_SECONDS), Math.floor(timeoutMs / 2000)));
    this.action = new ActionResource<A>(transport, wait);
    this.actions = new ActionsResource(transport);
    this.executions = new ExecutionsResource(transport);
    this.audit = new AuditResource(transport);
    this.workflows = new WorkflowsResource(transport);
  }
}

export default Do;

// Well-typed uses of the generated types: `tsc --noEmit` must accept this file
// (test/types.test.mjs).
import { Do, type ActionMap, type CreateUserOutput } from '../../src/index.js';

export async function ok(apiKey: string): Promise<string> {
  const a = new Do(apiKey);
  const { result, error } = await a.action.execute({
    name: 'create-user',
    params: { email: 'ada@example.com', name: 'Ada Lovelace', plan: 'pro' },
  });
  if (error) return `${error.type}: ${error.message}`;
  const user: CreateUserOutput | null = result;
  const welcome = await a.action.execute({
    name: 'send-welcome-email',
    params: { userId: user?.userId ?? '', template: 'new-user-welcome-v2' },
    idempotencyKey: 'welcome-ada',
    correlationId: 'signup-1',
  });
  const paid = await a.action.execute({
    name: 'process-payment',
    params: { userId: 'u_1', amount: 1200, currency: 'EUR', paymentMethod: 'pm_card_visa', description: null },
    idempotencyKey: 'order-1',
  });
  // Untyped: any name, any params.
  const any = new Do<ActionMap>({ apiKey, baseUrl: 'http://127.0.0.1:8080', timeoutMs: 5_000, maxRetries: 1 });
  const other = await any.action.execute({ name: 'not-generated-yet', params: { anything: 1 } });
  for await (const page of a.audit.list({ type: 'create-user', limit: 5 })) {
    for (const record of page.records) void record.status;
  }
  return `${welcome.result?.messageId} ${paid.result?.paymentId} ${String(other.result)}`;
}

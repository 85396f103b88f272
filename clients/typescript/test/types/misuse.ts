// Misuses of the generated types: `tsc --noEmit` must refuse this file, with an error on
// every line marked `// misuse` and on no other (test/types.test.mjs).
import { Do } from '../../src/index.js';

export async function misuse(a: Do): Promise<void> {
  await a.action.execute({ name: 'create-user', params: { email: 'ada@example.com' } }); // misuse
  await a.action.execute({ name: 'create-user', params: { email: 'a@b.c', name: 'A', age: 3 } }); // misuse
  await a.action.execute({ name: 'create-user', params: { email: 42, name: 'A' } }); // misuse
  await a.action.execute({ name: 'create-user', params: { email: 'a@b.c', name: 'A', plan: 'gold' } }); // misuse
  await a.action.execute({ name: 'send-welcome-emial', params: {} }); // misuse
  await a.action.execute({ name: 'create-invoice', params: { customerId: 'c', currency: 'EUR', lines: [{ description: 'x', quantity: '1', unitAmount: 5 }] } }); // misuse
  await a.action.execute({ name: 'process-payment', params: { userId: 'u', amount: 1, currency: 'EUR', paymentMethod: 'pm' } }); // misuse
  const { result } = await a.action.execute({ name: 'create-user', params: { email: 'a@b.c', name: 'A' } });
  const id: number = result!.userId; // misuse
  void id;
  void result?.messageId; // misuse
}

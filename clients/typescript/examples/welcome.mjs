import { Do } from '../dist/index.js';

const a = new Do(process.env.DO_API_KEY);
const user = await a.action.execute({ name: 'create-user', params: { email: 'ada@example.com', name: 'Ada Lovelace' } });
const { result, error } = await a.action.execute({ name: 'send-welcome-email', params: { userId: user.result.userId, template: 'new-user-welcome-v2' } });
console.log({ result, error });

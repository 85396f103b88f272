import { Do } from '../dist/index.js';

const a = new Do(process.env.DO_API_KEY);
const { result, error } = await a.action.execute({ name: 'send-welcome-email', params: { userId: 'usr_12345', template: 'new-user-welcome-v2' } });

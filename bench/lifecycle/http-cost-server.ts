// The server side of http-cost.ts: one of the apps of http-cost-apps.ts, listening on loopback.
// argv: bare | conveyor [checkout root]. Sends { port, accessToken } to the parent over IPC.
import { randomBytes } from 'node:crypto';
import { bareApp, conveyorApp } from './http-cost-apps.js';

const accessToken = randomBytes(24).toString('base64url');
const app = process.argv[2] === 'bare' ? await bareApp(accessToken) : await conveyorApp(accessToken, process.argv[3]);
await app.listen({ port: 0, host: '127.0.0.1' });
const { port } = app.server.address() as { port: number };
process.send!({ port, accessToken });
// http-cost.ts gone without stopping us (killed, say) closes the IPC channel: exit rather than
// stay listening with nobody to stop us, as the lifecycle generator does
process.once('disconnect', () => process.exit(1));
process.on('SIGTERM', () => {
  void app.close().then(() => process.exit(0));
});

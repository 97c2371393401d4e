// Health endpoints.
import { sql } from 'kysely';
import { readFileSync } from 'node:fs';
import { endpoint, respond } from '../http/endpoint.js';

const pkg = JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version: string };

/** Extra checks other capabilities add to __heartbeat__ (e.g. the relay's broker connection). */
export const heartbeatChecks: Array<() => Promise<Record<string, unknown>>> = [];

export const metaEndpoints = [
  endpoint({
    name: 'ping', method: 'GET', route: '/ping', scopes: null,
    stability: 'stable', category: 'Ping Server', title: 'Ping Server',
    description: 'Respond without doing anything.',
    handler: async () => ({ alive: true, uptime: process.uptime() }),
  }),
  endpoint({
    name: 'lbheartbeat', method: 'GET', route: '/__lbheartbeat__', scopes: null,
    stability: 'stable', category: 'Monitoring', title: 'Load Balancer Heartbeat',
    description: 'Respond without doing anything.',
    handler: async () => ({}),
  }),
  endpoint({
    name: 'version', method: 'GET', route: '/__version__', scopes: null,
    stability: 'stable', category: 'Monitoring', title: 'Version',
    description: 'The running version.',
    handler: async () => ({ source: 'https://github.com/conveyor/conveyor', version: pkg.version, commit: process.env.GIT_COMMIT ?? 'unknown', build: 'local' }),
  }),
  endpoint({
    name: 'heartbeat', method: 'GET', route: '/__heartbeat__', scopes: null,
    stability: 'stable', category: 'Monitoring', title: 'Heartbeat',
    description: 'Checks the database (and, where configured, the broker connection and outbox backlog). 503 when unhealthy.',
    handler: async (req) => {
      const checks: Record<string, unknown> = {};
      let healthy = true;
      try {
        await sql`SELECT 1`.execute(req.ctx.db);
        checks.database = { ok: true };
      } catch (err) {
        healthy = false;
        checks.database = { ok: false, error: (err as Error).message };
      }
      for (const check of heartbeatChecks) {
        const result = await check().catch((err: Error) => ({ error: { ok: false, message: err.message } }));
        for (const [k, v] of Object.entries(result)) {
          checks[k] = v;
          if (v && typeof v === 'object' && (v as { ok?: boolean }).ok === false) healthy = false;
        }
      }
      return respond(healthy ? 200 : 503, checks);
    },
  }),
];

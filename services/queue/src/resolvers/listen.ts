// Wakes a loop on a PostgreSQL notification, so work another transaction committed is taken in
// milliseconds rather than at the next poll. The poll stays as the fallback: while this connection
// is down (it reconnects every second) the loop runs on its interval.
import pg from 'pg';
import type { Ctx } from '../context.js';
import type { Service } from '../services.js';

export async function listen(ctx: Ctx, channel: string, onNotify: () => void): Promise<Service> {
  let client: pg.Client | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;

  const connect = async () => {
    const c = new pg.Client({ connectionString: ctx.config.databaseUrl });
    c.on('notification', (n) => {
      if (n.channel === channel) onNotify();
    });
    c.on('error', (err) => {
      ctx.log.warn({ err, channel }, 'LISTEN connection lost; polling until it returns');
      void c.end().catch(() => {});
      reconnect();
    });
    await c.connect();
    await c.query(`LISTEN ${channel}`);
    if (stopped) await c.end();
    else client = c;
  };
  const reconnect = () => {
    client = undefined;
    if (stopped || retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      connect().then(onNotify, reconnect);
    }, 1000);
  };

  await connect();
  return {
    name: `listen:${channel}`,
    async stop() {
      stopped = true;
      clearTimeout(retry);
      await client?.end().catch(() => {});
    },
  };
}

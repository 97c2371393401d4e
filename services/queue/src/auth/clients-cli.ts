// `conveyor client create|list|delete`: manage the Hawk clients stored in PostgreSQL.
import { randomBytes } from 'node:crypto';
import type { Db } from '../db/database.js';
import { validScope } from './scopes.js';
import { storeClient } from './clients.js';

const usage = 'usage: conveyor client create <clientId> [scope ...] | client list | client delete <clientId>';

/** `key` encrypts the token stored (see token-cipher.ts); the plain token is only printed. */
export async function clientCommand(db: Db, key: Buffer, args: string[], out: (s: string) => void): Promise<number> {
  const [verb, clientId, ...scopes] = args;
  switch (verb) {
    case 'create': {
      if (!clientId || !/^[A-Za-z0-9!@/:.+|_-]{1,128}$/.test(clientId)) {
        out(`a clientId of 1-128 characters [A-Za-z0-9!@/:.+|_-] is required\n${usage}`);
        return 2;
      }
      const bad = scopes.filter((s) => !validScope(s));
      if (bad.length) {
        out(`invalid scopes: ${bad.join(', ')}`);
        return 2;
      }
      const accessToken = randomBytes(32).toString('base64url');
      const expires = new Date(Date.now() + 1000 * 365 * 24 * 3600 * 1000);
      await storeClient(db, key, { clientId, accessToken, scopes, expires });
      out(JSON.stringify({ clientId, accessToken, scopes }, null, 2));
      return 0;
    }
    case 'list': {
      const rows = await db.selectFrom('clients').select(['client_id', 'scopes', 'disabled', 'expires']).orderBy('client_id').execute();
      for (const r of rows) out(`${r.client_id}${r.disabled ? ' (disabled)' : ''}  ${r.scopes.join(' ')}`);
      return 0;
    }
    case 'delete': {
      if (!clientId) {
        out(usage);
        return 2;
      }
      const r = await db.deleteFrom('clients').where('client_id', '=', clientId).executeTakeFirst();
      out(r.numDeletedRows > 0n ? `deleted ${clientId}` : `no client ${clientId}`);
      return 0;
    }
    default:
      out(usage);
      return 2;
  }
}

// Where credentials come from: the root client from configuration, the rest from `clients`.
import type { Config } from '../config.js';
import type { Db } from '../db/database.js';
import type { ClientRecord } from './authenticate.js';

export function clientLookup(db: Db, config: Config) {
  return async (clientId: string): Promise<ClientRecord | undefined> => {
    if (clientId === config.rootClientId) return { accessToken: config.rootAccessToken!, scopes: ['*'] };
    // A bewit carries any bytes as its id; one PostgreSQL cannot compare (NUL) is simply unknown.
    if (!/^[\x20-\x7e]{1,256}$/.test(clientId)) return undefined;
    const row = await db.selectFrom('clients').selectAll().where('client_id', '=', clientId).executeTakeFirst();
    if (!row) return undefined;
    return { accessToken: row.access_token, scopes: row.scopes, expires: new Date(row.expires), disabled: row.disabled };
  };
}

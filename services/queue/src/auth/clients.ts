// Where credentials come from: the root client from configuration, the rest from `clients`, whose
// access tokens are stored encrypted (token-cipher.ts).
import { clientTokenKey, type Config } from '../config.js';
import type { Db } from '../db/database.js';
import type { ClientRecord } from './authenticate.js';
import { decryptToken, encryptedPrefix, encryptToken } from './token-cipher.js';

interface Log {
  error(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export function clientLookup(db: Db, config: Config, log: Log) {
  const key = clientTokenKey(config);
  // each stored token that does not decrypt is logged once, not on every request its client makes
  const reported = new Set<string>();
  return async (clientId: string): Promise<ClientRecord | undefined> => {
    if (clientId === config.rootClientId) return { accessToken: config.rootAccessToken!, scopes: ['*'] };
    // A bewit carries any bytes as its id; one PostgreSQL cannot compare (NUL) is simply unknown.
    if (!/^[\x20-\x7e]{1,256}$/.test(clientId)) return undefined;
    const row = await db.selectFrom('clients').selectAll().where('client_id', '=', clientId).executeTakeFirst();
    if (!row) return undefined;
    const accessToken = decryptToken(key, clientId, row.access_token);
    if (accessToken === undefined) {
      // the key changed (or the row was written by hand): the client is unknown, a 401 like any
      // other, and the operator learns why
      const seen = `${clientId}\n${row.access_token}`;
      if (!reported.has(seen)) {
        if (reported.size >= 10_000) reported.clear();
        reported.add(seen);
        log.error(
          { clientId },
          `the stored access token of client ${clientId} does not decrypt with CLIENT_TOKEN_KEY (was the key changed?); ` +
            `its requests are refused until it is re-created with \`conveyor client create ${clientId}\``,
        );
      }
      return undefined;
    }
    return { accessToken, scopes: row.scopes, expires: new Date(row.expires), disabled: row.disabled };
  };
}

export interface NewClient {
  clientId: string;
  accessToken: string;
  scopes: string[];
  expires: Date;
}

/** Stores a client, its token encrypted; an existing one gets the new token and scopes and is enabled. */
export async function storeClient(db: Db, key: Buffer, c: NewClient): Promise<void> {
  const stored = encryptToken(key, c.clientId, c.accessToken);
  await db
    .insertInto('clients')
    .values({ client_id: c.clientId, access_token: stored, scopes: JSON.stringify(c.scopes), expires: c.expires })
    .onConflict((oc) => oc.column('client_id').doUpdateSet({ access_token: stored, scopes: JSON.stringify(c.scopes), disabled: false }))
    .execute();
}

/**
 * Encrypts the plain-text tokens rows from before encryption still hold; run at start. Each row is
 * updated only while it still holds the plain token it was read with, so replicas starting
 * together encrypt it once (the loser's update matches no row) and never overwrite a new token.
 */
export async function encryptPlainTokens(db: Db, key: Buffer, log: Log): Promise<number> {
  const rows = await db
    .selectFrom('clients')
    .select(['client_id', 'access_token'])
    .where('access_token', 'not like', `${encryptedPrefix}%`)
    .execute();
  let done = 0;
  for (const r of rows) {
    const res = await db
      .updateTable('clients')
      .set({ access_token: encryptToken(key, r.client_id, r.access_token) })
      .where('client_id', '=', r.client_id)
      .where('access_token', '=', r.access_token)
      .executeTakeFirst();
    done += Number(res.numUpdatedRows);
  }
  if (done > 0) log.info({ clients: done }, `encrypted the plain-text access tokens of ${done} stored client(s)`);
  return done;
}

// Access tokens of the clients stored in PostgreSQL are kept encrypted (AES-256-GCM) in
// `clients.access_token`, so a database dump or backup does not hand out working credentials.
// Stored form: `v1.<iv>.<ciphertext+tag>` (base64url), a fresh 12-byte IV per write and the
// clientId as additional authenticated data, so a ciphertext copied onto another row does not
// decrypt. The version prefix leaves room for another scheme (or key) later.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const keyBytes = 32;
const ivBytes = 12;
const tagBytes = 16;
const version = 'v1';
/** Stored tokens start with this; anything else is a plain-text row from before encryption. */
export const encryptedPrefix = `${version}.`;

export const keyHint = 'must be 32 random bytes, base64url-encoded (43 characters A-Z a-z 0-9 - _), e.g. from: node -e "console.log(crypto.randomBytes(32).toString(\'base64url\'))"';

/** CLIENT_TOKEN_KEY's parser, also used for the key file. */
export function parseTokenKey(raw: string): Buffer {
  const key = /^[A-Za-z0-9_-]{43}$/.test(raw) ? Buffer.from(raw, 'base64url') : undefined;
  // the last character carries 2 unused bits: only the canonical spelling is accepted, so one key
  // has one text
  if (!key || key.length !== keyBytes || key.toString('base64url') !== raw) throw new Error(keyHint);
  return key;
}

export function encryptToken(key: Buffer, clientId: string, accessToken: string): string {
  const iv = randomBytes(ivBytes);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: tagBytes });
  cipher.setAAD(Buffer.from(clientId, 'utf8'));
  const sealed = Buffer.concat([cipher.update(accessToken, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `${version}.${iv.toString('base64url')}.${sealed.toString('base64url')}`;
}

/** The access token, or undefined when `stored` is not ours to read (other key, other row, not v1). */
export function decryptToken(key: Buffer, clientId: string, stored: string): string | undefined {
  const parts = stored.split('.');
  if (parts.length !== 3 || parts[0] !== version) return undefined;
  const iv = Buffer.from(parts[1]!, 'base64url');
  const sealed = Buffer.from(parts[2]!, 'base64url');
  if (iv.length !== ivBytes || sealed.length < tagBytes) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: tagBytes });
    decipher.setAAD(Buffer.from(clientId, 'utf8'));
    decipher.setAuthTag(sealed.subarray(sealed.length - tagBytes));
    return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - tagBytes)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}

export const keyFileName = 'client-token.key';

/**
 * The key kept in `<dataRoot>/client-token.key`, created (mode 0600) on first use. Used outside
 * production when CLIENT_TOKEN_KEY is unset, so `npm start` needs no setup and stored clients
 * survive restarts. Two processes starting together agree on one key: the file appears complete
 * or not at all (written aside, then hard-linked into place, which fails if it already exists).
 */
export function keyFromFile(dataRoot = resolve('.conveyor')): Buffer {
  const path = join(dataRoot, keyFileName);
  const read = () => {
    const raw = readFileSync(path, 'utf8').trim();
    try {
      return parseTokenKey(raw);
    } catch (err) {
      throw new Error(`${path}: ${(err as Error).message} (delete it to have a new one made, then re-create the stored clients)`);
    }
  };
  try {
    return read();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // the directory is not narrowed: it also holds the embedded PostgreSQL's data, which as root
  // runs as another user that must reach it (db/embedded.ts); the file itself is 0600
  mkdirSync(dirname(path), { recursive: true });
  const aside = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(aside, randomBytes(keyBytes).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
  try {
    linkSync(aside, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    unlinkSync(aside);
  }
  return read();
}

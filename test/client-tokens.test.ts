// The key stored client tokens are encrypted with, and the cipher: CLIENT_TOKEN_KEY is required in
// production and validated, outside production it is kept in a 0600 file made once and reused;
// tokens are AES-256-GCM with a fresh IV per write and the clientId bound as additional data.
// (Stored clients with encrypted tokens over HTTP: auth-http.test.ts.)
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decryptToken, encryptToken, keyFileName, parseTokenKey } from '../services/queue/src/auth/token-cipher.js';
import { clientTokenKey, ConfigError, loadConfig, type Config } from '../services/queue/src/config.js';

const validKey = () => randomBytes(32).toString('base64url');
const base64url = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

function configProblems(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems;
  }
  assert.fail('loadConfig accepted the configuration');
}

describe('CLIENT_TOKEN_KEY configuration', () => {
  it('is required when NODE_ENV=production, listed with the other problems', () => {
    const problems = configProblems({ NODE_ENV: 'production', PORT: 'x' });
    assert.deepEqual(problems, [
      'PORT="x": must be an integer from 0 to 65535',
      'ROOT_ACCESS_TOKEN: required when NODE_ENV=production',
      'CLIENT_TOKEN_KEY: required when NODE_ENV=production (32 random bytes, base64url)',
    ]);
    const key = validKey();
    const config = loadConfig({ NODE_ENV: 'production', ROOT_ACCESS_TOKEN: 'root-token', CLIENT_TOKEN_KEY: key });
    assert.deepEqual(config.clientTokenKey, Buffer.from(key, 'base64url'));
    assert.equal(config.clientTokenKey!.length, 32);
  });

  it('must be 32 bytes of canonical base64url', () => {
    const key = validKey();
    const bad = [
      randomBytes(16).toString('base64url'), // too short
      randomBytes(48).toString('base64url'), // too long
      randomBytes(32).toString('base64'), // padded base64
      `${key.slice(0, 42)}*`, // not base64url
      // the same bytes as the valid key, spelled with the 2 unused low bits of the last character set
      key.slice(0, 42) + base64url[base64url.indexOf(key[42]!) + 1],
    ];
    for (const raw of bad) {
      const problems = configProblems({ CLIENT_TOKEN_KEY: raw });
      assert.equal(problems.length, 1, problems.join('; '));
      assert.ok(problems[0]!.startsWith(`CLIENT_TOKEN_KEY=${JSON.stringify(raw)}: must be 32 random bytes, base64url-encoded`), problems[0]);
    }
    // in production a malformed key is reported as malformed, not also as missing
    const problems = configProblems({ NODE_ENV: 'production', ROOT_ACCESS_TOKEN: 't', CLIENT_TOKEN_KEY: 'short' });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^CLIENT_TOKEN_KEY="short": must be 32 random bytes/);
    assert.deepEqual(parseTokenKey(key), Buffer.from(key, 'base64url'));
  });

  describe('outside production, unset', () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'conveyor-key-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('comes from a key file created with mode 0600 on first use and reused afterwards', () => {
      const root = join(dir, 'data');
      const first = loadConfig({});
      assert.equal(first.clientTokenKey, undefined);
      const key = clientTokenKey(first, root);
      assert.equal(key.length, 32);
      const path = join(root, keyFileName);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      // the directory stays open to others (umask aside): embedded PostgreSQL's data lives there too,
      // and as root it runs as another user
      assert.equal(statSync(root).mode & 0o111, 0o111);
      assert.equal(readFileSync(path, 'utf8'), `${key.toString('base64url')}\n`);
      // the config keeps it: the queue, the scheduler and the CLI of one process share it
      assert.equal(first.clientTokenKey, key);
      assert.equal(clientTokenKey(first, root), key);
      // a later start (a new config) reads the same key; the file is not rewritten
      const mtime = statSync(path).mtimeMs;
      const second = clientTokenKey(loadConfig({}), root);
      assert.deepEqual(second, key);
      assert.equal(statSync(path).mtimeMs, mtime);
      // CLIENT_TOKEN_KEY, when set, wins over the file
      const explicit = validKey();
      assert.deepEqual(clientTokenKey(loadConfig({ CLIENT_TOKEN_KEY: explicit }), root), Buffer.from(explicit, 'base64url'));
    });

    it('refuses a damaged key file with a message naming it', () => {
      const root = join(dir, 'damaged');
      clientTokenKey(loadConfig({}), root);
      const path = join(root, keyFileName);
      writeFileSync(path, 'not-a-key\n');
      assert.throws(() => clientTokenKey(loadConfig({}), root), (err: Error) => {
        assert.ok(err.message.startsWith(`${path}: must be 32 random bytes, base64url-encoded`), err.message);
        return true;
      });
    });

    it('is never taken from a file for a production config', () => {
      const config = { ...loadConfig({}), production: true } as Config;
      assert.throws(() => clientTokenKey(config, join(dir, 'prod')), ConfigError);
    });
  });
});

describe('token cipher', () => {
  const key = randomBytes(32);
  it('round-trips with a fresh IV per write, bound to the key and the clientId', () => {
    const a = encryptToken(key, 'client-a', 'secret-token');
    const b = encryptToken(key, 'client-a', 'secret-token');
    assert.match(a, /^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/);
    assert.notEqual(a, b);
    assert.ok(!a.includes('secret-token'));
    assert.equal(decryptToken(key, 'client-a', a), 'secret-token');
    assert.equal(decryptToken(key, 'client-a', b), 'secret-token');
    assert.equal(decryptToken(key, 'client-b', a), undefined);
    assert.equal(decryptToken(randomBytes(32), 'client-a', a), undefined);
    const [v, iv, sealed] = a.split('.');
    const flipped = Buffer.from(sealed!, 'base64url');
    flipped[0]! ^= 1;
    assert.equal(decryptToken(key, 'client-a', `${v}.${iv}.${flipped.toString('base64url')}`), undefined);
    for (const junk of ['secret-token', 'v1.', 'v1..', 'v2.' + a.slice(3), `v1.${iv}.AAAA`, `${a}.x`]) {
      assert.equal(decryptToken(key, 'client-a', junk), undefined, junk);
    }
  });
});

// Auth module tests: a tiny node:http echo server runs Authenticator.authenticate on every request
// and is driven by the real taskcluster-client and by raw hawk-signed requests (no hawk mocks).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as hawk from 'hawk';
import { ApiError } from '../services/queue/src/http/errors.js';
import {
  Authenticator,
  compileTemplate,
  createTemporaryCredentials,
  paramsNeeded,
  renderExpression,
  satisfies,
  unsatisfiedMessage,
  unsatisfiedPart,
  verifyCertificate,
  type ClientRecord,
  type ScopeTemplate,
} from '../services/queue/src/auth/index.js';

// taskcluster-client ships no type declarations: describe the little used here.
interface Creds {
  clientId: string;
  accessToken: string;
  certificate?: string;
}
interface QueueClient {
  task(taskId: string): Promise<EchoBody>;
  scheduleTask(taskId: string): Promise<EchoBody>;
  claimWork(taskQueueId: string, payload: object): Promise<EchoBody>;
  buildSignedUrl(method: unknown, ...args: unknown[]): string;
}
interface TcModule {
  Queue: new (opts: { rootUrl: string; credentials?: Creds | object; authorizedScopes?: string[]; retries?: number }) => QueueClient;
  createTemporaryCredentials(opts: {
    scopes: string[];
    expiry: Date;
    start?: Date;
    clientId?: string;
    credentials: Creds;
  }): Creds;
  fromNow(offset: string): Date;
  slugid(): string;
}
interface EchoBody {
  clientId?: string;
  scopes: string[];
  hasAuthHeader: boolean;
  method: string;
  url: string;
}
interface TcError extends Error {
  statusCode?: number;
  code?: string;
}

const tcSpecifier: string = 'taskcluster-client';
const tc = ((await import(tcSpecifier)) as { default: TcModule }).default;

const ANON = ['queue:get-artifact:public/*'];
const root: Creds = { clientId: 'root', accessToken: 'root-access-token-0123456789abcdef' };
const limited: Creds = { clientId: 'project/limited', accessToken: 'limited-token-abcdefghijklmnop' };

const clients: Record<string, ClientRecord> = {
  [root.clientId]: { accessToken: root.accessToken, scopes: ['*'] },
  [limited.clientId]: {
    accessToken: limited.accessToken,
    scopes: ['queue:get-task:*', 'queue:schedule-task:sched/*', 'auth:create-client:project/limited/*'],
  },
  disabled: { accessToken: 'disabled-token', scopes: ['*'], disabled: true },
  expired: { accessToken: 'expired-token', scopes: ['*'], expires: new Date(Date.now() - 60_000) },
};

const authenticator = new Authenticator({
  lookupClient: async (clientId) => clients[clientId],
  anonymousScopes: ANON,
});

let server: http.Server;
let rootUrl = '';
let port = 0;

before(async () => {
  server = http.createServer((req, res) => {
    const hostHeader = req.headers.host ?? '';
    const host = hostHeader.replace(/:\d+$/, '');
    const p = Number(/:(\d+)$/.exec(hostHeader)?.[1] ?? 80);
    authenticator
      .authenticate({ method: req.method ?? 'GET', url: req.url ?? '/', host, port: p, authorization: req.headers.authorization })
      .then(
        (result) => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ ...result, method: req.method, url: req.url }));
        },
        (err: unknown) => {
          const status = err instanceof ApiError ? err.statusCode : 500;
          const code = err instanceof ApiError ? err.code : 'InternalServerError';
          res.writeHead(status, { 'content-type': 'application/json', ...(status === 401 ? { 'www-authenticate': 'hawk' } : {}) });
          res.end(JSON.stringify({ code, message: err instanceof Error ? err.message : String(err) }));
        },
      );
    req.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  rootUrl = `http://127.0.0.1:${port}`;
});

after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function queue(credentials?: Creds, authorizedScopes?: string[]): QueueClient {
  return new tc.Queue({ rootUrl, credentials: credentials ?? {}, retries: 0, ...(authorizedScopes ? { authorizedScopes } : {}) });
}

async function rejects401(p: Promise<unknown>, messagePart?: RegExp): Promise<void> {
  await assert.rejects(p, (err: TcError) => {
    assert.equal(err.statusCode, 401, `expected 401, got ${err.statusCode}: ${err.message}`);
    assert.equal(err.code, 'AuthenticationFailed');
    if (messagePart) assert.match(err.message, messagePart);
    return true;
  });
}

function sorted(a: readonly string[]): string[] {
  return [...a].sort();
}

/** A raw request signed with hawk.client.header, as taskcluster-client does it. */
async function signedFetch(
  path: string,
  creds: Creds,
  opts: { method?: string; timestamp?: number; header?: string } = {},
): Promise<{ status: number; body: EchoBody & { code?: string; message?: string }; header: string }> {
  const method = opts.method ?? 'GET';
  const url = `${rootUrl}${path}`;
  const header =
    opts.header ??
    hawk.client.header(url, method, {
      credentials: { id: creds.clientId, key: creds.accessToken, algorithm: 'sha256' },
      ...(opts.timestamp !== undefined ? { timestamp: opts.timestamp } : {}),
    }).header;
  const res = await fetch(url, { method, headers: { authorization: header } });
  return { status: res.status, body: (await res.json()) as EchoBody & { code?: string; message?: string }, header };
}

describe('Hawk authentication via taskcluster-client', () => {
  test('anonymous request gets the anonymous scopes', async () => {
    const r = await queue().task('abc');
    assert.equal(r.clientId, undefined);
    assert.deepEqual(r.scopes, ANON);
    assert.equal(r.hasAuthHeader, false);
  });

  test('valid root credentials (GET and POST)', async () => {
    const r = await queue(root).task('abc');
    assert.equal(r.clientId, 'root');
    assert.deepEqual(sorted(r.scopes), sorted(['*', ...ANON]));
    assert.equal(r.hasAuthHeader, true);
    const s = await queue(root).scheduleTask('abc');
    assert.equal(s.method, 'POST');
    assert.equal(s.clientId, 'root');
  });

  test('percent-encoded path segments are signed and checked as sent', async () => {
    const r = await queue(limited).claimWork('prov/wt', { workerGroup: 'g', workerId: 'w' });
    assert.equal(r.url, '/api/queue/v1/claim-work/prov%2Fwt');
    assert.equal(r.clientId, limited.clientId);
  });

  test('wrong accessToken → 401', async () => {
    await rejects401(queue({ clientId: 'root', accessToken: 'not-the-token' }).task('abc'), /Bad mac/);
  });

  test('unknown client → 401', async () => {
    await rejects401(queue({ clientId: 'nobody', accessToken: 'x' }).task('abc'), /Unknown clientId/);
  });

  test('disabled and expired clients → 401', async () => {
    await rejects401(queue({ clientId: 'disabled', accessToken: 'disabled-token' }).task('abc'), /disabled/);
    await rejects401(queue({ clientId: 'expired', accessToken: 'expired-token' }).task('abc'), /expired/);
  });

  test('replaying an identical Authorization header → 401 the second time', async () => {
    const first = await signedFetch('/api/queue/v1/task/abc', root);
    assert.equal(first.status, 200);
    assert.equal(first.body.clientId, 'root');
    const second = await signedFetch('/api/queue/v1/task/abc', root, { header: first.header });
    assert.equal(second.status, 401);
    assert.equal(second.body.code, 'AuthenticationFailed');
    assert.match(second.body.message ?? '', /Replay/i);
  });

  test('timestamp 20 minutes old → 401; 10 minutes old is accepted', async () => {
    const now = Math.floor(Date.now() / 1000);
    const stale = await signedFetch('/api/queue/v1/task/abc', root, { timestamp: now - 20 * 60 });
    assert.equal(stale.status, 401);
    assert.match(stale.body.message ?? '', /Stale timestamp/);
    const skewed = await signedFetch('/api/queue/v1/task/abc', root, { timestamp: now - 10 * 60 });
    assert.equal(skewed.status, 200);
  });

  test('non-Hawk Authorization scheme → 401', async () => {
    const r = await signedFetch('/api/queue/v1/task/abc', root, { header: 'Bearer abc' });
    assert.equal(r.status, 401);
    assert.equal(r.body.code, 'AuthenticationFailed');
  });

  test('a header without mac, or with a mac of the wrong length → 401 with Hawk\'s reason', async () => {
    const signed = hawk.client.header(`${rootUrl}/api/queue/v1/task/abc`, 'GET', {
      credentials: { id: root.clientId, key: root.accessToken, algorithm: 'sha256' },
    }).header;
    const noMac = await signedFetch('/api/queue/v1/task/abc', root, { header: signed.replace(/, mac="[^"]*"/, '') });
    assert.equal(noMac.status, 401);
    assert.equal(noMac.body.message, 'Hawk authentication failed: Missing attributes');
    const shortMac = await signedFetch('/api/queue/v1/task/abc', root, { header: signed.replace(/mac="[^"]*"/, 'mac="abc"') });
    assert.equal(shortMac.status, 401);
    assert.match(shortMac.body.message ?? '', /^Bad mac/);
  });

  test('header signed for another path → 401', async () => {
    const header = hawk.client.header(`${rootUrl}/api/queue/v1/task/other`, 'GET', {
      credentials: { id: root.clientId, key: root.accessToken, algorithm: 'sha256' },
    }).header;
    const r = await signedFetch('/api/queue/v1/task/abc', root, { header });
    assert.equal(r.status, 401);
  });
});

describe('temporary credentials', () => {
  test('taskcluster-client temporary credentials carry exactly the certificate scopes', async () => {
    const temp = tc.createTemporaryCredentials({
      scopes: ['queue:get-task:abc', 'queue:claim-work:prov/*'],
      expiry: tc.fromNow('1 hour'),
      credentials: root,
    });
    const r = await queue(temp).task('abc');
    assert.equal(r.clientId, 'root');
    assert.deepEqual(sorted(r.scopes), sorted(['queue:get-task:abc', 'queue:claim-work:prov/*', ...ANON]));
  });

  test('named temporary credentials need auth:create-client:<name>', async () => {
    const named = tc.createTemporaryCredentials({
      clientId: 'project/limited/worker-1',
      scopes: ['queue:get-task:abc'],
      expiry: tc.fromNow('1 hour'),
      credentials: limited,
    });
    const r = await queue(named).task('abc');
    assert.equal(r.clientId, 'project/limited/worker-1');
    assert.deepEqual(sorted(r.scopes), sorted(['queue:get-task:abc', ...ANON]));

    const notAllowed = tc.createTemporaryCredentials({
      clientId: 'someone-else',
      scopes: ['queue:get-task:abc'],
      expiry: tc.fromNow('1 hour'),
      credentials: limited,
    });
    await rejects401(queue(notAllowed).task('abc'), /auth:create-client:someone-else/);
  });

  test('expired certificate → 401', async () => {
    const temp = tc.createTemporaryCredentials({
      scopes: ['queue:get-task:abc'],
      start: tc.fromNow('-2 hours'),
      expiry: tc.fromNow('-1 hour'),
      credentials: root,
    });
    await rejects401(queue(temp).task('abc'), /expired/);
  });

  test('certificate with scopes the issuer lacks → 401', async () => {
    const temp = tc.createTemporaryCredentials({
      scopes: ['queue:create-task:*'],
      expiry: tc.fromNow('1 hour'),
      credentials: limited,
    });
    await rejects401(queue(temp).task('abc'), /does not hold/);
  });

  test('tampered certificate scopes → 401', async () => {
    const temp = tc.createTemporaryCredentials({ scopes: ['queue:get-task:abc'], expiry: tc.fromNow('1 hour'), credentials: root });
    const cert = JSON.parse(temp.certificate ?? '{}') as { scopes: string[] };
    cert.scopes = ['*'];
    await rejects401(queue({ ...temp, certificate: JSON.stringify(cert) }).task('abc'), /signature/);
  });

  test('certificate presented with the wrong temporary accessToken → 401', async () => {
    const temp = tc.createTemporaryCredentials({ scopes: ['queue:get-task:abc'], expiry: tc.fromNow('1 hour'), credentials: root });
    await rejects401(queue({ ...temp, accessToken: root.accessToken }).task('abc'), /Bad mac/);
  });

  test('credentials from our createTemporaryCredentials are accepted by the server', async () => {
    const ours = createTemporaryCredentials({
      issuer: root,
      scopes: ['queue:get-task:xyz'],
      start: new Date(),
      expiry: new Date(Date.now() + 3600_000),
    });
    const r = await queue(ours).task('xyz');
    assert.equal(r.clientId, 'root');
    assert.deepEqual(sorted(r.scopes), sorted(['queue:get-task:xyz', ...ANON]));

    const oursNamed = createTemporaryCredentials({
      issuer: limited,
      clientId: 'project/limited/w2',
      scopes: ['queue:get-task:xyz'],
      start: new Date(),
      expiry: new Date(Date.now() + 3600_000),
    });
    const n = await queue(oursNamed).task('xyz');
    assert.equal(n.clientId, 'project/limited/w2');
  });

  test('our certificates match the taskcluster-client algorithm (verifyCertificate both ways)', async () => {
    const lookup = async (id: string) => clients[id];
    const start = new Date(Date.now() - 1000);
    const expiry = new Date(Date.now() + 3600_000);
    const ours = createTemporaryCredentials({ issuer: root, scopes: ['a', 'b:*'], start, expiry });
    const cert = JSON.parse(ours.certificate) as Record<string, unknown>;
    assert.equal(cert['version'], 1);
    assert.equal((cert['seed'] as string).length, 44);
    assert.equal(cert['issuer'], undefined);
    const v = await verifyCertificate(ours.certificate, 'root', lookup);
    assert.equal(v.accessToken, ours.accessToken);
    assert.deepEqual(v.scopes, ['a', 'b:*']);
    assert.match(ours.accessToken, /^[A-Za-z0-9_-]{43}$/);

    const theirs = tc.createTemporaryCredentials({ clientId: 'named-x', scopes: ['c'], start, expiry, credentials: root });
    const tv = await verifyCertificate(JSON.parse(theirs.certificate ?? '') as unknown, 'named-x', lookup);
    assert.equal(tv.accessToken, theirs.accessToken);
    assert.equal(tv.issuer, 'root');

    // Span > 31 days, future start.
    const badSpan = { ...cert, expiry: start.getTime() + 32 * 86400_000 };
    await assert.rejects(verifyCertificate(badSpan, 'root', lookup), /31 days/);
    const future = { ...cert, start: Date.now() + 10 * 60_000 };
    await assert.rejects(verifyCertificate(future, 'root', lookup), /future/);
    await assert.rejects(verifyCertificate({ ...cert, version: 2 }, 'root', lookup), (e: unknown) => {
      assert.ok(e instanceof ApiError);
      assert.equal(e.code, 'AuthenticationFailed');
      return true;
    });
  });
});

describe('authorizedScopes', () => {
  test('narrowing replaces the credential scopes', async () => {
    const r = await queue(limited, ['queue:get-task:abc']).task('abc');
    assert.equal(r.clientId, limited.clientId);
    assert.deepEqual(sorted(r.scopes), sorted(['queue:get-task:abc', ...ANON]));
  });

  test('widening → 401', async () => {
    await rejects401(queue(limited, ['queue:create-task:*']).task('abc'), /oversteps/);
  });

  test('authorizedScopes with temporary credentials', async () => {
    const temp = tc.createTemporaryCredentials({ scopes: ['queue:get-task:*'], expiry: tc.fromNow('1 hour'), credentials: root });
    const r = await queue(temp, ['queue:get-task:abc']).task('abc');
    assert.deepEqual(sorted(r.scopes), sorted(['queue:get-task:abc', ...ANON]));
    await rejects401(queue(temp, ['queue:get-task:*', 'queue:cancel-task:x']).task('abc'));
  });
});

describe('bewit (signed URLs)', () => {
  test('queue.buildSignedUrl(queue.task, taskId) is accepted', async () => {
    const q = queue(root);
    const taskId = tc.slugid();
    const url = q.buildSignedUrl(q.task, taskId);
    assert.match(url, /[?&]bewit=/);
    const res = await fetch(url);
    assert.equal(res.status, 200);
    const body = (await res.json()) as EchoBody;
    assert.equal(body.clientId, 'root');
    assert.equal(body.hasAuthHeader, true);
    assert.deepEqual(sorted(body.scopes), sorted(['*', ...ANON]));
  });

  test('signed URL from temporary credentials with authorizedScopes', async () => {
    const temp = tc.createTemporaryCredentials({ scopes: ['queue:get-task:*'], expiry: tc.fromNow('1 hour'), credentials: root });
    const q = new tc.Queue({ rootUrl, credentials: temp, authorizedScopes: ['queue:get-task:t1'], retries: 0 });
    const res = await fetch(q.buildSignedUrl(q.task, 't1'));
    assert.equal(res.status, 200);
    const body = (await res.json()) as EchoBody;
    assert.deepEqual(sorted(body.scopes), sorted(['queue:get-task:t1', ...ANON]));
  });

  test('bewit for another path, with a bad key, with POST, or together with a header → 401', async () => {
    const q = queue(root);
    const url = new URL(q.buildSignedUrl(q.task, 'abc'));
    const moved = `${rootUrl}/api/queue/v1/task/other?bewit=${url.searchParams.get('bewit')}`;
    assert.equal((await fetch(moved)).status, 401);

    const bad = queue({ clientId: 'root', accessToken: 'wrong' });
    assert.equal((await fetch(bad.buildSignedUrl(bad.task, 'abc'))).status, 401);

    assert.equal((await fetch(url, { method: 'POST' })).status, 401);

    const header = hawk.client.header(url.toString(), 'GET', {
      credentials: { id: root.clientId, key: root.accessToken, algorithm: 'sha256' },
    }).header;
    const both = await fetch(url, { headers: { authorization: header } });
    assert.equal(both.status, 401);
    assert.match(((await both.json()) as { message: string }).message, /not both/);
  });
});

describe('scope expressions', () => {
  const createTask: ScopeTemplate = {
    AllOf: [
      { each: '<scope>', for: 'scope', in: 'scopes' },
      { each: 'queue:route:<route>', for: 'route', in: 'routes' },
      'queue:create-task:project:<projectId>',
      'queue:scheduler-id:<schedulerId>',
      { AnyOf: [{ each: 'queue:create-task:<priority>:<provisionerId>/<workerType>', for: 'priority', in: 'priorities' }] },
    ],
  };
  const scheduleTask: ScopeTemplate = {
    AnyOf: [
      'queue:schedule-task:<schedulerId>/<taskGroupId>/<taskId>',
      'queue:schedule-task-in-project:<projectId>',
      { AllOf: ['queue:schedule-task', 'assume:scheduler-id:<schedulerId>/<taskGroupId>'] },
    ],
  };

  test('createTask template renders and is checked', () => {
    const params = {
      taskId: 'T',
      scopes: ['secrets:get:<literal>', 'docker-worker:cache:x'],
      routes: ['index.a.b', 'notify.email.x'],
      projectId: 'proj',
      schedulerId: 'sched',
      priorities: ['highest', 'very-high', 'high'],
      provisionerId: 'prov',
      workerType: 'wt',
    };
    const expr = renderExpression(createTask, params);
    assert.deepEqual(expr, {
      AllOf: [
        'secrets:get:<literal>',
        'docker-worker:cache:x',
        'queue:route:index.a.b',
        'queue:route:notify.email.x',
        'queue:create-task:project:proj',
        'queue:scheduler-id:sched',
        { AnyOf: ['queue:create-task:highest:prov/wt', 'queue:create-task:very-high:prov/wt', 'queue:create-task:high:prov/wt'] },
      ],
    });
    const enough = [
      'secrets:get:*',
      'docker-worker:cache:x',
      'queue:route:index.*',
      'queue:route:notify.email.x',
      'queue:create-task:project:*',
      'queue:scheduler-id:sched',
      'queue:create-task:high:prov/*',
    ];
    assert.equal(satisfies(enough, expr), true);
    assert.equal(satisfies(['*'], expr), true);
    const missingRoute = enough.filter((s) => s !== 'queue:route:notify.email.x');
    assert.equal(satisfies(missingRoute, expr), false);
    assert.deepEqual(unsatisfiedPart(missingRoute, expr), 'queue:route:notify.email.x');
    assert.equal(satisfies(enough.filter((s) => s !== 'queue:create-task:high:prov/*'), expr), false);
    assert.match(unsatisfiedMessage(expr, missingRoute, 'c1'), /queue:route:notify\.email\.x/);
    assert.match(unsatisfiedMessage(expr), /This request requires Taskcluster credentials/);

    // Empty arrays: no task scopes/routes needed; no priorities → unsatisfiable AnyOf.
    const bare = renderExpression(createTask, { ...params, scopes: [], routes: [] });
    assert.equal(satisfies(enough.slice(4), bare), true);
    assert.equal(satisfies(['*'], renderExpression(createTask, { ...params, priorities: [] })), false);

    assert.deepEqual(paramsNeeded(createTask), [
      'priorities', 'projectId', 'provisionerId', 'routes', 'schedulerId', 'scopes', 'workerType',
    ]);
  });

  test('scheduleTask AnyOf template', () => {
    const params = { taskId: 'T', taskGroupId: 'G', schedulerId: 's', projectId: 'p' };
    const expr = renderExpression(scheduleTask, params);
    assert.deepEqual(expr, {
      AnyOf: [
        'queue:schedule-task:s/G/T',
        'queue:schedule-task-in-project:p',
        { AllOf: ['queue:schedule-task', 'assume:scheduler-id:s/G'] },
      ],
    });
    assert.equal(satisfies(['queue:schedule-task:s/*'], expr), true);
    assert.equal(satisfies(['queue:schedule-task-in-project:p'], expr), true);
    assert.equal(satisfies(['queue:schedule-task', 'assume:scheduler-id:s/*'], expr), true);
    assert.equal(satisfies(['queue:schedule-task'], expr), false);
    assert.equal(satisfies([], expr), false);
    assert.deepEqual(paramsNeeded(scheduleTask), ['projectId', 'schedulerId', 'taskGroupId', 'taskId']);
  });

  test('programming errors throw plain Errors', () => {
    assert.throws(() => renderExpression('queue:x:<missing>', {}), (e: unknown) => e instanceof Error && !(e instanceof ApiError));
    assert.throws(() => renderExpression('queue:x:<list>', { list: ['a'] }), /array/);
    assert.throws(() => renderExpression({ each: 'x:<v>', for: 'v', in: 'list' }, { list: 'a' }), /expected an array/);
    assert.equal(renderExpression('queue:x:<runId>', { runId: 0 }), 'queue:x:0');
    assert.deepEqual(renderExpression({ each: 'x:<v>', for: 'v', in: 'list' }, { list: ['a', 'b'] }), { AllOf: ['x:a', 'x:b'] });
  });

  test('a compiled template renders like renderExpression, for any number of requests', () => {
    const render = compileTemplate(createTask);
    for (const priorities of [['high'], ['highest', 'very-high']]) {
      const params = { scopes: ['s'], routes: [], projectId: 'p', schedulerId: 'x', priorities, provisionerId: 'a', workerType: 'b' };
      assert.deepEqual(render(params), renderExpression(createTask, params));
    }
    // the `for` variable wins over a parameter of the same name, values are never re-scanned,
    // and `$` patterns mean nothing
    const each = compileTemplate({ AllOf: ['<v>', { each: '<v>:<w>', for: 'v', in: 'list' }] });
    assert.deepEqual(each({ v: 'outer', w: '<v>$&', list: ['a'] }), { AllOf: ['outer', 'a:<v>$&'] });
    // a missing parameter met first is reported before an invalid part later in the template
    const invalid = { AllOf: ['x:<missing>', 5] } as unknown as ScopeTemplate;
    assert.throws(() => compileTemplate(invalid)({}), /parameter <missing> is undefined/);
    assert.throws(() => compileTemplate(invalid)({ missing: 'm' }), /invalid scope template: 5/);
    assert.throws(() => compileTemplate(['a'] as unknown as ScopeTemplate)({}), /invalid scope template/);
  });
});

// Checks the JSON Schemas: every schema compiles with Ajv 8 (+ ajv-formats), every $ref resolves,
// and a few sample documents validate (or not) as expected.
// Run: node --import tsx --test schemas/check.test.ts
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv, type Options, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { schemas, schemaId, schemaIds } from './index.js';

// ajv-formats is CommonJS: depending on the loader its default export may be wrapped once more.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ??
  addFormatsModule) as unknown as (ajv: Ajv) => Ajv;

function makeAjv(opts: Options = {}): Ajv {
  const ajv = new Ajv({ strict: false, ...opts });
  addFormats(ajv);
  for (const schema of Object.values(schemas)) ajv.addSchema(schema);
  return ajv;
}

function validator(ajv: Ajv, name: string): ValidateFunction {
  const v = ajv.getSchema(schemaId(name));
  assert.ok(v, `schema ${name} did not compile`);
  return v;
}

const slug = (c: string) => `${c.repeat(8)}QAC${'A'.repeat(10)}A`; // matches the slugid pattern
const taskId = slug('a');
const now = new Date('2026-01-01T00:00:00.000Z');
const iso = (offsetMs: number) => new Date(now.getTime() + offsetMs).toISOString();

function minimalCreateTask(): Record<string, unknown> {
  return {
    taskQueueId: 'proj-test/ci',
    created: iso(0),
    deadline: iso(3600_000),
    payload: {},
    metadata: { name: 'test', description: 'a test task', owner: 'me@example.com', source: 'https://example.com/x' },
  };
}

const statusExample = {
  taskId,
  provisionerId: 'proj-test',
  workerType: 'ci',
  taskQueueId: 'proj-test/ci',
  schedulerId: '-',
  projectId: 'none',
  taskGroupId: taskId,
  priority: 'lowest',
  deadline: iso(3600_000),
  expires: iso(86400_000),
  retriesLeft: 5,
  state: 'running',
  runs: [
    {
      runId: 0, state: 'exception', reasonCreated: 'scheduled', reasonResolved: 'claim-expired',
      workerGroup: 'wg', workerId: 'w1', takenUntil: iso(1000), scheduled: iso(0), started: iso(10), resolved: iso(2000),
    },
    {
      runId: 1, state: 'running', reasonCreated: 'retry', workerGroup: 'wg', workerId: 'w2',
      takenUntil: '2026-11-23T00:15:16.15+00:00', scheduled: iso(2000), started: iso(3000),
    },
  ],
};

test('every schema has a well-formed $id, $schema, title and description', () => {
  assert.ok(Object.keys(schemas).length >= 45);
  for (const [key, schema] of Object.entries(schemas)) {
    const s = schema as Record<string, unknown>;
    assert.equal(s['$id'], `/schemas/queue/${key}#`, key);
    assert.equal(s['$schema'], 'http://json-schema.org/draft-07/schema#', key);
    assert.equal(typeof s['title'], 'string', key);
    assert.equal(typeof s['description'], 'string', key);
  }
  assert.equal(schemaId('task-status'), '/schemas/queue/v1/task-status.json#');
  assert.equal(schemaId('v1/task-status.json'), '/schemas/queue/v1/task-status.json#');
  assert.throws(() => schemaId('no-such-schema'));
  assert.equal(schemaIds.length, Object.keys(schemas).length);
});

test('every schema compiles (lenient and strict Ajv) and every $ref resolves', () => {
  // Ajv throws "can't resolve reference" when compiling a schema with a dangling $ref.
  for (const opts of [{ strict: false }, { strict: true }, { removeAdditional: true, useDefaults: true, coerceTypes: 'array' as const }]) {
    const ajv = makeAjv(opts);
    for (const id of schemaIds) assert.ok(ajv.getSchema(id), `${id} (${JSON.stringify(opts)})`);
  }
  // And every $ref names a known schema file and an existing fragment.
  const walk = (node: unknown, from: string): void => {
    if (Array.isArray(node)) return node.forEach((n) => walk(n, from));
    if (!node || typeof node !== 'object') return;
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref') {
        assert.equal(typeof v, 'string');
        const [file, fragment = ''] = (v as string).split('#');
        const target = schemas[`v1/${file}`];
        assert.ok(target, `${from}: $ref ${String(v)} names an unknown schema`);
        let cur: unknown = target;
        for (const part of fragment.split('/').filter(Boolean)) cur = (cur as Record<string, unknown>)[part];
        assert.ok(cur && typeof cur === 'object', `${from}: $ref ${String(v)} does not resolve`);
      } else walk(v, from);
    }
  };
  for (const [key, schema] of Object.entries(schemas)) walk(schema, key);
});

test('createTask: a minimal body passes and gets every default filled', () => {
  const validate = validator(makeAjv({ useDefaults: true }), 'create-task-request');
  const body = minimalCreateTask();
  assert.ok(validate(body), JSON.stringify(validate.errors));
  assert.deepEqual(
    {
      schedulerId: body['schedulerId'], projectId: body['projectId'], dependencies: body['dependencies'],
      requires: body['requires'], routes: body['routes'], priority: body['priority'], retries: body['retries'],
      scopes: body['scopes'], tags: body['tags'], extra: body['extra'],
    },
    {
      schedulerId: '-', projectId: 'none', dependencies: [], requires: 'all-completed', routes: [],
      priority: 'lowest', retries: 5, scopes: [], tags: {}, extra: {},
    },
  );
  // legacy provisionerId/workerType and source forms accepted by Taskcluster
  for (const source of ['http://x', 'ssh://host/repo', 'git@github.com:o/r.git']) {
    const b: Record<string, unknown> = { ...minimalCreateTask(), provisionerId: 'proj-test', workerType: 'ci', metadata: {
      ...(minimalCreateTask()['metadata'] as object), source } };
    delete b['taskQueueId'];
    assert.ok(validate(b), `${source}: ${JSON.stringify(validate.errors)}`);
  }
});

test('createTask: invalid bodies are rejected', () => {
  const validate = validator(makeAjv({ useDefaults: true }), 'create-task-request');
  const bad = (mutate: (b: Record<string, unknown>) => void, why: string) => {
    const b = minimalCreateTask();
    mutate(b);
    assert.equal(validate(b), false, why);
  };
  bad((b) => { b['priority'] = 'normal'; }, 'priority normal');
  bad((b) => { (b['metadata'] as Record<string, unknown>)['source'] = 'ftp://example.com'; }, 'bad metadata.source');
  bad((b) => { (b['metadata'] as Record<string, unknown>)['extra'] = 1; }, 'metadata has no extra keys');
  bad((b) => { delete b['payload']; }, 'payload required');
  bad((b) => { b['unknownKey'] = 1; }, 'additionalProperties');
  bad((b) => { b['retries'] = 50; }, 'retries <= 49');
  bad((b) => { b['deadline'] = 'tomorrow'; }, 'date-time format');
  bad((b) => { b['taskQueueId'] = 'no-slash'; }, 'taskQueueId pattern');
  bad((b) => { b['workerType'] = 'UpperCase'; }, 'workerType pattern');
  bad((b) => { b['dependencies'] = [taskId, taskId]; }, 'unique dependencies');
  bad((b) => { b['dependencies'] = ['not-a-slugid']; }, 'slugid dependencies');
  bad((b) => { b['routes'] = ['']; }, 'empty route');
  bad((b) => { b['scopes'] = ['caf\u00e9']; }, 'non-ASCII scope');
  bad((b) => { b['tags'] = { a: 1 }; }, 'tag values are strings');
});

test('task-status and a status response validate', () => {
  const ajv = makeAjv();
  const vs = validator(ajv, 'task-status');
  assert.ok(vs(statusExample), JSON.stringify(vs.errors));
  const { priority: _p, ...withoutPriority } = statusExample;
  assert.ok(vs(withoutPriority), 'priority is optional');
  assert.equal(vs({ ...statusExample, extra: 1 }), false, 'status is closed');
  const vr = validator(ajv, 'task-status-response');
  assert.ok(vr({ status: statusExample }), JSON.stringify(vr.errors));
});

test('pulse messages validate', () => {
  const ajv = makeAjv();
  const running = validator(ajv, 'task-running-message');
  const msg = { version: 1, status: statusExample, runId: 1, workerGroup: 'wg', workerId: 'w2',
    takenUntil: iso(1200_000), task: { tags: { purpose: 'test' } } };
  assert.ok(running(msg), JSON.stringify(running.errors));
  assert.equal(running({ ...msg, version: 2 }), false);
  const exception = validator(ajv, 'task-exception-message');
  assert.ok(exception({ version: 1, status: statusExample, task: { tags: {} } }), JSON.stringify(exception.errors));
  const group = validator(ajv, 'task-group-changed-message');
  assert.ok(group({ version: 1, taskGroupId: taskId, schedulerId: '-', expires: iso(0) }), JSON.stringify(group.errors));
});

test('artifact requests: oneOf by storageType, safe with removeAdditional', () => {
  // Fastify's default Ajv options include removeAdditional: true; closed non-matching branches must not
  // strip properties of the matching one.
  const validate = validator(makeAjv({ removeAdditional: true, useDefaults: true }), 'post-artifact-request');
  const expires = iso(3600_000);
  const ok = [
    { storageType: 's3', expires, contentType: 'text/plain' },
    { storageType: 'object', expires },
    { storageType: 'reference', expires, url: 'https://example.com/a', contentType: 'text/plain' },
    { storageType: 'link', expires, artifact: 'public/other.txt' },
    { storageType: 'error', expires, reason: 'file-missing-on-worker', message: 'gone' },
  ];
  for (const body of ok) {
    const copy = structuredClone(body);
    assert.ok(validate(copy), `${body.storageType}: ${JSON.stringify(validate.errors)}`);
    assert.deepEqual(copy, body, `${body.storageType} body unchanged`);
  }
  assert.equal(validate({ storageType: 'reference', expires }), false, 'reference needs url');
  assert.equal(validate({ storageType: 'error', expires, reason: 'nope', message: 'x' }), false);
  assert.equal(validate({ storageType: 'bogus', expires }), false);
  const content = validator(makeAjv(), 'artifact-content-response');
  assert.ok(content({ storageType: 'reference', url: 'https://example.com/a' }));
  assert.ok(content({ storageType: 'error', reason: 'file-missing-on-worker', message: 'm' }));
  assert.equal(content({ storageType: 'link', url: 'https://example.com/a' }), false);
});

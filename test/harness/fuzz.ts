// Seeded generators of random and mutated request bodies for the fuzz tests: replay a failure with
// FUZZ_SEED=<seed>.
import { slugid, taskDef, uniqueQueue } from './tasks.js';

/** mulberry32: a small seeded generator, so a failure can be replayed with FUZZ_SEED. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every UTF-8 byte percent-encoded (encodeURIComponent throws on unpaired surrogates). */
export const percentEncoded = (s: string) => [...Buffer.from(s)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');

const pick = <T>(rand: () => number, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

export function randomString(rand: () => number): string {
  const alphabets = ['abcXYZ019-_', './:*<>', ' \t\n"\\', '\u0000\u0001\u007f', 'éß中文🎉', '\ud800\udc00\udfff', '%2F%00'];
  const n = Math.floor(rand() * (rand() < 0.1 ? 300 : 24));
  let s = '';
  for (let i = 0; i < n; i++) {
    const a = pick(rand, alphabets);
    s += a[Math.floor(rand() * a.length)];
  }
  return s;
}

function randomDate(rand: () => number): string {
  const offsetMs = pick(rand, [0, -60_000, 3600_000, 86_400_000, -86_400_000 * 400, 86_400_000 * 400, 1e15]);
  const iso = new Date(Math.min(Date.now() + offsetMs, 253402300799000)).toISOString();
  return pick(rand, [
    iso, iso.replace('Z', '+00:00'), iso.replace('Z', '+05'), iso.replace(/T\d\d:\d\d:\d\d/, 'T23:59:60'), iso.slice(0, 10),
    iso.replace('T', ' '), iso.toLowerCase(), iso.replace('.', ',').replace('Z', ''), '0000-01-01T00:00:00Z', '9999-12-31T23:59:59.999999Z',
    randomString(rand),
  ]);
}

export function randomValue(rand: () => number, depth = 0): unknown {
  switch (Math.floor(rand() * (depth > 3 ? 6 : 8))) {
    case 0: return randomString(rand);
    case 1: return pick(rand, [0, -1, 1.5, 49, 50, 1e21, -0, 2 ** 53 + 1, 1e308]);
    case 2: return rand() < 0.5;
    case 3: return null;
    case 4: return randomDate(rand);
    case 5: return pick(rand, ['highest', 'normal', 'lowest', 'all-resolved', 'test-prov/test-wt', 'https://x', slugidLike(rand)]);
    case 6: return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(rand, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(rand() * 4); i > 0; i--) o[randomString(rand) || 'k'] = randomValue(rand, depth + 1);
      return o;
    }
  }
}

function slugidLike(rand: () => number): string {
  return rand() < 0.7 ? slugid() : slugid().slice(0, 21) + pick(rand, ['A', 'B', '-', '_']);
}

const fields = ['taskQueueId', 'provisionerId', 'workerType', 'schedulerId', 'projectId', 'taskGroupId', 'dependencies', 'requires',
  'routes', 'priority', 'retries', 'created', 'deadline', 'expires', 'scopes', 'payload', 'metadata', 'tags', 'extra'];

/** A createTask body: valid, then changed in a few random ways, as JSON text (sometimes broken text). */
export function mutatedBody(rand: () => number): string {
  const body: Record<string, any> = taskDef({ taskQueueId: pick(rand, ['test-prov/test-wt', uniqueQueue()]) });
  const mutations = Math.floor(rand() * 4);
  for (let m = 0; m < mutations; m++) {
    const field = pick(rand, [...fields, 'metadata.name', 'metadata.source', 'tags.x', 'routes.0', 'scopes.0', 'dependencies.0', randomString(rand)]);
    const action = rand();
    const [top, sub] = field.split('.') as [string, string | undefined];
    if (sub !== undefined) {
      const holder = typeof body[top] === 'object' && body[top] !== null ? body[top] : (body[top] = sub === '0' ? [] : {});
      if (action < 0.2) delete holder[sub];
      else holder[sub] = randomValue(rand);
    } else if (action < 0.2) {
      delete body[top];
    } else if (action < 0.35 && ['created', 'deadline', 'expires'].includes(top)) {
      body[top] = randomDate(rand);
    } else {
      body[top] = randomValue(rand);
    }
  }
  let text = JSON.stringify(body);
  if (rand() < 0.05) text = text.slice(0, Math.floor(rand() * text.length));
  if (rand() < 0.05) {
    const at = Math.floor(rand() * text.length);
    text = text.slice(0, at) + randomString(rand) + text.slice(at);
  }
  return text;
}

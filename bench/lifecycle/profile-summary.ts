// Summarises a service CPU profile from `npm run bench -- --profile`: where the busy time of the
// measured window went, by package/file (inclusive) and by a few frames that matter.
//   node --import tsx bench/lifecycle/profile-summary.ts <file.cpuprofile> [--from-end S] [--to-end S]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  // the default window skips start-up (module compilation) and shutdown of a default lean run
  options: { 'from-end': { type: 'string', default: '16' }, 'to-end': { type: 'string', default: '1.5' } },
});
const profile = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

function area(url: string): string {
  if (!url) return '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return 'node';
  const src = /src\/([^/]+)\/[^/]+$/.exec(url);
  return src ? `src/${src[1]}` : url.split('/').slice(-2).join('/');
}

// frames whose inclusive time answers "where does it go"
const frames: Record<string, RegExp> = {
  'SQL: kysely executeQuery (build, send, parse)': /^executeQuery@kysely$/,
  'socket writes (writev/writeBuffer)': /^(writev|writeBuffer)@/,
  'socket reads (onStreamRead)': /^onStreamRead@node$/,
  'HTTP responses (fastify send)': /(^|\.)send@fastify$/,
  'HTTP request parsing': /^parserOnIncoming@node$/,
  'Hawk authentication': /^authenticate@src\/auth$/,
  'temporary credentials (claims)': /^createTemporaryCredentials@src\/auth$/,
  'scope checks (authorize)': /^authorize@src\/http$/,
  'request metrics (onResponse hook)': /@src\/meta$/,
  'schema validation': /^validate@src\/http$/,
  'pulse messages (taskMessage)': /^taskMessage@src\/outbox$/,
  'garbage collection': /^\(garbage collector\)@/,
};

let t = profile.startTime;
let busy = 0;
const byArea = new Map<string, number>();
const byFrame = new Map<string, number>();
const from = profile.endTime - Number(values['from-end']) * 1e6;
const to = profile.endTime - Number(values['to-end']) * 1e6;
for (let i = 0; i < profile.samples.length; i++) {
  t += profile.timeDeltas[i]!;
  if (t < from || t > to) continue;
  const id = profile.samples[i]!;
  if (byId.get(id)!.callFrame.functionName === '(idle)') continue;
  const dt = profile.timeDeltas[i]!;
  busy += dt;
  const areas = new Set<string>();
  const hit = new Set<string>();
  for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) {
    const f = byId.get(x)!.callFrame;
    areas.add(area(f.url));
    const key = `${f.functionName}@${area(f.url)}`;
    for (const [name, re] of Object.entries(frames)) if (re.test(key)) hit.add(name);
  }
  for (const a of areas) byArea.set(a, (byArea.get(a) ?? 0) + dt);
  for (const h of hit) byFrame.set(h, (byFrame.get(h) ?? 0) + dt);
}
const pct = (v: number) => `${((v / busy) * 100).toFixed(1).padStart(5)}%`;
process.stdout.write(`busy CPU in the window: ${(busy / 1e3).toFixed(0)} ms\n\nby frame (inclusive; they overlap)\n`);
for (const [k, v] of [...byFrame].sort((a, b) => b[1] - a[1])) process.stdout.write(`  ${pct(v)}  ${k}\n`);
process.stdout.write('\nby package or source folder (inclusive)\n');
for (const [k, v] of [...byArea].sort((a, b) => b[1] - a[1]).slice(1, 25)) process.stdout.write(`  ${pct(v)}  ${k}\n`);

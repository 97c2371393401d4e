// How far V8 lets the heap grow past what the last full collection kept alive.
//
// Under load the service's live heap is small (~50–80 MB: bounded caches, requests in flight) but
// it promotes request garbage steadily, and V8's default growing factor (up to 4×) let the old
// generation reach 3–4 times the live size between full collections: RSS passed 300 MB within
// 30 s of the lifecycle bench. 1.5× keeps it near 240 MB for ~2 % more service CPU (one more
// mostly-concurrent mark-compact every few seconds). V8 reads the flag at every collection, so
// setting it at start works; a --heap-growing-percent given on the command line or in
// NODE_OPTIONS wins.
import v8 from 'node:v8';

export function limitHeapGrowth(percent = 50): void {
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => a.includes('heap-growing-percent'));
  if (!given) v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
}

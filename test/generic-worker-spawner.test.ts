// The generic worker's process starter: commands run from helper processes with their output
// appended to a file; a program that cannot start, a helper that dies (its commands fail, the next
// ones run from a new helper), and stop().
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Spawner, type SpawnRequest } from '../services/worker/src/spawner.js';
import { isAlive } from './harness/processes.js';
import { waitFor } from './harness/wait.js';

describe('generic worker: starting processes', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'spawner-test-'));
  const spawners: Spawner[] = [];
  after(async () => {
    await Promise.all(spawners.map((s) => s.stop()));
    await rm(scratch, { recursive: true, force: true });
  });
  const make = (helpers: number) => {
    const s = new Spawner(helpers);
    spawners.push(s);
    return s;
  };
  let n = 0;
  const request = (command: string[], extra: Partial<SpawnRequest> = {}): SpawnRequest => ({
    file: command[0]!, args: command.slice(1), shell: false, cwd: scratch, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    outputPath: join(scratch, `out-${n++}.log`), ...extra,
  });

  it('runs commands from its helpers: pid first, then the exit; stdout and stderr appended to the file', async () => {
    const spawner = make(2);
    assert.equal(new Set(spawner.helperPids).size, 2);
    assert.ok(!spawner.helperPids.includes(process.pid));
    const runs = Array.from({ length: 6 }, (_, i) => {
      const req = request(['sh', '-c', `echo out-${i}; echo err-${i} >&2; exit ${i}`]);
      const pids: number[] = [];
      return { req, pids, done: spawner.run(req, (pid) => pids.push(pid)) };
    });
    for (const [i, r] of runs.entries()) {
      assert.deepEqual(await r.done, { exitCode: i, signal: null });
      assert.equal(r.pids.length, 1);
      assert.equal(readFileSync(r.req.outputPath, 'utf8'), `out-${i}\nerr-${i}\n`);
    }
    const shell = request(['echo "$GREETING" from a shell'], { shell: true, env: { GREETING: 'hi' } });
    assert.deepEqual(await spawner.run(shell, () => {}), { exitCode: 0, signal: null });
    assert.equal(readFileSync(shell.outputPath, 'utf8'), 'hi from a shell\n');
    const killed = spawner.run(request(['sleep', '30']), (pid) => process.kill(-pid, 'SIGKILL'));
    assert.deepEqual(await killed, { exitCode: null, signal: 'SIGKILL' });
  });

  it('reports a program that cannot start, and an output file that cannot be opened', async () => {
    const spawner = make(1);
    const missing = await spawner.run(request(['/nonexistent/program']), () => assert.fail('no pid for a program that did not start'));
    assert.match(String(missing.spawnError), /ENOENT/);
    const noFile = await spawner.run(request(['true'], { outputPath: join(scratch, 'no-such-dir', 'out.log') }), () => {});
    assert.match(String(noFile.spawnError), /ENOENT/);
    assert.deepEqual(await spawner.run(request(['true']), () => {}), { exitCode: 0, signal: null });
  });

  it('fails the commands of a helper that dies and starts the next ones from a new helper', async () => {
    const spawner = make(1);
    const [helper] = spawner.helperPids;
    let sleeper: number | undefined;
    const watched = spawner.run(request(['sleep', '30']), (pid) => (sleeper = pid));
    await waitFor('the command to run', () => sleeper);
    process.kill(helper!, 'SIGKILL');
    const r = await watched;
    assert.match(String(r.spawnError), /helper exited/);
    // the command outlived its helper: runCommand kills its process group when the result is in
    assert.ok(isAlive(sleeper!));
    process.kill(-sleeper!, 'SIGKILL');
    const out = request(['echo', 'after']);
    assert.deepEqual(await spawner.run(out, () => {}), { exitCode: 0, signal: null });
    assert.equal(readFileSync(out.outputPath, 'utf8'), 'after\n');
    assert.notEqual(spawner.helperPids[0], helper);
  });

  it('stop() ends its helpers; later commands fail without starting', async () => {
    const spawner = make(2);
    const helpers = spawner.helperPids;
    await spawner.stop();
    await waitFor('the helpers to exit', () => helpers.every((pid) => !isAlive(pid)));
    const r = await spawner.run(request(['true']), () => assert.fail('nothing starts after stop()'));
    assert.match(String(r.spawnError), /stopping/);
  });
});

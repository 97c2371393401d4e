// The generic worker's process starter: commands run from helper processes in their own process
// groups with their output appended to a file; kills, and the group killed after the command
// exits; a program that cannot start; a helper that dies (its commands fail, the next ones run
// from a new helper); stop().
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
  const pidIn = (file: string) => waitFor(`a pid in ${file}`, () => Number(readFileSync(file, 'utf8')) || undefined);

  it('runs commands from its helpers, stdout and stderr appended to the file, and reports their exits', async () => {
    const spawner = make(2);
    assert.equal(new Set(spawner.helperPids).size, 2);
    assert.ok(!spawner.helperPids.includes(process.pid));
    const runs = Array.from({ length: 6 }, (_, i) => {
      const req = request(['sh', '-c', `echo out-${i}; echo err-${i} >&2; exit ${i}`]);
      return { req, done: spawner.run(req).done };
    });
    for (const [i, r] of runs.entries()) {
      assert.deepEqual(await r.done, { exitCode: i, signal: null });
      assert.equal(readFileSync(r.req.outputPath, 'utf8'), `out-${i}\nerr-${i}\n`);
    }
    const shell = request(['echo "$GREETING" from a shell'], { shell: true, env: { GREETING: 'hi' } });
    assert.deepEqual(await spawner.run(shell).done, { exitCode: 0, signal: null });
    assert.equal(readFileSync(shell.outputPath, 'utf8'), 'hi from a shell\n');
  });

  it('kills the process group on request, at once or once it runs, and after the command exits', async () => {
    const spawner = make(1);
    const early = spawner.run(request(['sleep', '30']));
    early.kill();
    assert.deepEqual(await early.done, { exitCode: null, signal: 'SIGKILL' });

    const pidFile = join(scratch, 'background.pid');
    const later = spawner.run(request(['sh', '-c', `sleep 30 & echo $! > ${pidFile}; wait`]));
    const background = await pidIn(pidFile);
    later.kill();
    assert.deepEqual(await later.done, { exitCode: null, signal: 'SIGKILL' });
    await waitFor('the background sleep to be killed with its group', () => !isAlive(background));

    // a command that exits leaves nothing running behind it
    const strayFile = join(scratch, 'stray.pid');
    assert.deepEqual(await spawner.run(request(['sh', '-c', `sleep 30 & echo $! > ${strayFile}`])).done, { exitCode: 0, signal: null });
    const stray = await pidIn(strayFile);
    await waitFor('the stray sleep to be killed', () => !isAlive(stray));
  });

  it('reports a program that cannot start, and an output file that cannot be opened', async () => {
    const spawner = make(1);
    const missing = await spawner.run(request(['/nonexistent/program'])).done;
    assert.match(String(missing.spawnError), /ENOENT/);
    const noFile = await spawner.run(request(['true'], { outputPath: join(scratch, 'no-such-dir', 'out.log') })).done;
    assert.match(String(noFile.spawnError), /ENOENT/);
    assert.deepEqual(await spawner.run(request(['true'])).done, { exitCode: 0, signal: null });
  });

  it('fails the commands of a helper that dies, kills those whose pid it reported, and starts the next from a new helper', async () => {
    const spawner = make(1);
    const [helper] = spawner.helperPids;
    const watched = spawner.run(request(['sleep', '30']));
    const sleeper = await waitFor('the helper to report the pid of a command still running', () => watched.pid());
    process.kill(helper!, 'SIGKILL');
    assert.match(String((await watched.done).spawnError), /helper exited/);
    await waitFor('the command to be killed', () => !isAlive(sleeper));
    const out = request(['echo', 'after']);
    assert.deepEqual(await spawner.run(out).done, { exitCode: 0, signal: null });
    assert.equal(readFileSync(out.outputPath, 'utf8'), 'after\n');
    assert.notEqual(spawner.helperPids[0], helper);
  });

  it('stop() ends its helpers and what they still run; later commands fail without starting', async () => {
    const spawner = make(2);
    const helpers = spawner.helperPids;
    const pidFile = join(scratch, 'left.pid');
    const left = spawner.run(request(['sh', '-c', `echo $$ > ${pidFile}; exec sleep 30`]));
    const sleeper = await pidIn(pidFile);
    await spawner.stop();
    await waitFor('the command to be killed', () => !isAlive(sleeper));
    assert.match(String((await left.done).spawnError), /helper exited/);
    await waitFor('the helpers to exit', () => helpers.every((pid) => !isAlive(pid)));
    const r = await spawner.run(request(['true'])).done;
    assert.match(String(r.spawnError), /stopping/);
  });
});

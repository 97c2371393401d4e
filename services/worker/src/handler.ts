// The generic worker's task handler: check the payload, run the command in a fresh directory with
// its output in public/logs/live.log, upload the listed files, and map the outcome to a result:
// exit 0 → completed; non-zero, killed, not startable, over maxRunTime → failed (the reason is the
// log's last line); a payload that does not match the schema → exception/malformed-payload.
import { mkdtemp, rm, rmdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { LiveLog, TaskContext, TaskHandler, TaskResult } from '@conveyor/worker';
import type { WorkerConfig } from './config.js';
import { contentTypeOf } from './content-type.js';
import { checkPayload, type GenericPayload } from './payload.js';
import { runCommand, type CommandResult } from './run-command.js';
import type { Spawner } from './spawner.js';

const say = (line: string) => `[conveyor-worker ${new Date().toISOString()}] ${line}\n`;

/** What the command sees: a minimal environment (never the worker's credentials), then payload.env. */
function taskEnv(config: WorkerConfig, task: TaskContext, dir: string, payload: GenericPayload): Record<string, string> {
  const base: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: dir,
    TMPDIR: dir,
    TASK_ID: task.taskId,
    RUN_ID: String(task.runId),
    TASK_GROUP_ID: String(task.task.taskGroupId ?? ''),
    TASKCLUSTER_ROOT_URL: config.rootUrl,
  };
  for (const k of ['LANG', 'LC_ALL', 'TZ']) if (process.env[k]) base[k] = process.env[k]!;
  return { ...base, ...(payload.env ?? {}) };
}

function outcomeLine(r: CommandResult, maxRunTime: number): string {
  if (r.spawnError) return `the command could not be started: ${r.spawnError.message}`;
  if (r.timedOut) return `the command exceeded maxRunTime (${maxRunTime} s) and was killed`;
  if (r.aborted) return 'the task was aborted (cancelled, past its deadline, or the worker is shutting down): the command was killed';
  if (r.signal) return `the command was killed by ${r.signal}`;
  return `the command exited with code ${r.exitCode}`;
}

async function uploadFiles(task: TaskContext, dir: string, payload: GenericPayload, log: LiveLog): Promise<boolean> {
  let allThere = true;
  for (const a of payload.artifacts ?? []) {
    const path = resolve(dir, a.path);
    const size = await stat(path).then((s) => (s.isFile() ? s.size : undefined), () => undefined);
    if (size === undefined) {
      allThere = false;
      await log.write(say(`artifact ${a.name}: no file at ${a.path}`));
      await task.queue().createArtifact(task.taskId, task.runId, a.name, {
        storageType: 'error', reason: 'file-missing-on-worker', message: `no file at ${a.path} when the command ended`,
        expires: new Date(task.task.expires).toISOString(),
      });
      continue;
    }
    await task.uploadArtifact(a.name, { file: path, size }, a.contentType ?? contentTypeOf(a.path));
    await log.write(say(`artifact ${a.name}: uploaded ${size} bytes from ${a.path}`));
  }
  return allThere;
}

/** Most commands leave their directory empty: one rmdir then, a recursive removal otherwise. */
async function removeDir(dir: string): Promise<void> {
  try {
    await rmdir(dir);
  } catch {
    await rm(dir, { recursive: true, force: true });
  }
}

export function genericHandler(config: WorkerConfig, spawner: Spawner): TaskHandler {
  return async (task) => {
    const checked = checkPayload(task.task.payload);
    if (!checked.ok) {
      const log = task.liveLog({ intervalMs: config.liveLogIntervalMs });
      await log.write(say(`malformed payload; see the generic worker's payload schema:\n  ${checked.problems.join('\n  ')}`));
      return { status: 'exception', reason: 'malformed-payload' };
    }
    const payload = checked.payload;
    const maxRunTime = payload.maxRunTime ?? config.defaultMaxRunTimeSec;
    const dir = await mkdtemp(join(config.workDir, 'conveyor-task-'));
    // the command writes its output straight into the log file, beside (not inside) its directory
    const log = task.liveLog({ intervalMs: config.liveLogIntervalMs, file: `${dir}.log` });
    try {
      await log.write(say(`task ${task.taskId} run ${task.runId}: ${JSON.stringify(payload.command)} in ${dir} (maxRunTime ${maxRunTime} s)`));
      const result = await runCommand({
        command: payload.command,
        cwd: dir,
        env: taskEnv(config, task, dir, payload),
        maxRunTimeMs: maxRunTime * 1000,
        signal: task.signal,
        outputPath: `${dir}.log`,
        spawner,
      });
      await log.write(say(`${outcomeLine(result, maxRunTime)} after ${(result.durationMs / 1000).toFixed(3)} s`));
      if (result.aborted || task.signal.aborted) return { status: 'exception', reason: 'worker-shutdown' }; // not reported: the SDK knows why
      const filesThere = await uploadFiles(task, dir, payload, log);
      const ok = !result.spawnError && !result.timedOut && result.exitCode === 0 && filesThere;
      return ok ? { status: 'completed' } : ({ status: 'failed' } satisfies TaskResult);
    } finally {
      await removeDir(dir);
    }
  };
}

#!/usr/bin/env node
// The `conveyor` command (package.json "bin", so `npx conveyor start` works): loads tsx's loader
// into this process and runs services/queue/src/main.ts with the given arguments. One process, so
// SIGTERM reaches the service itself and drains it.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 10)) {
  process.stderr.write(`conveyor needs Node.js 20.10 or newer; this is ${process.version}\n`);
  process.exit(1);
}

const { register } = await import('tsx/esm/api');
register();
const { main } = await import('../services/queue/src/main.ts');
main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});

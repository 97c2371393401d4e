// The configuration docs are generated from configKeys; this fails when README.md or .env.example
// has fallen behind config.ts (fix: npm run docs).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { configKeys } from '../services/queue/src/config.js';
import { envExample, envExamplePath, readmePath, readmeWithTable } from '../scripts/generate-docs.js';

describe('generated configuration docs', () => {
  it('README.md has the current configuration table (run npm run docs)', () => {
    const readme = readFileSync(readmePath, 'utf8');
    assert.equal(readme, readmeWithTable(readme), 'README.md configuration table is out of date: run npm run docs');
  });

  it('.env.example lists every variable with its current default (run npm run docs)', () => {
    assert.equal(readFileSync(envExamplePath, 'utf8'), envExample(), '.env.example is out of date: run npm run docs');
  });

  it('documents every key, under its environment variable', () => {
    const readme = readFileSync(readmePath, 'utf8');
    for (const key of Object.values(configKeys)) {
      assert.match(readme, new RegExp(`\\| \`${key.env}\` \\|`), `${key.env} is missing from the README table`);
      assert.match(envExample(), new RegExp(`^#${key.env}=`, 'm'));
    }
  });
});

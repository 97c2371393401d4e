// Checks outbox rows as a pulse consumer would see them: the body valid against the exchange's
// message schema (its own Ajv, so nothing the service does to its validator affects the check),
// and the routing key consistent with the body.
import assert from 'node:assert/strict';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { exchangeByName } from '@conveyor/pulse';
import { schemas } from '@conveyor/schemas';
import type { Db } from '../../services/queue/src/db/database.js';
import { outboxRows, type OutboxRow } from './outbox.js';

const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv) => void;
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
for (const schema of Object.values(schemas)) ajv.addSchema(schema as object);
const validators = new Map<string, ValidateFunction>();

function validatorOf(schemaName: string): ValidateFunction {
  let v = validators.get(schemaName);
  if (!v) {
    v = ajv.getSchema((schemas[schemaName] as { $id: string }).$id)!;
    validators.set(schemaName, v);
  }
  return v;
}

/** Short exchange name of a row: `task-pending`. */
export const exchangeOf = (row: OutboxRow): string => row.exchange.split('/').pop()!;

export function assertValidMessage(row: OutboxRow): void {
  const name = exchangeOf(row);
  const exchange = exchangeByName(name);
  assert.ok(exchange, `unknown exchange ${row.exchange}`);
  const v = validatorOf(exchange.schema);
  const valid = v(row.body as unknown);
  assert.ok(valid, `${name} body invalid: ${ajv.errorsText(v.errors)}\n${JSON.stringify(row.body)}`);
  const words = row.routing_key.split('.');
  assert.equal(words.length, exchange.routingKey.length, `${name} routing key ${row.routing_key}`);
  if (row.body.status) {
    const s = row.body.status;
    const expect = [
      'primary', s.taskId, row.body.runId ?? '_', row.body.workerGroup ?? '_', row.body.workerId ?? '_',
      s.provisionerId, s.workerType, s.schedulerId, s.taskGroupId, '_',
    ].map(String);
    assert.deepEqual(words, expect, `${name} routing key does not match its body`);
  }
}

/** The task's outbox rows, each checked, as [exchange, body] pairs in commit order. */
export async function taskMessages(db: Db, taskId: string): Promise<Array<{ exchange: string; body: any; row: OutboxRow }>> {
  const rows = await outboxRows(db, { taskId });
  return rows.map((row) => {
    assertValidMessage(row);
    return { exchange: exchangeOf(row), body: row.body, row };
  });
}

/** Just the exchange names of a task's messages, in order. */
export async function taskExchanges(db: Db, taskId: string): Promise<string[]> {
  return (await taskMessages(db, taskId)).map((m) => m.exchange);
}

// Statements whose text never changes, compiled once.
//
// The shared transactions' statements are long (a few KB of SQL each) and run hundreds of times a
// second. Built with kysely's `sql` each time, every run rebuilt and walked the fragment tree and
// produced a new text string, which the prepared-statement lookup then hashed anew (together ~6 %
// of the service's CPU in the lifecycle bench). A template is built once, with a named slot where
// each run's values go; a run only puts its values in the slots' order. The text is one string
// object for the life of the process.
import { CompiledQuery, Kysely, PostgresDialect, sql, type RawBuilder } from 'kysely';

class Slot {
  constructor(readonly name: string) {}
}

// Compiles only; it never connects.
const compiler = new Kysely<unknown>({
  dialect: new PostgresDialect({ pool: async () => Promise.reject(new Error('the template compiler never connects')) }),
});

export type Slots<V> = { readonly [K in keyof V]: RawBuilder<unknown> };

/**
 * Compiles `build` once, given a slot per value of V (use them like `${slots.x}` values in `sql`);
 * returns the function that binds a run's values. Other values in the text are fixed at build time.
 */
export function template<V extends object, R = unknown>(
  build: (slots: Slots<V>) => RawBuilder<unknown>,
): (values: V) => CompiledQuery<R> {
  // compiled at the first run, so a template may use what its module defines after it
  let compiled: { text: string; parameters: readonly unknown[]; order: Array<keyof V | undefined> } | undefined;
  return (values) => {
    if (!compiled) {
      const slots = new Proxy({} as Slots<V>, { get: (_target, name) => sql`${new Slot(String(name))}` });
      const { sql: text, parameters } = build(slots).compile(compiler);
      compiled = { text, parameters, order: parameters.map((p) => (p instanceof Slot ? (p.name as keyof V) : undefined)) };
    }
    const { text, parameters, order } = compiled;
    return CompiledQuery.raw(text, order.map((name, i) => (name === undefined ? parameters[i] : values[name]))) as CompiledQuery<R>;
  };
}

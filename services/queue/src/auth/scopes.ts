// Scope expressions and scope-expression templates.
//
// A route declares a *template*; at request time the template is rendered with the request's
// parameters (URL params, plus values from the body or the database) into a plain expression,
// which is then checked against the caller's scopes. Satisfaction itself is delegated to
// taskcluster-lib-scopes so that the rules (`*` suffix, AnyOf/AllOf) are exactly Taskcluster's.
import { createRequire } from 'node:module';
import { ApiError } from '../http/errors.js';

/** A rendered scope expression: what a caller's scopes are checked against. */
export type ScopeExpression = string | { AnyOf: ScopeExpression[] } | { AllOf: ScopeExpression[] };

/**
 * `{each, for, in}`: for every element `x` of the array param `in`, render the string `each`
 * with `<for>` bound to `x` (other `<param>`s are substituted as usual). The resulting strings
 * are merged into the enclosing AllOf/AnyOf (at the top level they form an AllOf).
 */
export interface ForEachTemplate {
  each: string;
  for: string;
  in: string;
}

/** A scope expression before parameter substitution. */
export type ScopeTemplate =
  | string
  | ForEachTemplate
  | { AnyOf: ScopeTemplate[] }
  | { AllOf: ScopeTemplate[] };

interface ScopesLib {
  satisfiesExpression(scopeset: string[], expression: ScopeExpression): boolean;
  removeGivenScopes(scopeset: string[], expression: ScopeExpression): ScopeExpression | null;
  validScope(scope: unknown): boolean;
  validExpression(expression: unknown): true;
  scopeIntersection(a: string[], b: string[]): string[];
  scopeUnion(a: string[], b: string[]): string[];
  patternMatch(pattern: string, scope: string): boolean;
}

// taskcluster-lib-scopes is CommonJS and ships no type declarations.
const lib = createRequire(import.meta.url)('taskcluster-lib-scopes') as ScopesLib;

const PARAM = /<([^<>]+)>/g;

function isForEach(t: object): t is ForEachTemplate {
  return 'each' in t && 'for' in t && 'in' in t;
}

function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  return `a ${value === null ? 'null' : typeof value}`;
}

/** A compiled template: renders the expression for one set of parameters. */
export type CompiledTemplate = (params: Record<string, unknown>) => ScopeExpression;

/**
 * A string with its `<param>`s substituted; `bound`/`boundValue` is the `for` variable of an
 * enclosing {each, for, in}, which takes precedence over `params`.
 */
type StringRenderer = (params: Record<string, unknown>, bound?: string, boundValue?: unknown) => string;

function substitute(template: string, name: string, value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (Array.isArray(value)) {
    throw new Error(
      `scope template "${template}": parameter <${name}> is an array; arrays are only usable through {each, for, in}`,
    );
  }
  throw new Error(`scope template "${template}": parameter <${name}> is ${describe(value)}, expected a string`);
}

/**
 * Substitute `<param>` in one string. Values are inserted verbatim and never re-scanned. The
 * string is split once, at compile time: literal parts at even indexes, parameter names at odd.
 */
function compileString(template: string): StringRenderer {
  const parts = template.split(PARAM);
  if (parts.length === 1) return () => template;
  return (params, bound, boundValue) => {
    let out = parts[0]!;
    for (let i = 1; i < parts.length; i += 2) {
      const name = parts[i]!;
      const value = name === bound ? boundValue : Object.hasOwn(params, name) ? params[name] : undefined;
      out += substitute(template, name, value) + parts[i + 1]!;
    }
    return out;
  };
}

function compileForEach(t: ForEachTemplate): (params: Record<string, unknown>) => string[] {
  const each = compileString(t.each);
  return (params) => {
    const list = Object.hasOwn(params, t.in) ? params[t.in] : undefined;
    if (!Array.isArray(list)) {
      throw new Error(`scope template {each: "${t.each}"}: parameter "${t.in}" is ${describe(list)}, expected an array`);
    }
    return list.map((element: unknown) => each(params, t.for, element));
  };
}

/** An {each, for, in} child's strings are merged into the enclosing AllOf/AnyOf. */
function compileChildren(children: ScopeTemplate[]): (params: Record<string, unknown>) => ScopeExpression[] {
  const compiled = children.map((child) =>
    typeof child === 'object' && child !== null && isForEach(child)
      ? { merge: true, render: compileForEach(child) }
      : { merge: false, render: compileTemplate(child) },
  );
  return (params) => {
    const out: ScopeExpression[] = [];
    for (const c of compiled) {
      if (c.merge) out.push(...(c.render(params) as string[]));
      else out.push(c.render(params) as ScopeExpression);
    }
    return out;
  };
}

/**
 * Compile a template once (per route), render it per request. An invalid template throws when
 * rendered, as it always did, so a missing parameter met earlier in the template still wins.
 */
export function compileTemplate(template: ScopeTemplate): CompiledTemplate {
  if (typeof template === 'string') {
    const render = compileString(template);
    return (params) => render(params);
  }
  if (typeof template === 'object' && template !== null) {
    if (isForEach(template)) {
      const render = compileForEach(template);
      return (params) => ({ AllOf: render(params) });
    }
    if ('AllOf' in template && Array.isArray(template.AllOf)) {
      const render = compileChildren(template.AllOf);
      return (params) => ({ AllOf: render(params) });
    }
    if ('AnyOf' in template && Array.isArray(template.AnyOf)) {
      const render = compileChildren(template.AnyOf);
      return (params) => ({ AnyOf: render(params) });
    }
  }
  return () => {
    throw new Error(`invalid scope template: ${JSON.stringify(template)}`);
  };
}

/**
 * Render a template into a plain expression. A missing parameter, a non-string used inside a
 * string, or a non-array used as `in` is a programming error and throws a plain Error.
 * Numbers are accepted where a string is expected (e.g. runId) and are stringified.
 */
export function renderExpression(template: ScopeTemplate, params: Record<string, unknown>): ScopeExpression {
  return compileTemplate(template)(params);
}

/**
 * The parameter names a template needs (sorted, unique): every `<param>` in its strings, plus
 * each `in` array, excluding the `for` variable bound inside its own `each`.
 */
export function paramsNeeded(template: ScopeTemplate): string[] {
  const needed = new Set<string>();
  const scan = (s: string, bound?: string): void => {
    for (const m of s.matchAll(PARAM)) {
      const name = m[1] as string;
      if (name !== bound) needed.add(name);
    }
  };
  const walk = (t: ScopeTemplate): void => {
    if (typeof t === 'string') return scan(t);
    if (isForEach(t)) {
      needed.add(t.in);
      return scan(t.each, t.for);
    }
    const children = 'AllOf' in t ? t.AllOf : t.AnyOf;
    for (const c of children) walk(c);
  };
  walk(template);
  return [...needed].sort();
}

/** Does this scope set satisfy the expression? (`*` suffix semantics of Taskcluster.) */
export function satisfies(scopes: readonly string[], expr: ScopeExpression): boolean {
  return lib.satisfiesExpression([...scopes], expr);
}

/**
 * The part of `expr` that `scopes` do not satisfy (every scope under an AllOf is needed, one
 * alternative under an AnyOf is), or null when `scopes` satisfy `expr`.
 */
export function unsatisfiedPart(scopes: readonly string[], expr: ScopeExpression): ScopeExpression | null {
  return lib.removeGivenScopes([...scopes], expr);
}

/** True for a string of printable ASCII (0x20-0x7e), Taskcluster's definition of a scope. */
export function validScope(scope: unknown): scope is string {
  return lib.validScope(scope);
}

/** Is `expr` a well-formed scope expression (strings, AnyOf, AllOf only)? */
export function isValidExpression(expr: unknown): expr is ScopeExpression {
  try {
    return lib.validExpression(expr);
  } catch {
    return false;
  }
}

function formatExpression(expr: ScopeExpression): string {
  return typeof expr === 'string' ? expr : JSON.stringify(expr, null, 2);
}

/**
 * Human-readable explanation for a 403. With `scopes` the message also lists what is missing;
 * with `clientId` it names the caller (omit it for anonymous callers).
 */
export function unsatisfiedMessage(expr: ScopeExpression, scopes?: readonly string[], clientId?: string): string {
  const lines: string[] = [];
  if (clientId === undefined) {
    lines.push(
      'This request requires Taskcluster credentials that satisfy the following scope expression:',
      '',
      formatExpression(expr),
    );
  } else {
    lines.push(
      `Client ID ${clientId} does not have sufficient scopes. This request requires the client to satisfy the following scope expression:`,
      '',
      formatExpression(expr),
    );
  }
  if (scopes !== undefined) {
    const missing = unsatisfiedPart(scopes, expr);
    if (missing !== null) {
      lines.push('', 'The client is missing the following scopes (see the expression above for alternatives):', '',
        formatExpression(missing));
    }
  }
  return lines.join('\n');
}

/**
 * Throw ApiError('InsufficientScopes') (details: `required`, `unsatisfied`) unless `scopes`
 * satisfy `expr`.
 */
export function assertScopes(scopes: readonly string[], expr: ScopeExpression, clientId?: string): void {
  if (satisfies(scopes, expr)) return;
  throw new ApiError('InsufficientScopes', unsatisfiedMessage(expr, scopes, clientId), {
    required: expr,
    unsatisfied: unsatisfiedPart(scopes, expr),
  });
}

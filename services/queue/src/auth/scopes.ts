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

/** Substitute `<param>` in one string. Values are inserted verbatim and never re-scanned. */
function renderString(template: string, params: Record<string, unknown>): string {
  return template.replace(PARAM, (_match, name: string) => {
    const value = Object.hasOwn(params, name) ? params[name] : undefined;
    if (typeof value === 'string') return value;
    if (typeof value === 'number' && Number.isFinite(value)) return String(value);
    if (Array.isArray(value)) {
      throw new Error(
        `scope template "${template}": parameter <${name}> is an array; arrays are only usable through {each, for, in}`,
      );
    }
    throw new Error(`scope template "${template}": parameter <${name}> is ${describe(value)}, expected a string`);
  });
}

function renderChildren(children: ScopeTemplate[], params: Record<string, unknown>): ScopeExpression[] {
  const out: ScopeExpression[] = [];
  for (const child of children) {
    if (typeof child === 'object' && child !== null && isForEach(child)) {
      out.push(...renderForEach(child, params));
    } else {
      out.push(render(child, params));
    }
  }
  return out;
}

function renderForEach(t: ForEachTemplate, params: Record<string, unknown>): string[] {
  const list = Object.hasOwn(params, t.in) ? params[t.in] : undefined;
  if (!Array.isArray(list)) {
    throw new Error(`scope template {each: "${t.each}"}: parameter "${t.in}" is ${describe(list)}, expected an array`);
  }
  return list.map((element: unknown) => renderString(t.each, { ...params, [t.for]: element }));
}

function render(template: ScopeTemplate, params: Record<string, unknown>): ScopeExpression {
  if (typeof template === 'string') return renderString(template, params);
  if (typeof template !== 'object' || template === null) {
    throw new Error(`invalid scope template: ${JSON.stringify(template)}`);
  }
  if (isForEach(template)) return { AllOf: renderForEach(template, params) };
  if ('AllOf' in template && Array.isArray(template.AllOf)) {
    return { AllOf: renderChildren(template.AllOf, params) };
  }
  if ('AnyOf' in template && Array.isArray(template.AnyOf)) {
    return { AnyOf: renderChildren(template.AnyOf, params) };
  }
  throw new Error(`invalid scope template: ${JSON.stringify(template)}`);
}

/**
 * Render a template into a plain expression. A missing parameter, a non-string used inside a
 * string, or a non-array used as `in` is a programming error and throws a plain Error.
 * Numbers are accepted where a string is expected (e.g. runId) and are stringified.
 */
export function renderExpression(template: ScopeTemplate, params: Record<string, unknown>): ScopeExpression {
  return render(template, params);
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

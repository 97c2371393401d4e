// Endpoints are declared as data: method, route, schemas, scope expression and documentation,
// next to the handler. The HTTP server, the API reference and the scope test all read the table.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ScopeExpression, ScopeTemplate } from '../auth/scopes.js';
import type { Ctx } from '../context.js';

export interface ApiRequest<P = Record<string, string>, B = any, Q = Record<string, string>> {
  params: P;
  query: Q;
  body: B;
  clientId: string | undefined;
  scopes: string[];
  /** Checks the endpoint's scope expression with these parameters merged over the URL's. */
  authorize(params?: Record<string, unknown>): void;
  /** Whether the caller satisfies an expression (for handlers with optional powers). */
  satisfies(expression: ScopeExpression): boolean;
  ctx: Ctx;
  raw: FastifyRequest;
  reply: FastifyReply;
}

export interface Response {
  __response: true;
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export function respond(status: number, body?: unknown, headers?: Record<string, string>): Response {
  return { __response: true, status, body, headers };
}

export interface Endpoint {
  name: string;
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Route under /api/queue/v1, with `<param>` placeholders. */
  route: string;
  /** A trailing parameter that may contain `/` (artifact names, task queue ids). */
  wildcard?: string;
  query?: string[];
  input?: string;
  output?: string;
  /** null: public. */
  scopes: ScopeTemplate | null;
  stability: 'stable' | 'experimental' | 'deprecated';
  category: string;
  title: string;
  description: string;
  /** Bodies this endpoint takes raw (a stream), e.g. artifact uploads. */
  rawBody?: boolean;
  handler(req: ApiRequest<any, any, any>): Promise<unknown>;
}

export function endpoint(def: Endpoint): Endpoint {
  return def;
}

/** The URL parameters of a route, in order. */
export function routeParams(route: string): string[] {
  return [...route.matchAll(/<([a-zA-Z]+)>/g)].map((m) => m[1]!);
}

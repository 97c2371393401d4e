// The Fastify server: routes from the endpoint table, Taskcluster's middleware order (parse body →
// authenticate → URL params → query → scopes when the URL has all they need → body schema →
// handler), and Taskcluster's error bodies.
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { compileTemplate, paramsNeeded, satisfies, type CompiledTemplate, type ScopeExpression } from '../auth/scopes.js';
import type { Authenticator, AuthResult } from '../auth/authenticate.js';
import type { Ctx } from '../context.js';
import { databaseUnavailable } from '../db/database.js';
import { routeParams, type ApiRequest, type Endpoint, type Response } from './endpoint.js';
import { ApiError, errorStatus } from './errors.js';
import { paramPatterns, queryPatterns } from './params.js';
import { validate } from './validate.js';

export const apiPrefix = '/api/queue/v1';
const maxBodyBytes = 10 * 1024 * 1024;
/**
 * Request headers up to 256 KiB (Node's default is 16 KiB): a worker's temporary credentials carry
 * the task's scopes in the Hawk header's `ext`, so a task with a few hundred scopes would otherwise
 * get credentials its worker cannot use. createTask refuses tasks whose scopes could not fit.
 */
export const maxHeaderBytes = 256 * 1024;
/**
 * Deeper JSON is refused at parse time: it would overflow the stack of whatever walks it next
 * (the error body's echo, JSON.stringify for jsonb, PostgreSQL's own parser). Real payloads stay
 * within a few dozen levels.
 */
const maxJsonDepth = 256;

function tooDeep(value: unknown): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth > maxJsonDepth) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}

/** A body the '*' parser passed through untouched (raw-body endpoints read it). */
const isStream = (body: unknown): body is Readable => body instanceof Readable;

function fastifyPath(e: Endpoint): string {
  let path = e.route;
  if (e.wildcard) path = path.replace(new RegExp(`<${e.wildcard}>$`), '*');
  return apiPrefix + path.replace(/<([a-zA-Z]+)>/g, ':$1');
}

/** Host and port as the client signed them (honouring a proxy's x-forwarded-* headers). */
function requestHostPort(req: FastifyRequest): { host: string; port: number } {
  const hostHeader = String(req.headers['x-forwarded-host'] ?? req.headers.host ?? 'localhost');
  const proto = String(req.headers['x-forwarded-proto'] ?? 'http').split(',')[0]!.trim();
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(hostHeader);
  const host = m?.[1] ?? hostHeader;
  const forwardedPort = req.headers['x-forwarded-port'];
  const port = forwardedPort ? Number(String(forwardedPort).split(',')[0]) : m?.[2] ? Number(m[2]) : proto === 'https' ? 443 : 80;
  return { host, port };
}

/**
 * requestHostPort, remembering the answer for the last plain Host header (no x-forwarded-*):
 * clients send the same one on every request. The answer is shared, so it is frozen.
 */
function hostPortMemo(): (req: FastifyRequest) => { host: string; port: number } {
  let lastHost: string | undefined;
  let last: { host: string; port: number } | undefined;
  return (req) => {
    const h = req.headers;
    const plain = h['x-forwarded-host'] === undefined && h['x-forwarded-proto'] === undefined && h['x-forwarded-port'] === undefined;
    if (plain && h.host !== undefined && h.host === lastHost) return last!;
    const answer = Object.freeze(requestHostPort(req));
    if (plain && h.host !== undefined) {
      lastHost = h.host;
      last = answer;
    }
    return answer;
  };
}

function errorBody(req: FastifyRequest, code: string, message: string, details: Record<string, unknown> = {}) {
  return {
    code,
    message,
    requestInfo: {
      method: req.routeOptions?.config && (req.routeOptions.config as { name?: string }).name,
      params: req.params ?? {},
      payload: req.body && typeof req.body === 'object' && !isStream(req.body) ? req.body : {},
      time: new Date().toISOString(),
    },
    ...(Object.keys(details).length > 0 ? { details } : {}),
  };
}

function insufficientScopes(expression: ScopeExpression, scopes: string[]): ApiError {
  return new ApiError(
    'InsufficientScopes',
    `This request requires Taskcluster credentials that satisfy the following scope expression:\n\n` +
      `${JSON.stringify(expression, null, 2)}\n\nThe request was made with${scopes.length ? ' the scopes:\n\n' + scopes.join('\n') : ' no credentials'}`,
    { required: expression },
  );
}

/** What a route needs per request, worked out once when the server is built. */
interface CompiledRoute {
  endpoint: Endpoint;
  /** URL parameters with a pattern they must match */
  paramChecks: Array<[string, RegExp]>;
  /** the scope template, compiled; undefined for public endpoints */
  renderScopes: CompiledTemplate | undefined;
  /** the URL alone holds every parameter the scopes need: check them before the body */
  checkEarly: boolean;
}

function compileRoute(e: Endpoint): CompiledRoute {
  const urlParams = routeParams(e.route);
  const scopeParams = e.scopes ? paramsNeeded(e.scopes) : [];
  return {
    endpoint: e,
    paramChecks: urlParams.flatMap((p) => (paramPatterns[p] ? [[p, paramPatterns[p]] as [string, RegExp]] : [])),
    renderScopes: e.scopes ? compileTemplate(e.scopes) : undefined,
    checkEarly: e.scopes !== null && scopeParams.every((p) => urlParams.includes(p)),
  };
}

/**
 * The handler's view of one request. `authorize` and `satisfies` are methods rather than closures
 * made per request: tsx (keepNames) renames every such closure with Object.defineProperty, which
 * cost more than the scope check itself.
 */
class EndpointRequest implements ApiRequest {
  body: unknown = undefined;
  readonly clientId: string | undefined;
  readonly scopes: string[];
  /** a public endpoint needs no check; any other must have passed authorize() before answering */
  authorized: boolean;

  constructor(
    private readonly route: CompiledRoute,
    readonly params: Record<string, string>,
    readonly query: Record<string, string>,
    auth: AuthResult,
    readonly ctx: Ctx,
    readonly raw: FastifyRequest,
    readonly reply: FastifyReply,
  ) {
    this.clientId = auth.clientId;
    this.scopes = auth.scopes;
    this.authorized = route.endpoint.scopes === null;
  }

  authorize(extra?: Record<string, unknown>): void {
    const render = this.route.renderScopes;
    if (!render) return;
    const expression = render(extra ? { ...this.params, ...extra } : this.params);
    if (!satisfies(this.scopes, expression)) throw insufficientScopes(expression, this.scopes);
    this.authorized = true;
  }

  satisfies(expression: ScopeExpression): boolean {
    return satisfies(this.scopes, expression);
  }
}

export interface ServerOptions {
  ctx: Ctx;
  authenticator: Authenticator;
  endpoints: Endpoint[];
  /** Extra routes outside the endpoint table (schemas, references, events, uploads). */
  plugins?: Array<(app: FastifyInstance) => void | Promise<void>>;
}

export async function buildServer({ ctx, authenticator, endpoints, plugins = [] }: ServerOptions): Promise<FastifyInstance> {
  const hostPort = hostPortMemo();
  const app = Fastify({
    loggerInstance: ctx.log,
    bodyLimit: maxBodyBytes,
    // per-request logs cost more than the requests on the hot path; errors are still logged
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { maxParamLength: 2048, ignoreDuplicateSlashes: false },
    // clients behind a load balancer keep connections open; don't drop them while busy
    keepAliveTimeout: 65_000,
    http: { maxHeaderSize: maxHeaderBytes },
  });

  // JSON bodies; an empty body is "no body" (reportCompleted and friends are POSTs without one).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: maxBodyBytes }, (_req, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return done(new ApiError('MalformedPayload', 'The request body is not valid JSON'), undefined);
    }
    if (tooDeep(parsed)) return done(new ApiError('MalformedPayload', `The request body nests deeper than ${maxJsonDepth} levels`), undefined);
    done(null, parsed);
  });
  // Any other type passes through as a stream: raw-body endpoints take it, JSON endpoints refuse it.
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  for (const e of endpoints) {
    const route = compileRoute(e);
    app.route({
      method: e.method,
      url: fastifyPath(e),
      config: { name: e.name },
      handler: async (req: FastifyRequest, reply: FastifyReply) => {
        const rawParams = { ...(req.params as Record<string, string>) };
        if (e.wildcard) {
          rawParams[e.wildcard] = rawParams['*'] ?? '';
          delete rawParams['*'];
        }
        const { host, port } = hostPort(req);
        const auth = await authenticator.authenticate({
          method: req.method,
          url: req.url,
          host,
          port,
          authorization: req.headers.authorization,
        });

        for (const [p, pattern] of route.paramChecks) {
          if (!pattern.test(rawParams[p] ?? '')) {
            throw new ApiError('InvalidRequestArguments', `Invalid URL parameter ${p}: '${rawParams[p]}' does not match ${pattern}`);
          }
        }
        const query = { ...(req.query as Record<string, string>) };
        delete (query as Record<string, unknown>).bewit;
        for (const [k, v] of Object.entries(query)) {
          if (!e.query?.includes(k)) throw new ApiError('InvalidRequestArguments', `Unknown query option ${k}`);
          const pattern = queryPatterns[k];
          if (pattern && !pattern.test(String(v))) {
            throw new ApiError('InvalidRequestArguments', `Invalid query option ${k}: '${v}' does not match ${pattern}`);
          }
        }

        let body = req.body;
        const apiReq = new EndpointRequest(route, rawParams, query, auth, ctx, req, reply);
        if (route.checkEarly) apiReq.authorize();
        if (e.input) {
          if (isStream(body)) {
            throw new ApiError('MalformedPayload', `${e.name} takes a JSON body with content-type application/json`);
          }
          validate(e.input, body);
        } else if (!e.rawBody && isStream(body)) {
          // an unexpected raw body is ignored, as Taskcluster ignores bodies of body-less endpoints
          body.resume();
          body = undefined;
        }
        apiReq.body = body;

        const result = await e.handler(apiReq);
        if (!apiReq.authorized) {
          // A handler that never checked its scopes is a bug, not a reason to serve the request.
          throw new Error(`endpoint ${e.name} returned without authorizing`);
        }
        if (reply.sent) return reply;
        if (result && typeof result === 'object' && (result as Response).__response) {
          const r = result as Response;
          reply.code(r.status);
          if (r.headers) reply.headers(r.headers);
          return reply.send(r.body);
        }
        return reply.send(result);
      },
    });
  }

  for (const plugin of plugins) await plugin(app);

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(errorBody(req, 'ResourceNotFound', `No such endpoint: ${req.method} ${req.url.split('?')[0]}`));
  });

  app.setErrorHandler((err: unknown, req, reply) => {
    if (err instanceof ApiError) {
      if (err.code === 'AuthenticationFailed') reply.header('www-authenticate', 'hawk');
      // the validation details are for logs; the message already says what is wrong
      const { errors: _errors, ...details } = err.details;
      reply.code(err.statusCode).send(errorBody(req, err.code, err.message, details));
      return;
    }
    const fe = err as { code?: string; statusCode?: number; message?: string };
    if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      reply.code(errorStatus.InputTooLarge).send(errorBody(req, 'InputTooLarge', `The request body is larger than ${maxBodyBytes} bytes`));
      return;
    }
    if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
      reply.code(400).send(errorBody(req, 'MalformedPayload', fe.message ?? 'Malformed request'));
      return;
    }
    if (databaseUnavailable(err)) {
      req.log.warn({ err }, 'database unavailable');
      reply.code(errorStatus.ServiceUnavailable).header('retry-after', '1')
        .send(errorBody(req, 'ServiceUnavailable', 'The database is unavailable or dropped the connection; try again'));
      return;
    }
    const incidentId = randomUUID();
    req.log.error({ err, incidentId }, 'internal error');
    reply.code(500).send(errorBody(req, 'InternalServerError', `Internal Server Error, incidentId ${incidentId}.`, { incidentId }));
  });

  return app;
}

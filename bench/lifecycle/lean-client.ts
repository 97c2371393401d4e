// The lean load generator's HTTP client: node:http over a keep-alive agent, one Hawk header per
// request, nothing else. It measures the service, not a client library.
import http from 'node:http';
import * as hawk from 'hawk';

export interface Credentials {
  clientId: string;
  accessToken: string;
  /** JSON-encoded certificate of temporary credentials (as claimWork returns them) */
  certificate?: string;
}

export class HttpError extends Error {
  constructor(readonly status: number, readonly body: string, what: string) {
    super(`${what} answered ${status}: ${body.slice(0, 300)}`);
  }
}

export class LeanClient {
  private readonly agent: http.Agent;
  private readonly host: string;
  private readonly port: number;

  constructor(rootUrl: string, connections: number) {
    const u = new URL(rootUrl);
    this.host = u.hostname;
    this.port = Number(u.port || 80);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  }

  async call<T>(method: string, path: string, creds: Credentials, body?: unknown): Promise<T> {
    const url = `http://${this.host}:${this.port}/api/queue/v1${path}`;
    // taskcluster-client sends the certificate as a parsed object inside base64(JSON) ext
    const ext = creds.certificate
      ? Buffer.from(JSON.stringify({ certificate: JSON.parse(creds.certificate) })).toString('base64')
      : undefined;
    const { header } = hawk.client.header(url, method, {
      credentials: { id: creds.clientId, key: creds.accessToken, algorithm: 'sha256' },
      ...(ext ? { ext } : {}),
    });
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: http.OutgoingHttpHeaders = { authorization: header, accept: 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(payload);
    }
    return new Promise<T>((resolve, reject) => {
      const req = http.request(
        { agent: this.agent, host: this.host, port: this.port, method, path: `/api/queue/v1${path}`, headers },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if (res.statusCode !== 200) reject(new HttpError(res.statusCode ?? 0, text, `${method} ${path}`));
            else resolve(JSON.parse(text) as T);
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

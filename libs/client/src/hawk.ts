// Hawk request signing as taskcluster-client does it: no payload hash, and `ext` carrying the
// certificate of temporary credentials and any authorizedScopes.
import * as hawk from 'hawk';

export interface Credentials {
  clientId: string;
  accessToken: string;
  /** Temporary credentials: the certificate as the queue handed it (a JSON string) or parsed. */
  certificate?: string | Record<string, unknown>;
}

export function authorizationHeader(url: string, method: string, credentials: Credentials, authorizedScopes?: string[]): string {
  const ext: Record<string, unknown> = {};
  if (credentials.certificate) {
    ext.certificate = typeof credentials.certificate === 'string' ? JSON.parse(credentials.certificate) : credentials.certificate;
  }
  if (authorizedScopes) ext.authorizedScopes = authorizedScopes;
  const { header } = hawk.client.header(url, method, {
    credentials: { id: credentials.clientId, key: credentials.accessToken, algorithm: 'sha256' },
    ext: Object.keys(ext).length > 0 ? Buffer.from(JSON.stringify(ext)).toString('base64') : undefined,
  });
  return header;
}

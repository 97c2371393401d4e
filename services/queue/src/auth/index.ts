// Public API of the auth module: Hawk authentication, temporary credentials, scope expressions.
export {
  Authenticator,
  NonceCache,
  type AuthenticatorOptions,
  type AuthRequest,
  type AuthResult,
  type ClientLookup,
  type ClientRecord,
} from './authenticate.js';
export {
  CERTIFICATE_SKEW_MS,
  MAX_CERTIFICATE_SPAN_MS,
  certificateSignature,
  createTemporaryCredentials,
  temporaryAccessToken,
  verifyCertificate,
  type Certificate,
  type CreateTemporaryCredentialsOptions,
  type IssuerInfo,
  type IssuerLookup,
  type TemporaryCredentials,
  type VerifiedCertificate,
} from './certificate.js';
export {
  assertScopes,
  isValidExpression,
  paramsNeeded,
  renderExpression,
  satisfies,
  unsatisfiedMessage,
  unsatisfiedPart,
  validScope,
  type ForEachTemplate,
  type ScopeExpression,
  type ScopeTemplate,
} from './scopes.js';

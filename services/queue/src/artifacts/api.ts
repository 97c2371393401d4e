// The artifact endpoints of the Queue v1 API. The bytes of s3 artifacts move through the signed
// URLs of transfer.ts, not through these endpoints.
import { endpoint, type ApiRequest } from '../http/endpoint.js';
import { ApiError } from '../http/errors.js';
import { decodeToken, page, pageLimit } from '../http/paging.js';
import { createArtifact, type CreateArtifactBody } from './create.js';
import { describeArtifact, redirectToArtifact, runOf } from './follow.js';
import { artifactJson, loadArtifact } from './rows.js';

const getScopes = { AllOf: [{ for: 'name', in: 'names', each: 'queue:get-artifact:<name>' }] };
const runRoute = '/task/<taskId>/runs/<runId>';
const latestRoute = '/task/<taskId>';

async function list(req: ApiRequest, runId: string | undefined) {
  const { ctx, params, query } = req;
  const run = await runOf(ctx, params.taskId!, runId);
  const limit = pageLimit(query);
  const after = decodeToken(query.continuationToken);
  // PostgreSQL text cannot hold NUL: such a token never came from us
  if (after && (typeof after[0] !== 'string' || after[0].includes('\0'))) {
    throw new ApiError('InvalidRequestArguments', 'continuationToken is not valid; pass the token from the previous page unchanged');
  }
  let q = ctx.db.selectFrom('artifacts').selectAll().where('task_id', '=', params.taskId!).where('run_id', '=', run);
  if (after) q = q.where('name', '>', after[0] as string);
  const rows = await q.orderBy('name').limit(limit + 1).execute();
  const p = page(rows, limit, (r) => [r.name]);
  return { artifacts: p.rows.map(artifactJson), ...(p.continuationToken ? { continuationToken: p.continuationToken } : {}) };
}

async function info(req: ApiRequest, runId: string | undefined) {
  const { ctx, params } = req;
  const run = await runOf(ctx, params.taskId!, runId);
  const row = await loadArtifact(ctx.db, params.taskId!, run, params.name!);
  if (!row) throw new ApiError('ResourceNotFound', `Artifact ${params.name} of run ${run} of task ${params.taskId} not found`);
  return artifactJson(row);
}

const getDescription = (which: string) =>
  `Redirect (303) to the content of an artifact of ${which}. The JSON body repeats the URL as \`{storageType, url}\`. ` +
  'A reference redirects to its URL; an s3 artifact to a signed download URL on Conveyor (30 minutes); a link is followed ' +
  'within the run, and the caller needs `queue:get-artifact:<name>` for every name on the way; an error artifact answers ' +
  '424 with `{reason, message}`. Works with a bewit-signed URL (`buildSignedUrl`).';

export const artifactEndpoints = [
  endpoint({
    name: 'createArtifact', method: 'POST', route: `${runRoute}/artifacts/<name>`, wildcard: 'name',
    input: 'v1/post-artifact-request.json', output: 'v1/post-artifact-response.json',
    scopes: 'queue:create-artifact:<taskId>/<runId>',
    stability: 'stable', category: 'Artifacts', title: 'Create Artifact',
    description:
      'Create an artifact of a running run (or within 25 minutes of its exception). reference, link and error artifacts ' +
      'exist at once. An s3 artifact answers with a `putUrl` on Conveyor (valid 45 minutes): PUT the bytes there and the ' +
      'artifact exists, and artifact-created is sent, once the upload completes. storageType object is not supported (400). ' +
      'The same create again succeeds; a different one is a 409.',
    handler: (req) =>
      createArtifact(req.ctx, req.params.taskId, Number(req.params.runId), req.params.name, req.body as CreateArtifactBody),
  }),
  endpoint({
    name: 'finishArtifact', method: 'PUT', route: `${runRoute}/artifacts/<name>`, wildcard: 'name',
    input: 'v1/finish-artifact-request.json',
    scopes: 'queue:create-artifact:<taskId>/<runId>',
    stability: 'stable', category: 'Artifacts', title: 'Finish Artifact',
    description: 'Only for object artifacts, which Conveyor does not store; s3 artifacts finish when their upload completes.',
    handler: async (req) => {
      const run = await runOf(req.ctx, req.params.taskId, req.params.runId);
      const row = await loadArtifact(req.ctx.db, req.params.taskId, run, req.params.name);
      if (!row) throw new ApiError('ResourceNotFound', `Artifact ${req.params.name} of run ${req.params.runId} of task ${req.params.taskId} not found`);
      throw new ApiError(
        'InputError',
        `finishArtifact is for object artifacts; ${req.params.name} is a ${row.storage_type} artifact` +
          (row.storage_type === 's3' ? ', which exists once the PUT to its putUrl completes' : ', which needs no finishing'),
      );
    },
  }),
  endpoint({
    name: 'getArtifact', method: 'GET', route: `${runRoute}/artifacts/<name>`, wildcard: 'name',
    output: 'v1/get-artifact-response.json', scopes: getScopes,
    stability: 'stable', category: 'Artifacts', title: 'Get Artifact Data from Run',
    description: getDescription('a run'),
    handler: (req) => redirectToArtifact(req, req.params.runId),
  }),
  endpoint({
    name: 'getLatestArtifact', method: 'GET', route: `${latestRoute}/artifacts/<name>`, wildcard: 'name',
    output: 'v1/get-artifact-response.json', scopes: getScopes,
    stability: 'stable', category: 'Artifacts', title: 'Get Artifact Data from Latest Run',
    description: getDescription("the task's latest run"),
    handler: (req) => redirectToArtifact(req, undefined),
  }),
  endpoint({
    name: 'listArtifacts', method: 'GET', route: `${runRoute}/artifacts`, query: ['continuationToken', 'limit'],
    output: 'v1/list-artifacts-response.json', scopes: 'queue:list-artifacts:<taskId>:<runId>',
    stability: 'stable', category: 'Artifacts', title: 'Get Artifacts from Run',
    description: 'The artifacts of a run by name, including s3 artifacts whose upload has not completed; paged with continuationToken.',
    handler: (req) => list(req, req.params.runId),
  }),
  endpoint({
    name: 'listLatestArtifacts', method: 'GET', route: `${latestRoute}/artifacts`, query: ['continuationToken', 'limit'],
    output: 'v1/list-artifacts-response.json', scopes: 'queue:list-artifacts:<taskId>',
    stability: 'stable', category: 'Artifacts', title: 'Get Artifacts from Latest Run',
    description: "listArtifacts for the task's latest run.",
    handler: (req) => list(req, undefined),
  }),
  endpoint({
    name: 'artifactInfo', method: 'GET', route: `${runRoute}/artifact-info/<name>`, wildcard: 'name',
    output: 'v1/artifact-response.json', scopes: 'queue:list-artifacts:<taskId>:<runId>',
    stability: 'stable', category: 'Artifacts', title: 'Get Artifact Information From Run',
    description: 'What listArtifacts says about one artifact. Links are not followed.',
    handler: (req) => info(req, req.params.runId),
  }),
  endpoint({
    name: 'latestArtifactInfo', method: 'GET', route: `${latestRoute}/artifact-info/<name>`, wildcard: 'name',
    output: 'v1/artifact-response.json', scopes: 'queue:list-artifacts:<taskId>',
    stability: 'stable', category: 'Artifacts', title: 'Get Artifact Information From Latest Run',
    description: "artifactInfo for the task's latest run.",
    handler: (req) => info(req, undefined),
  }),
  endpoint({
    name: 'artifact', method: 'GET', route: `${runRoute}/artifact-content/<name>`, wildcard: 'name',
    output: 'v1/artifact-content-response.json', scopes: getScopes,
    stability: 'stable', category: 'Artifacts', title: 'Get Artifact Content From Run',
    description: 'Where the content of an artifact is, as a 200: `{storageType, url}`, or `{storageType: "error", reason, message}`. Links are followed as by getArtifact.',
    handler: (req) => describeArtifact(req, req.params.runId),
  }),
  endpoint({
    name: 'latestArtifact', method: 'GET', route: `${latestRoute}/artifact-content/<name>`, wildcard: 'name',
    output: 'v1/artifact-content-response.json', scopes: getScopes,
    stability: 'stable', category: 'Artifacts', title: 'Get Artifact Content From Latest Run',
    description: "artifact for the task's latest run.",
    handler: (req) => describeArtifact(req, undefined),
  }),
];

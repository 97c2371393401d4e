// The whole route table, in reference order. Each capability declares its endpoints beside its
// handlers; this list is the one place they are gathered.
import { artifactEndpoints } from '../artifacts/api.js';
import { claimEndpoints } from '../claims/api.js';
import { dependencyEndpoints } from '../deps/api.js';
import { groupEndpoints } from '../groups/api.js';
import { metaEndpoints } from '../meta/api.js';
import { runEndpoints } from '../runs/api.js';
import { taskEndpoints } from '../tasks/api.js';
import { workerEndpoints } from '../workers/api.js';
import type { Endpoint } from './endpoint.js';

export const endpoints: Endpoint[] = [
  ...metaEndpoints,
  ...taskEndpoints,
  ...groupEndpoints,
  ...dependencyEndpoints,
  ...runEndpoints,
  ...claimEndpoints,
  ...artifactEndpoints,
  ...workerEndpoints,
];

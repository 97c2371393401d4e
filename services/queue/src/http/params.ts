// Patterns of URL parameters and query options, by name. A mismatch is a 400
// InvalidRequestArguments before anything else runs.
const slugid = /^[A-Za-z0-9_-]{8}[Q-T][A-Za-z0-9_-][CGKOSWaeimquy26-][A-Za-z0-9_-]{10}[AQgw]$/;
const identifier = /^[a-zA-Z0-9-_]{1,38}$/;
const workerType = /^[a-z]([-a-z0-9]{0,36}[a-z0-9])?$/;

export const paramPatterns: Record<string, RegExp> = {
  taskId: slugid,
  taskGroupId: slugid,
  runId: /^[1-9]*[0-9]+$/,
  provisionerId: identifier,
  workerType,
  workerGroup: identifier,
  workerId: identifier,
  taskQueueId: /^[a-zA-Z0-9-_]{1,38}\/[a-z]([-a-z0-9]{0,36}[a-z0-9])?$/,
  // printable ASCII, as Taskcluster allows for artifact names
  name: /^[\x20-\x7e]+$/,
};

export const queryPatterns: Record<string, RegExp> = {
  continuationToken: /^[A-Za-z0-9+/=_-]{1,1024}$/,
  limit: /^[0-9]{1,4}$/,
  quarantined: /^(true|false)$/,
};

export const slugidPattern = slugid;

// @conveyor/scheduler: multi-stage pipelines over task groups (README, "Pipelines").
export { startScheduler, type Scheduler, type SchedulerOptions } from './scheduler.js';
export { SchedulerClient } from './client.js';
export {
  checkPipeline, parsePipelineText, readPipelineFile, stageTasks, taskGroupIdOf, taskIdOf, PipelineError, type Pipeline,
} from './pipeline.js';
export { advance, type SchedulerCtx } from './progress.js';
export { pipelineStatus, type PipelineStatus } from './status.js';
export { pipelineCommand, schedulerCommand } from './command.js';
export { loadSchedulerEnv, schedulerEnvKeys, type SchedulerEnv } from './config.js';

/** The one seed derivation (packages/random), re-exported for the packages that sample with tfjs. */
export { deriveSeed } from '@archipelago/random';
export { ConfigError } from './config-error.js';
export {
  CONVERSION_MODES,
  type EpsToVelocityOptions,
  epsToVelocity,
  resolveEpsToVelocityOptions,
} from './conversion/eps-to-velocity.js';
export { velocityToEps, velocityToEpsNetwork } from './conversion/velocity-to-eps.js';
export {
  type ClampedVelocityModel,
  clampX0,
  isClampedVelocityModel,
  withX0Clamp,
  type X0Clamp,
} from './conversion/x0-clamp.js';
export {
  combineExperts,
  type EnsembleCall,
  type EnsembleStats,
  type ExpertEnsemble,
} from './ensemble/combine.js';
export { type GuidableModel, withGuidance } from './ensemble/guidance.js';
export {
  COMBINE_STRATEGY_KINDS,
  type CombineStrategy,
  type ExpertSelection,
  maxExpertsPerSample,
  ROUTING_NAMES,
  resolveCombineStrategy,
  routingStrategy,
  selectExperts,
} from './ensemble/select-experts.js';
export type { StrategyKind } from './ensemble/strategy.js';
export { EXPERT_OBJECTIVES, type ExpertSpec, velocityExpert } from './expert-adapter.js';
export {
  GaussianMixture,
  type GaussianMixtureConfig,
  type PathStatistics,
} from './gaussian-mixture.js';
export { LinearMmseDenoiser, type SecondMoments } from './linear-mmse-denoiser.js';
export type { FmEpsilonModel, Network, Router, VelocityModel } from './model.js';
export { createObjective } from './objectives/create-objective.js';
export {
  DdpmObjective,
  ddpmTrainingBatch,
  resolveDdpmObjective,
  sampleDdpmSteps,
} from './objectives/ddpm-objective.js';
export {
  type DdpmPrediction,
  type DdpmPredictionName,
  PREDICTION_NAMES,
  PREDICTION_TARGETS,
  predictionTarget,
} from './objectives/ddpm-prediction.js';
export {
  FlowMatchingObjective,
  FM_TIME_SAMPLING_KINDS,
  type FmTimeSampling,
  fmTrainingBatch,
  resolveFmObjective,
  resolveFmTimeSampling,
  sampleFmTimes,
} from './objectives/flow-matching.js';
export {
  LOSS_WEIGHTING_KINDS,
  type LossWeighting,
  lossWeight,
  resolveLossWeighting,
} from './objectives/loss-weighting.js';
export { meanSquaredError } from './objectives/mean-squared-error.js';
export {
  type DdpmObjectiveConfig,
  type FmObjectiveConfig,
  OBJECTIVE_NAMES,
  type Objective,
  type ObjectiveConfig,
  type TrainingBatch,
} from './objectives/objective.js';
export {
  heldOutObjective,
  initialisingFamilies,
  OBJECTIVE_FAMILIES,
  type ObjectiveFamily,
  objectiveFamily,
  resolveObjective,
} from './objectives/registry.js';
export { type DdimOptions, ddim, ddimSteps } from './samplers/ddim.js';
export { ddimGrid, ddimSampler } from './samplers/ddim-sampler.js';
export { euler } from './samplers/euler.js';
export { heun } from './samplers/heun.js';
export {
  SAMPLER_NAMES,
  SAMPLER_REGISTRY,
  type SamplerEntry,
  type SamplerKey,
  samplerEntry,
} from './samplers/registry.js';
export { initialNoise, type SamplingConfig, sample } from './samplers/sample.js';
export { assertTimeGrid, type Sampler, type SamplerOptions } from './samplers/sampler.js';
export { type TimeGridOptions, timeGrid } from './samplers/time-grid.js';
export { COSINE_MAX_BETA, cosineAlphaBar, ddpmCosineBetas } from './schedules/ddpm-cosine.js';
export { ddpmLinearBetas } from './schedules/ddpm-linear.js';
export {
  createDdpmSchedule,
  DDPM_SCHEDULE_KINDS,
  DdpmSchedule,
  type DdpmScheduleConfig,
  type ResolvedDdpmScheduleConfig,
  resolveDdpmScheduleConfig,
} from './schedules/ddpm-schedule.js';
export { fmLogSnr, fmTimeForLogSnr, fmVpScale } from './schedules/fm-log-snr.js';

export {
  ExpertTrainer,
  type ExpertTrainerOptions,
  type ResumableSave,
  type TrainerSaveOptions,
  type TrainStepResult,
} from './expert-trainer.js';
export { createLoss, type LossFn, type StepBatch, type TaskSpec } from './losses.js';
export {
  MLP_FREQUENCY_DIM,
  MlpClassifier,
  type MlpClassifierConfig,
  type MlpConfig,
  MlpNet,
  mlpClassifierParamShapes,
  mlpParamShapes,
  resolveMlpClassifierConfig,
  resolveMlpConfig,
} from './mlp-net.js';
export {
  architectureOf,
  buildNetwork,
  EXPERT_NETWORK_KINDS,
  type ExpertNetworkSpec,
  inputShapeOf,
  type NetworkSpec,
  paramShapesOf,
  ROUTER_NETWORK_KINDS,
  type RouterNetworkSpec,
  resolveNetworkSpec,
  type TrainableNetwork,
} from './networks.js';
export {
  DataParallelTrainer,
  type DataParallelTrainerOptions,
} from './parallel/data-parallel-trainer.js';
export type { OptimizerOptions } from './parallel/messages.js';
export { ReplicaError, replicaWorkerUrl } from './parallel/replica-pool.js';
export {
  type RouterEvaluation,
  RouterTrainer,
  type RouterTrainerOptions,
} from './router-trainer.js';
export { specOfMeta, TRAINING_METADATA_KEY } from './trainer-checkpoint.js';
export type { BatchInput, LabelInput } from './training-input.js';

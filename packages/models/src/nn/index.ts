export { attention } from './attention.js';
export {
  DiT,
  type DiTConfig,
  ditParamShapes,
  FREQUENCY_EMBEDDING_SIZE,
  initialValue,
  patchify,
  sincosPosEmbed2d,
  timestepEmbedding,
  unpatchify,
  validateDiTConfig,
} from './dit.js';
export { groupedMatMul, linear, matMul } from './fast-matmul.js';
export { gatedResidual, geluTanh, layerNorm, modulatedLayerNorm, silu } from './layers.js';
export {
  DIT_PRESET_NAMES,
  DIT_PRESETS,
  type DiTPreset,
  type DiTPresetName,
  ditConfigFromPreset,
  type PresetData,
} from './presets.js';
export {
  type RouterConfig,
  RouterNet,
  routerClasses,
  routerParamShapes,
  validateRouterConfig,
} from './router.js';
export {
  createTrainer,
  type Gradients,
  type Trainer,
  type TrainerOptions,
  type TrainerState,
} from './train-step.js';

export { deriveSeed } from './derive-seed.js';
export { createRng, type Rng, sampleIndices, shuffleInPlace } from './rng.js';

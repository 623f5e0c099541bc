#!/usr/bin/env node
import { mainSample } from './sample-cli.js';

await mainSample();

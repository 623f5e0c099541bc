#!/usr/bin/env node
import { mainScore } from './score-cli.js';

await mainScore();

#!/usr/bin/env node
import { main } from './cli.js';

// Exit explicitly: a backend's thread pool or a half-closed socket must not keep a stopped
// worker alive. (stderr is synchronous for files, pipes and terminals on Linux.)
process.exit(await main(process.argv));

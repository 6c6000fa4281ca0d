#!/usr/bin/env node
// Thin launcher so the package's bin works from a checkout and from an installed bundle alike.
import '../dist/cli/main.js';
